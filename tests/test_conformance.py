"""All-methods conformance: every built-in method of the registry through the public
contract, on problems drawn by :mod:`lmatrank.testing` (known rank, gap, inertia).

Per method and per check of :func:`lmatrank.testing.check_rank_estimator` (thresholds
given as rtol / atol / both, indefinite, float32, sparse formats, LinearOperator,
graph Laplacians, structured operators, same rng => same bits): the result's interval
holds the true count at a threshold inside the gap, ``converged=True`` implies the
right rank, and ``threshold`` is the requested ``max(atol, rtol |lambda|_max)``. Plus:
typed contract fields, the default threshold rule (:func:`lmatrank._result.count_threshold`),
and ``BudgetError`` for a budget too small to answer.

A method added to the registry without an entry in ``METHOD_SETTINGS`` fails
``test_every_builtin_method_has_conformance_settings``.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import lmatrank
from lmatrank import RankEstimate, estimate_rank
from lmatrank._api import _METHODS
from lmatrank.testing import check_rank_estimator, symmetric_matrices
from lmatrank.testing._conformance import CHECKS

# (method, check) -> why it fails today: the method's own bug, reported to its owner. These
# parametrizations are xfail(strict=False); empty the dict as the methods are fixed.
KNOWN_FAILING: dict[tuple[str, str], str] = {
    ("langevin", "indefinite"): "converged=True but rank 3 != 4 (n=5, inertia (0, 4, 1), "
                                "rtol=6.5e-5, interval (2, 5) wider than the converged width)",
    ("langevin", "structured"): "converged=True but rank 5 != 4 (linear network d=2 depth=2 as "
                                "LinearOperator, rtol=3.2e-10, interval (4, 8))",
    ("auto", "budget"): "max_matvecs=2 does not raise BudgetError",
}

# Per-method settings: options passed to every call, the largest order drawn, the examples
# per check, the relative accuracy of the method's |lambda|_max (threshold check) and the
# smallest budget option that must raise BudgetError (None: the method takes no budget).
METHOD_SETTINGS = {
    "exact": dict(options={}, max_n=16, examples=15, threshold_rtol=1e-6, tiny_budget=None),
    "auto": dict(options=dict(max_matvecs=4000), max_n=10, examples=5, threshold_rtol=0.05,
                 tiny_budget=dict(max_matvecs=2)),
    "langevin": dict(options=dict(max_matvecs=4000), max_n=10, examples=5,
                     threshold_rtol=0.05, tiny_budget=dict(max_matvecs=5)),
    "chebyshev": dict(options=dict(max_matvecs=1500), max_n=10, examples=5,
                      threshold_rtol=0.05, tiny_budget=dict(max_matvecs=5)),
    "kpm": dict(options=dict(max_matvecs=1500), max_n=10, examples=5, threshold_rtol=0.05,
                tiny_budget=dict(max_matvecs=5)),
    "slq": dict(options=dict(max_matvecs=4000), max_n=10, examples=5, threshold_rtol=0.05,
                tiny_budget=dict(max_matvecs=5)),
    "sketch": dict(options=dict(max_matvecs=4000), max_n=10, examples=5, threshold_rtol=0.05,
                   tiny_budget=dict(max_matvecs=2)),
}

_PACKAGE = Path(lmatrank.__file__).parent.resolve()


def _is_builtin(entry):
    """A registry entry implemented inside the lmatrank package (not registered by a user,
    a doctest or a test): ``"lmatrank...:func"`` strings and functions defined in its files."""
    if isinstance(entry, str):
        return entry.startswith("lmatrank.")
    code = getattr(entry, "__code__", None)
    if code is None:
        return False
    try:
        return Path(code.co_filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


BUILTIN = sorted(name for name, entry in _METHODS.items() if _is_builtin(entry))
# the drawn orders are small already: no shrinking (a failing method would spend minutes on it)
CONTRACT = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# each call of these methods costs seconds (dynamics or bracket programs): one check of each
# runs in the default suite, the rest with -m slow
SLOW_METHODS = {"langevin", "chebyshev", "kpm"}
FAST_CHECK = "rtol"


def _mark(method, check):
    reason = KNOWN_FAILING.get((method, check))
    marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
    if method in SLOW_METHODS and check != FAST_CHECK:
        marks.append(pytest.mark.slow)
    return pytest.param(method, check, marks=marks, id=f"{method}-{check.replace(' ', '_')}")


def _methods(check):
    """One parameter per method, xfail where (method, check) is in KNOWN_FAILING."""
    params = []
    for method in sorted(METHOD_SETTINGS):
        reason = KNOWN_FAILING.get((method, check))
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        if method in SLOW_METHODS:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(method, marks=marks, id=method))
    return params


def _estimator(method):
    return partial(estimate_rank, method=method, **METHOD_SETTINGS[method]["options"])


def test_every_builtin_method_has_conformance_settings():
    assert set(BUILTIN) == set(METHOD_SETTINGS), (
        "every built-in method needs a METHOD_SETTINGS entry (budget, sizes) in "
        f"tests/test_conformance.py; missing {sorted(set(BUILTIN) - set(METHOD_SETTINGS))}, "
        f"stale {sorted(set(METHOD_SETTINGS) - set(BUILTIN))}")
    assert set(BUILTIN) <= set(lmatrank.available_methods())


def test_builtin_detection_ignores_user_registered_methods():
    def user_rank(op, *, rtol=None, atol=None, rng=None):
        raise AssertionError("never called")
    assert not _is_builtin(user_rank) and not _is_builtin("mypackage.ranks:f")
    assert _is_builtin("lmatrank._exact:exact_rank")
    assert _is_builtin(lmatrank._api.estimate_rank)


@pytest.mark.parametrize("method, check", [_mark(m, c) for m in sorted(METHOD_SETTINGS)
                                           for c in CHECKS])
def test_contract_on_known_rank_problems(method, check):
    """Interval coverage, converged => right, threshold = the requested rule, same bits."""
    cfg = METHOD_SETTINGS[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
        check_rank_estimator(_estimator(method), checks=[check], exact=False,
                             max_n=cfg["max_n"], threshold_rtol=cfg["threshold_rtol"],
                             settings=settings(CONTRACT, max_examples=cfg["examples"]))


@pytest.mark.parametrize("method", _methods("fields"))
def test_contract_fields_are_typed(method):
    cfg = METHOD_SETTINGS[method]

    @settings(FAST, max_examples=cfg["examples"])
    @given(symmetric_matrices(n=st.integers(1, cfg["max_n"])), st.sampled_from([True, False]))
    def run(p, relative):
        tau = p.threshold_in_gap()
        kw = dict(rtol=tau / p.lam_max) if relative and p.lam_max else dict(atol=tau)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
            est = _estimator(method)(p.matrix, rng=0, **kw)
        assert isinstance(est, RankEstimate)
        assert type(est.rank) is int and 0 <= est.rank <= p.n
        lo, hi = est.interval
        assert type(lo) is int and type(hi) is int and lo <= est.rank <= hi
        assert isinstance(est.resolution, float) and math.isfinite(est.resolution)
        assert isinstance(est.threshold, float) and est.threshold >= 0
        assert type(est.converged) is bool
        assert isinstance(est.estimate, float) and isinstance(est.stderr, float)
        assert est.stderr >= 0 and type(est.matvecs) is int and est.matvecs >= 0
        assert est.method == method or method == "auto"
        assert est.info.get("threshold_source") == ("rtol" if "rtol" in kw else "atol")
        if est.converged:
            assert est.resolution <= est.threshold * (1 + 1e-12)
    run()


@pytest.mark.parametrize("method", _methods("default threshold"))
def test_default_threshold_follows_the_numpy_rule(method):
    """No rtol/atol: n eps(dtype) |lambda|_max, raised to the product noise where higher."""
    cfg = METHOD_SETTINGS[method]

    @settings(FAST, max_examples=max(2, cfg["examples"] // 2))
    @given(symmetric_matrices(n=st.integers(2, cfg["max_n"]), rank=st.integers(1, 2),
                              dtype=st.sampled_from([np.float64, np.float32])))
    def run(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
            est = _estimator(method)(p.matrix, rng=0)
        source = est.info.get("threshold_source")
        rule = p.n * float(np.finfo(p.dtype).eps) * p.lam_max
        assert source in ("numpy default", "product noise"), source
        if source == "numpy default":
            assert est.threshold == pytest.approx(rule, rel=cfg["threshold_rtol"])
        else:
            assert est.threshold >= rule * (1 - cfg["threshold_rtol"])
    run()


@pytest.mark.parametrize("method", _methods("budget"))
def test_budget_too_small_raises_budget_error(method):
    tiny = METHOD_SETTINGS[method]["tiny_budget"]
    if tiny is None:
        pytest.skip(f"{method} takes no product budget")
    A = np.diag(np.r_[np.linspace(1.0, 2.0, 20), np.zeros(20)])
    with pytest.raises(lmatrank.BudgetError):
        estimate_rank(A, method=method, rtol=1e-3, rng=0, **tiny)
