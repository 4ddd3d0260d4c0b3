"""Every built-in method on small real matrices: the contract, checked against eigvalsh.

For each matrix (networkx graphs, an iris RBF kernel, a path-graph Laplacian, a SuiteSparse
stiffness matrix, the Hessian of a tiny MLP trained on digits), each method of
``lmatrank.available_methods()`` that ships with lmatrank, and each threshold (numpy's
default and ``rtol=1e-6``):

- the reported ``threshold`` is the contract's rule (``rtol |lambda|max``, or ``n eps
  |lambda|max`` raised to the measured product noise) within 1% (the accuracy of a
  method's |lambda|max estimate);
- the true count above the reported threshold lies in ``interval``, and so does ``rank``;
- ``converged=True`` implies an interval at most ``max(4, 2% of the count)`` wide.

``KNOWN_FAILING`` marks the cases that do not meet the contract yet as non-strict xfail;
keys are a method, ``(method, matrix)`` or ``(method, matrix, threshold)``.
"""

from __future__ import annotations

import warnings

import pytest

import lmatrank
from lmatrank import _api

from tests._realworld import SMALL, case_seed, contract_rule, count_above, real_matrix

KNOWN_FAILING: dict = {}

#: (method, matrix) cases that take ~10 s on a shared 2-core machine: run with -m slow
SLOW = {("langevin", "mlp4_digits200_hessian")}

THRESHOLDS = {"default": {}, "rtol=1e-6": {"rtol": 1e-6}}
THRESHOLD_REL_TOL = 1e-2


def _builtin_methods():
    """Registered methods implemented inside lmatrank (user-registered ones left out)."""
    names = []
    for name in lmatrank.available_methods():
        func = _api._METHODS[name]
        module = func.partition(":")[0] if isinstance(func, str) else getattr(
            func, "__module__", "")
        if module.split(".")[0] == "lmatrank":
            names.append(name)
    return names


def _known(method, matrix, threshold):
    for key in ((method, matrix, threshold), (method, matrix), method):
        if key in KNOWN_FAILING:
            return KNOWN_FAILING[key]
    return None


def _cases():
    for method in _builtin_methods():
        for matrix in SMALL:
            for threshold in THRESHOLDS:
                reason = _known(method, matrix, threshold)
                marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
                if (method, matrix) in SLOW:
                    marks.append(pytest.mark.slow)
                yield pytest.param(method, matrix, threshold, marks=marks,
                                   id=f"{method}-{matrix}-{threshold}")


def _run(method, matrix, threshold):
    A, lam = real_matrix(matrix)
    seed = case_seed(method, matrix, threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
        est = lmatrank.estimate_rank(A, method=method, rng=seed, **THRESHOLDS[threshold])
    return A, lam, seed, est


@pytest.mark.parametrize(("method", "matrix", "threshold"), list(_cases()))
def test_real_matrix_contract(method, matrix, threshold):
    A, lam, seed, est = _run(method, matrix, threshold)
    rule = contract_rule(A, lam, seed, **THRESHOLDS[threshold])
    assert est.threshold == pytest.approx(rule, rel=THRESHOLD_REL_TOL), (
        f"reported threshold {est.threshold:.6g} ({est.info.get('threshold_source')}) is not "
        f"the contract's {rule:.6g}")
    truth = count_above(lam, est.threshold)
    lo, hi = est.interval
    assert lo <= truth <= hi, f"true count {truth} outside interval {est.interval} ({est})"
    assert lo <= est.rank <= hi, f"rank {est.rank} outside its own interval {est.interval}"
    if est.converged:
        assert hi - lo <= max(4, 0.02 * truth), (
            f"converged interval {est.interval} wider than max(4, 2% of {truth})")


def test_builtin_methods_are_all_checked():
    """The roster follows the registry: every shipped method is exercised above."""
    assert {"exact", "auto", "langevin", "slq", "chebyshev", "kpm", "sketch"} <= set(
        _builtin_methods())


def test_small_real_matrices_are_what_they_claim():
    """Known facts of the matrices, so a broken loader cannot pass silently."""
    _, lam = real_matrix("path100_laplacian")
    assert count_above(lam, 1e-10) == 99                       # connected path: rank n - 1
    _, lam = real_matrix("karate_laplacian")
    assert lam.size == 34 and count_above(lam, 1e-10) == 33
    _, lam = real_matrix("davis_adjacency")
    assert lam.size == 32 and (lam < -1e-10).sum() > 0          # bipartite: indefinite
    assert lam.min() == pytest.approx(-lam.max())               # symmetric spectrum
    _, lam = real_matrix("ss_bcsstk01")
    assert lam.size == 48 and lam.min() > 0                     # stiffness matrix: SPD
    A, lam = real_matrix("iris_rbf")
    assert A.shape == (150, 150) and lam.min() > -1e-10         # RBF kernel: PSD
    A, lam = real_matrix("mlp4_digits200_hessian")
    assert A.shape == (310, 310) and (lam < 0).any()            # trained MLP: indefinite
