"""``estimate_rank``: input validation, threshold semantics and the method registry."""

from __future__ import annotations

import importlib
import inspect
import math
import numbers

import numpy as np

from .operators import as_operator

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
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number or None, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


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
    rng : None, int, array_like, SeedSequence, BitGenerator or Generator
        SPEC 7 randomness, passed to :func:`numpy.random.default_rng`. The same
        `rng`, input and options give a bit-identical result on the same backend;
        the same matrix given as dense, sparse or LinearOperator gives the same
        result up to the rounding of the product (and in practice the same rank).
    check_symmetry : bool, optional
        Refuse detectably non-symmetric input with a probe test (3 products).
    dtype : {None, numpy.float32, numpy.float64}, optional
        Working precision of the products (default: from `A`).
    **options
        Method options, e.g. ``n_chains``, ``n_steps``, ``n_avg``, ``eta``,
        ``sigma2``, ``preconditioner``, ``max_matvecs``, ``backend``, ``paper``
        for Langevin; ``backend`` also for the spectral methods (``"chebyshev"``,
        ``"kpm"``, ``"slq"``, ``"sketch"``: where their products and length-``n``
        arrays live, e.g. ``"cupy"``). Unknown options raise ``TypeError``.

    Returns
    -------
    RankEstimate
        ``rank``, ``estimate``, ``stderr``, ``threshold``, ``matvecs``,
        ``method``, ``converged``, ``info``.

    Raises
    ------
    TypeError
        Unsupported input type or dtype, unknown option.
    ValueError
        Non-square, empty, non-finite or non-symmetric input; bad option values.
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
    _check_options(method, func, options)
    gen = np.random.default_rng(rng)
    check_gen, run_gen = gen.spawn(2)
    op = as_operator(A, dtype=dtype, check_symmetry=check_symmetry, rng=check_gen, fresh=True)
    # methods report op.matvecs: every product spent on this call, symmetry probes included
    return func(op, rtol=rtol, atol=atol, rng=run_gen, **options)


def _check_options(method, func, options):
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {name for name, p in params.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"rtol", "atol", "rng"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"unknown option(s) for method={method!r}: {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(accepted))}")
