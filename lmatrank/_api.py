"""``estimate_rank``: input validation, threshold semantics and the method registry."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
import os

import numpy as np

from ._checks import (check_bool, check_choice, check_dtype, check_float,
                      check_nonnegative_float, check_positive_float, check_positive_int,
                      spawn_rngs, validate_options)
from ._auto import small_explicit_rank
from .operators import CountingOperator, as_operator

__all__ = ["estimate_rank", "available_methods", "register_method"]

# name -> "module:function" (resolved lazily so that optional methods cost nothing
# at import) or a callable. Every method has the signature
#     method(op, *, rtol, atol, rng, **options) -> RankEstimate
# with ``op`` a lmatrank.operators.CountingOperator.
_METHODS: dict[str, object] = {
    "langevin": "lmatrank.langevin._estimator:langevin_rank",
    "exact": "lmatrank._exact:exact_rank",
    "auto": "lmatrank._auto:auto_rank",
    "chebyshev": "lmatrank.spectral._ubaru_saad:chebyshev_rank",
    "kpm": "lmatrank.spectral._ubaru_saad:kpm_rank",
    "slq": "lmatrank.spectral._slq:slq_rank",
    "sketch": "lmatrank.spectral._sketch:sketch_rank",
}
DEFAULT_METHOD = "auto"
# options estimate_rank itself consumes (not passed to the method)
_OWN_OPTIONS = ("check_symmetry", "dtype")


def register_method(name, func):
    """Register ``func(op, *, rtol, atol, rng, **options)`` as ``method=name``.

    `func` may be a callable or a ``"module:function"`` string imported on first use.
    Its keyword-only parameters are the options ``estimate_rank`` accepts for it.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> def trace_rank(op, *, rtol=None, atol=None, rng=None):
    ...     # the rank of an orthogonal projector is its trace
    ...     d = np.diag(op.todense())
    ...     return lmatrank.RankEstimate(rank=int(round(d.sum())), estimate=float(d.sum()),
    ...                                  stderr=0.0, threshold=0.5, matvecs=op.matvecs,
    ...                                  method="projector-trace")
    >>> lmatrank.register_method("projector-trace", trace_rank)
    >>> lmatrank.estimate_rank(np.diag([1.0, 1.0, 0.0]), method="projector-trace").rank
    2
    """
    if not isinstance(name, str) or not name:
        raise TypeError("method name must be a non-empty string")
    _METHODS[name] = func


def available_methods():
    """Names accepted by ``estimate_rank(method=...)``.

    Examples
    --------
    >>> import lmatrank
    >>> {"auto", "langevin", "exact", "chebyshev", "sketch"} <= set(lmatrank.available_methods())
    True
    """
    return sorted(_METHODS)


def _resolve(method):
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; available: {available_methods()}")
    func = _METHODS[method]
    if isinstance(func, str):
        module, _, attr = func.partition(":")
        func = getattr(importlib.import_module(module), attr)
        _METHODS[method] = func
    return func


def _check_tolerance(name, value):
    return check_nonnegative_float(name, value, allow_none=True)


def _opt_positive_int(name, value):
    return check_positive_int(name, value, allow_none=True)


def _opt_positive_float(name, value):
    return check_positive_float(name, value, allow_none=True)


def _opt_bool(name, value):
    return check_bool(name, value, allow_none=True)


def _opt_string(name, value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
    return value


def _opt_progress(name, value):
    if value is None or isinstance(value, (bool, np.bool_)) or callable(value):
        return bool(value) if isinstance(value, np.bool_) else value
    raise TypeError(f"{name} must be True, False, None or a callable "
                    f"progress(matvecs, budget, estimate, stderr), got {type(value).__name__}")


def _opt_backend(name, value):
    if isinstance(value, (bool, np.bool_, int, float, np.number)):
        raise TypeError(f"{name} must be None, a backend name such as 'numpy' or 'numba', or "
                        f"a backend object, got {type(value).__name__}")
    return value


def _opt_path(name, value):
    if value is None or isinstance(value, (str, os.PathLike)):
        return value
    raise TypeError(f"{name} must be a file path (str or os.PathLike) or None, "
                    f"got {type(value).__name__}")


def _check_checkpoint(method, func, options, rng):
    """``checkpoint=`` only where the method saves and resumes, and with a reproducible rng."""
    if options.get("checkpoint") is None:
        return
    if "checkpoint" not in inspect.signature(func).parameters:
        raise ValueError(
            f"checkpoint applies to method='langevin' (its chains are what is saved and "
            f"resumed), not to method={method!r}; pass method='langevin' or drop checkpoint")
    if rng is None:
        raise ValueError("checkpoint needs a reproducible rng (an int seed, a SeedSequence "
                         "or a Generator): with rng=None a rerun would draw other random "
                         "numbers and could not continue the saved run")


def _opt_nonnegative_int(name, value):
    from ._checks import check_int

    return check_int(name, value, minimum=0, allow_none=True)


#: Checks of the options shared by the methods, applied by :func:`estimate_rank` before a
#: method runs (types -> TypeError, values -> ValueError, the option named). Methods keep
#: their own method-specific checks (ranges that depend on other options or on the matrix).
OPTION_CHECKS = {
    "max_matvecs": _opt_positive_int, "target_rse": _opt_positive_float,
    "n_chains": _opt_positive_int, "n_steps": _opt_positive_int, "n_avg": _opt_positive_int,
    "eta": _opt_positive_float, "sigma2": _opt_positive_float, "h": _opt_positive_float,
    "friction": _opt_positive_float, "lanczos_steps": _opt_positive_int,
    "degree": _opt_positive_int, "n_probes": _opt_positive_int, "n_points": _opt_positive_int,
    "block_size": _opt_positive_int, "max_rank": _opt_positive_int,
    "oversample": _opt_nonnegative_int, "max_n": _opt_positive_int,
    "max_memory": _opt_positive_float, "max_flops": _opt_positive_float,
    "growth": lambda name, value: check_float(name, value, minimum=1.0, strict_minimum=True),
    "progress": _opt_progress, "backend": _opt_backend,
    "paper": _opt_bool, "corrected": _opt_bool, "faithful": _opt_bool, "doubling": _opt_bool,
    "reorthogonalize": _opt_bool, "plateau": _opt_bool,
    "scheme": lambda name, value: check_choice(name, value, ("em", "baoab"), allow_none=True),
    "spectrum": lambda name, value: check_choice(name, value, ("auto", "psd", "indefinite")),
    "noise": lambda name, value: check_choice(name, value, ("rademacher", "gaussian"),
                                              allow_none=True),
    "damping": _opt_string, "gap_rule": _opt_string,
    "checkpoint": lambda name, value: _opt_path(name, value),
    "checkpoint_every": lambda name, value: check_nonnegative_float(name, value),
}
# options of auto that cannot change the answer of its small-matrix path (no products)
_BUDGET_OPTIONS = {"max_matvecs", "max_memory", "max_flops"}
# max_memory of the sketch is a byte count; keep integers integral
_INTEGRAL_AS_INT = ("max_memory",)


def estimate_rank(A, *, method=DEFAULT_METHOD, rtol=None, atol=None, rng=None,
                  check_symmetry=True, dtype=None, **options):
    """Estimate the (numerical) rank of a large symmetric matrix from products.

    Parameters
    ----------
    A : ndarray, scipy.sparse matrix/array, LinearOperator or operator-like, shape (n, n)
        The symmetric matrix. Only block products ``A @ X`` are used (except by
        ``method="exact"``). Objects with ``.shape`` and ``matmat``/``@`` are
        accepted (structured operators such as
        :class:`~lmatrank.operators.KroneckerProduct`).
    method : str, optional
        ``"langevin"`` (default: the paper's Langevin estimator with the exact
        discretisation correction) or ``"exact"`` (dense ``eigvalsh``, for small
        n). :func:`available_methods` lists all registered methods.
    rtol, atol : float, optional
        Count ``|lambda| > max(atol, rtol * |lambda|_max)`` (the numpy/torch
        convention). ``None``/``None``: the method chooses the threshold and
        reports it in ``est.threshold``.
    rng : None, int, array_like, SeedSequence, BitGenerator, Generator or RandomState
        SPEC 7 randomness, passed to :func:`numpy.random.default_rng` (a legacy
        ``numpy.random.RandomState`` seeds a Generator with 128 bits drawn from it). The same
        `rng`, input and options give a bit-identical result on the same backend;
        the same matrix given as dense, sparse or LinearOperator gives the same
        result up to the rounding of the product (and in practice the same rank).
    check_symmetry : bool, optional
        Refuse detectably non-symmetric input with a probe test (3 products).
    dtype : {None, numpy.float32, numpy.float64}, optional
        Working precision of the products (default: from `A`; byte order does not
        matter, float16 input runs in float32). Other dtypes raise ``TypeError``.
    **options
        Method options, e.g. ``n_chains``, ``n_steps``, ``n_avg``, ``eta``,
        ``sigma2``, ``preconditioner``, ``max_matvecs``, ``backend``, ``paper``
        for Langevin; ``backend`` also for the spectral methods (``"chebyshev"``,
        ``"kpm"``, ``"slq"``, ``"sketch"``: where their products and length-``n``
        arrays live, e.g. ``"cupy"``). ``checkpoint="run.ckpt"`` (``method="langevin"``
        only, with a reproducible `rng`) saves the run every ``checkpoint_every`` seconds
        and continues it from that file when it exists, bit-identically (docs/checkpoint.md). Unknown options raise ``TypeError``; every
        option is checked before any product (``TypeError`` for a wrong type,
        ``ValueError`` for a wrong value, the option named; see :data:`OPTION_CHECKS`).

    Returns
    -------
    RankEstimate
        ``rank``, ``estimate``, ``stderr``, ``threshold``, ``matvecs``,
        ``method``, ``converged``, ``info``.

    Notes
    -----
    Scale: a matrix whose entries (or, for operators, probe products) lie outside
    ``[2**-32, 2**32]`` is divided by an exact power of two ``scale = 2**k`` before the
    method runs, so that no method overflows or underflows; `atol` and the step sizes
    ``eta``, ``h``, ``friction`` are converted, and `threshold`, `resolution` and the
    eigenvalue diagnostics of `info` (``eigenvalues``, ``lambda_max``, ``lambda_min``,
    ``ritz_values``, ...) are reported in the units of `A`; ``info["scale"]`` records
    ``2**k``, and other diagnostics of `info` refer to ``A / scale``. Powers of two are
    exact: ``A`` and ``A * 2**(2j)`` give bit-identical counts.

    Raises
    ------
    TypeError
        Unsupported input type or dtype, unknown option, option of the wrong type.
    ValueError
        Non-square, empty, non-finite, malformed sparse or non-symmetric input; bad
        option values; an operator that returned NaN or Inf (the message names the product).
    lmatrank.BudgetError
        ``max_matvecs`` is too small to produce any answer (a ValueError subclass).
    lmatrank.DivergenceError
        A stochastic run diverged and could not be rescued.

    Examples
    --------
    >>> import numpy as np
    >>> import lmatrank
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((200, 30)))
    >>> A = U @ np.diag(np.linspace(1.0, 10.0, 30)) @ U.T        # rank 30
    >>> est = lmatrank.estimate_rank(A, rng=1)
    >>> est.rank
    30
    >>> abs(est.estimate - 30) < 5 * est.stderr + 0.5
    True
    >>> lmatrank.estimate_rank(A, method="exact").rank
    30
    """
    func = _resolve(method)
    rtol = _check_tolerance("rtol", rtol)
    atol = _check_tolerance("atol", atol)
    check_symmetry = check_bool("check_symmetry", check_symmetry)
    dtype = check_dtype("dtype", dtype)
    _check_checkpoint(method, func, options, rng)
    _check_options(method, func, options)
    options = _validate_method_options(options)
    if method == "auto" and dtype is None and set(options) <= _BUDGET_OPTIONS:
        est = small_explicit_rank(A, rtol=rtol, atol=atol, rng=rng, check_symmetry=check_symmetry,
                                  max_memory=options.get("max_memory"))
        if est is not None:
            return est
    check_gen, run_gen = spawn_rngs(rng, 2)
    op = as_operator(A, dtype=dtype, check_symmetry=check_symmetry, rng=check_gen, fresh=True)
    k = _scale_exponent(op)
    if k:
        op = _scaled_operator(op, k)
        atol = None if atol is None else math.ldexp(atol, -k)
        options = _scale_options(options, k)
    # methods report op.matvecs: every product spent on this call, symmetry probes included
    est = func(op, rtol=rtol, atol=atol, rng=run_gen, **options)
    return _unscale_result(est, k) if k else est


def _validate_method_options(options):
    checked = validate_options(options, OPTION_CHECKS)
    for key in _INTEGRAL_AS_INT:
        value = checked.get(key)
        if isinstance(value, float) and value.is_integer() and isinstance(options[key], int):
            checked[key] = int(value)
    return checked


# ----------------------------------------------------------------------------- scale
#: Matrices whose size estimate lies outside [2**-SCALE_BAND, 2**SCALE_BAND] are divided by
#: an exact power of two first, so that the methods see |lambda|_max of order 1 (no overflow
#: in squares and norms, no underflow) at any representable scale.
SCALE_BAND = 32
# info entries that are eigenvalue magnitudes (scaled back by s), and the step sizes
# (exponent of s in the user's units)
_INFO_SCALE = {"eigenvalues": 1.0, "lambda_max": 1.0, "lambda_min": 1.0, "lambda_abs_max": 1.0,
               "abs_lambda_max": 1.0, "gap_threshold": 1.0, "point_threshold": 1.0,
               "filter_resolution": 1.0, "contract_threshold": 1.0,
               "ritz_max": 1.0, "ritz_min": 1.0, "ritz_values": 1.0, "lambda_lo": 1.0,
               "resolution": 1.0, "requested_threshold": 1.0, "rayleigh_ritz_noise": 1.0,
               "noise_floor": 1.0, "eta": -1.0, "h": 0.5, "friction": -0.5}
# options in the matrix's units: step sizes (eta lambda and h^2 lambda are scale-free)
_OPTION_SCALE = {"eta": 1.0, "h": -0.5, "friction": 0.5}


def _size_estimate(op):
    """A cheap, overflow-free order of magnitude of |lambda|_max (None: unknown)."""
    if op.kind == "dense":
        return float(np.max(np.abs(op.matrix))) if op.matrix.size else 0.0
    if op.kind == "sparse":
        data = op.matrix.data
        return float(np.max(np.abs(data))) if data.size else 0.0
    if op.kind == "generic" and op.probe_norm is not None and _on_host(op):
        return float(op.probe_norm)
    return None


def _on_host(op):
    return isinstance(op.matrix, CountingOperator) or not (
        hasattr(op.matrix, "__cuda_array_interface__") or hasattr(op.matrix, "device")
        or type(op.matrix).__module__.split(".")[0] in ("cupy", "cupyx", "torch"))


def _scale_exponent(op):
    """Even ``k`` such that the methods work on ``A / 2**k`` (0: no scaling needed)."""
    size = _size_estimate(op)
    if not size or not math.isfinite(size):
        return 0
    e = math.frexp(size)[1]
    limit = min(SCALE_BAND, np.finfo(op.dtype).maxexp // 4)
    if -limit <= e <= limit:
        return 0
    return 2 * (e // 2)  # even: the square root of the scale is exact too


def _scaled_operator(op, k):
    """``A / 2**k`` as a CountingOperator that continues `op`'s product count (exact)."""
    if op.kind == "dense":
        M = np.ldexp(op.matrix, -k).astype(op.dtype, copy=False)
        new = CountingOperator(lambda X: M @ X, op.n, op.dtype, kind="dense", matrix=M,
                               name=op.name)
    elif op.kind == "sparse":
        M = op.matrix.copy()
        M.data = np.ldexp(M.data, -k).astype(op.dtype, copy=False)
        new = CountingOperator(lambda X: M @ X, op.n, op.dtype, kind="sparse", matrix=M,
                               name=op.name)
    else:
        apply, dtype = op._matmat, op.dtype
        new = CountingOperator(lambda X: apply(np.ldexp(np.asarray(X), -k).astype(dtype,
                                                                                 copy=False)),
                               op.n, op.dtype, kind="generic", matrix=None,
                               name=f"{op.name}/2**{k}")
    new.matvecs = op.matvecs
    new.precision = op.precision
    new.noise_floor = None if op.noise_floor is None else math.ldexp(op.noise_floor, -k)
    new.probe_norm = None if op.probe_norm is None else math.ldexp(op.probe_norm, -k)
    new.scale = math.ldexp(1.0, k)
    return new


def _scale_options(options, k):
    scaled = dict(options)
    for key, power in _OPTION_SCALE.items():
        if scaled.get(key) is not None:
            scaled[key] = math.ldexp(float(scaled[key]), int(power * k))
    return scaled


def _unscale_result(est, k):
    """Report in the units of `A`: threshold, resolution and eigenvalue diagnostics times 2**k."""
    info = dict(est.info)
    for key, power in _INFO_SCALE.items():
        value = info.get(key)
        if isinstance(value, (float, np.floating)) or (
                isinstance(value, np.ndarray) and value.dtype.kind == "f"):
            info[key] = np.ldexp(value, int(power * k)) if isinstance(value, np.ndarray) \
                else math.ldexp(float(value), int(power * k))
    info["scale"] = math.ldexp(1.0, k)
    return dataclasses.replace(est, threshold=math.ldexp(float(est.threshold), k),
                               resolution=math.ldexp(float(est.resolution), k), info=info)


@functools.lru_cache(maxsize=64)
def _accepted_options(func):
    """Keyword options of a method (None: it takes ``**kwargs``)."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(name for name, p in params.items()
                     if p.kind is inspect.Parameter.KEYWORD_ONLY) - {"rtol", "atol", "rng"}


def _check_options(method, func, options):
    accepted = _accepted_options(func)
    if accepted is None or not options:
        return
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"unknown option(s) for method={method!r}: {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(accepted))}")
