"""``check_rank_estimator``: a conformance suite for rank functions."""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np
from hypothesis import HealthCheck, given
from hypothesis import settings as Settings
from hypothesis import strategies as st

from .._result import RankEstimate
from ._strategies import (graph_laplacians, kronecker_operators, linear_network_hessians,
                          linear_operators, symmetric_matrices)

__all__ = ["CHECKS", "check_rank_estimator"]

#: Names of the checks :func:`check_rank_estimator` runs, in order.
CHECKS = ("rtol", "atol", "rtol and atol", "indefinite", "float32", "sparse",
          "LinearOperator", "laplacian", "structured", "reproducible")

_WHERE = st.sampled_from([0.5, 0.25, 0.75])   # position of the threshold in the gap (log)


def _accepts_rng(func):
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "rng" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                  for p in params.values())


def _problems(name, max_n):
    n = st.integers(1, max_n)
    return {
        "rtol": symmetric_matrices(n=n),
        "atol": symmetric_matrices(n=n),
        "rtol and atol": symmetric_matrices(n=n),
        "indefinite": st.integers(1, max_n).flatmap(lambda m: symmetric_matrices(
            inertia=st.tuples(st.integers(0, m), st.integers(1, m), st.integers(0, m)))),
        "float32": symmetric_matrices(n=n, dtype=np.float32, sparse=st.booleans()),
        "sparse": symmetric_matrices(n=n, sparse=True),
        "LinearOperator": linear_operators(symmetric_matrices(n=n)),
        "laplacian": graph_laplacians(n=n),
        "structured": linear_operators(st.one_of(
            kronecker_operators(), linear_network_hessians(d=st.integers(1, 2)))),
        "reproducible": symmetric_matrices(n=n),
    }[name]


def _describe(check, p, tau, kwargs, answer):
    args = ", ".join(f"{k}={v:.6g}" for k, v in kwargs.items() if v is not None)
    return (f"check {check!r}: {p.kind} matrix of order n={p.n}, dtype {p.dtype}, true rank "
            f"{p.rank} (inertia {p.inertia}) at threshold {tau:.6g} inside the gap "
            f"({p.gap[0]:.3g}, {p.gap[1]:.3g}); called with {args}; got {answer}.\n  {p!r}")


def _validate(check, p, tau, kwargs, result, *, exact, threshold_rtol):
    truth = p.rank
    where = _describe(check, p, tau, kwargs, result)
    if isinstance(result, RankEstimate):
        rank, (lo, hi) = result.rank, result.interval
        if not isinstance(rank, numbers.Integral) or isinstance(rank, bool):
            raise AssertionError(f"rank is not an int ({type(rank).__name__}); {where}")
        if not lo <= rank <= hi:
            raise AssertionError(f"rank {rank} lies outside its interval ({lo}, {hi}); {where}")
        if not lo <= truth <= hi:
            raise AssertionError(f"interval ({lo}, {hi}) misses the true rank {truth}; {where}")
        if result.converged and rank != truth:
            raise AssertionError(f"converged=True but rank {rank} != {truth}; {where}")
        if not abs(result.threshold - tau) <= threshold_rtol * tau:
            raise AssertionError(f"threshold {result.threshold:.6g} is not the requested "
                                 f"{tau:.6g} (max(atol, rtol |lambda|_max)); {where}")
        if exact and rank != truth:
            raise AssertionError(f"rank {rank} != {truth}; {where}")
        return
    if isinstance(result, bool) or not isinstance(result, numbers.Integral):
        raise AssertionError(f"returned {type(result).__name__}, expected an int or a "
                             f"RankEstimate; {where}")
    if int(result) != truth:
        raise AssertionError(f"rank {int(result)} != {truth}; {where}")


def _call(check, func, p, tau, kwargs):
    try:
        return func(p.matrix, **kwargs)
    except Exception as exc:  # any exception on a valid problem is a failure
        raise AssertionError(f"raised {type(exc).__name__}: {exc}; "
                             + _describe(check, p, tau, kwargs, "no answer")) from exc


def _same(a, b):
    if isinstance(a, RankEstimate) and isinstance(b, RankEstimate):
        fields = ("rank", "estimate", "stderr", "threshold", "interval", "converged")
        return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True)
                   if isinstance(getattr(a, f), float) else getattr(a, f) == getattr(b, f)
                   for f in fields)
    return type(a) is type(b) and a == b


def check_rank_estimator(func, *, max_examples=25, max_n=12, exact=True, threshold_rtol=0.05,
                         checks=None, settings=None):
    """Run a rank function through known-rank problems drawn by Hypothesis.

    `func` is called as ``func(A, rtol=..., atol=...)`` (plus ``rng=`` when it accepts
    one) and must return the count ``#{|lambda| > max(atol, rtol |lambda|_max)}`` as an
    int or a :class:`lmatrank.RankEstimate`. Every call uses a threshold inside the
    problem's gap, so the right answer is unambiguous. The checks (:data:`CHECKS`):

    ``"rtol"``, ``"atol"``, ``"rtol and atol"``
        dense float64 problems, threshold given relative, absolute, or as the larger of
        the two;
    ``"indefinite"``
        at least one negative eigenvalue (the count is of ``|lambda|``);
    ``"float32"``
        float32 input, dense or sparse;
    ``"sparse"``
        scipy.sparse CSR, CSC and COO arrays;
    ``"LinearOperator"``
        matvec-only :class:`scipy.sparse.linalg.LinearOperator` input;
    ``"laplacian"``
        graph Laplacians (sparse, rank ``n - components``);
    ``"structured"``
        Kronecker products and linear-network Hessians as LinearOperators;
    ``"reproducible"``
        the same ``rng`` gives the same result (only when `func` accepts ``rng``).

    For a RankEstimate the contract fields are checked as well: ``interval`` holds the
    truth and the rank, ``converged=True`` implies the right rank, and ``threshold``
    equals the requested rule within `threshold_rtol`.

    Parameters
    ----------
    func : callable
        ``func(A, rtol=None, atol=None) -> int or RankEstimate``.
    max_examples : int, optional
        Hypothesis examples per check.
    max_n : int, optional
        Largest order drawn for the plain matrices.
    exact : bool, optional
        A RankEstimate's ``rank`` must equal the truth (default). With False only its
        contract fields are checked (for estimators that may honestly report
        ``converged=False`` with a bracket).
    threshold_rtol : float, optional
        Relative tolerance on ``RankEstimate.threshold`` (methods estimate
        ``|lambda|_max``).
    checks : iterable of str, optional
        A subset of :data:`CHECKS` (default: all).
    settings : hypothesis.settings, optional
        Override the default settings (``derandomize=True``, ``deadline=None``, no
        example database), e.g. to raise `max_examples` or seed differently.

    Raises
    ------
    AssertionError
        On the first failing check, with the shrunk counterexample: the problem (kind,
        order, true rank, inertia, gap, spectrum), the threshold and the answer.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.testing import as_dense, check_rank_estimator
    >>> def numpy_rank(A, rtol=None, atol=None):
    ...     M = as_dense(A).astype(np.float64)
    ...     lam_max = np.abs(np.linalg.eigvalsh(M)).max()
    ...     tol = max(atol or 0.0, (rtol or 0.0) * lam_max)
    ...     return int(np.linalg.matrix_rank(M, tol=tol, hermitian=True))
    >>> check_rank_estimator(numpy_rank, max_examples=5)

    A function that counts one too many is caught, on the smallest problem:

    >>> try:
    ...     check_rank_estimator(lambda A, rtol=None, atol=None:
    ...                          numpy_rank(A, rtol=rtol, atol=atol) + 1, max_examples=5)
    ... except AssertionError as exc:
    ...     print(str(exc).splitlines()[1][:25])
    rank 1 != 0; check 'rtol'
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    names = CHECKS if checks is None else tuple(checks)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; available: {list(CHECKS)}")
    if isinstance(max_n, bool) or not isinstance(max_n, numbers.Integral) or max_n < 1:
        raise ValueError(f"max_n must be an integer >= 1, got {max_n!r}")
    if settings is None:
        settings = Settings(max_examples=max_examples, deadline=None, derandomize=True,
                            database=None, report_multiple_bugs=False, print_blob=False,
                            suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.data_too_large])
    else:
        settings = Settings(settings, report_multiple_bugs=False)
    with_rng = _accepts_rng(func)
    for name in names:
        if name == "reproducible" and not with_rng:
            continue
        test = _make_check(name, func, _problems(name, max_n), exact=exact,
                           threshold_rtol=threshold_rtol, with_rng=with_rng)
        try:
            settings(test)()
        except AssertionError as exc:
            raise AssertionError(f"check_rank_estimator: check {name!r} failed on this "
                                 f"(shrunk) counterexample:\n{exc}") from exc


def _make_check(name, func, problems, *, exact, threshold_rtol, with_rng):
    @given(problem=problems, where=_WHERE, binding=st.sampled_from(["rtol", "atol"]),
           seed=st.integers(0, 2**32 - 1))
    def run(problem, where, binding, seed):
        p = problem
        tau = p.threshold_in_gap(where)
        lam_max = p.lam_max if p.lam_max > 0 else 1.0
        if name == "atol":
            kwargs = {"rtol": None, "atol": tau}
        elif name == "rtol and atol":
            other = p.gap[0] * 0.5   # the non-binding one lies below the gap
            kwargs = ({"rtol": tau / lam_max, "atol": other} if binding == "rtol"
                      else {"rtol": other / lam_max, "atol": tau})
        else:
            kwargs = {"rtol": tau / lam_max, "atol": None}
        if p.lam_max == 0:
            kwargs = {"rtol": None, "atol": tau}
        if with_rng:
            kwargs["rng"] = seed
        result = _call(name, func, p, tau, kwargs)
        shown = {k: v for k, v in kwargs.items() if k != "rng"}
        _validate(name, p, tau, shown, result, exact=exact, threshold_rtol=threshold_rtol)
        if name == "reproducible":
            again = _call(name, func, p, tau, kwargs)
            if not _same(result, again):
                raise AssertionError(f"rng={seed} gave {result!r}, then {again!r}; "
                                     + _describe(name, p, tau, shown, result))
    run.__name__ = f"check_{name.replace(' ', '_')}"
    return run
