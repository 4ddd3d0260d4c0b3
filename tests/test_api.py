"""estimate_rank: the public contract (fields, options, errors, exact method)."""

import numpy as np
import pytest
import scipy.sparse as sp

import lmatrank
from lmatrank import RankEstimate, estimate_rank
from lmatrank._exact import EXACT_MAX_N
from tests._matrices import psd_with_rank, symmetric_with_spectrum


@pytest.fixture
def psd():
    return psd_with_rank(np.random.default_rng(0), 40, 12)


def test_result_fields_and_int(psd):
    A, _ = psd
    est = estimate_rank(A, method="exact")
    assert isinstance(est, RankEstimate)
    assert int(est) == est.rank == 12
    assert est.estimate == 12.0 and est.stderr == 0.0 and est.method == "exact"
    assert est.converged and est.threshold > 0 and est.matvecs >= 3
    assert "rank 12" in str(est)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_matches_matrix_rank_and_counts_both_signs(seed):
    rng = np.random.default_rng(seed)
    eig = np.concatenate([rng.uniform(1, 10, 7), -rng.uniform(1, 10, 5), np.zeros(8)])
    A, _ = symmetric_with_spectrum(rng, eig)
    est = estimate_rank(A, method="exact", rng=seed)
    assert est.rank == np.linalg.matrix_rank(A, hermitian=True) == 12
    assert (est.info["n_positive"], est.info["n_negative"]) == (7, 5)


def test_exact_threshold_semantics():
    A = np.diag([10.0, 1.0, 1e-3, 1e-6, 0.0])
    assert estimate_rank(A, method="exact", rtol=5e-5).rank == 3
    assert estimate_rank(A, method="exact", atol=0.5).rank == 2
    assert estimate_rank(A, method="exact", rtol=1e-4, atol=2.0).rank == 1  # max of the two
    est = estimate_rank(A, method="exact", rtol=1e-2)
    assert est.threshold == pytest.approx(0.1)


def test_exact_refuses_large_n():
    with pytest.raises(ValueError, match="exceeds its limit max_n=10"):
        estimate_rank(sp.eye(11, format="csr"), method="exact", max_n=10)
    assert EXACT_MAX_N >= 5000


def test_exact_materialises_operators_with_counted_products(psd):
    A, _ = psd
    est = estimate_rank(sp.linalg.aslinearoperator(A), method="exact", check_symmetry=False)
    assert est.rank == 12 and est.matvecs == 40


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(method="nope"), ValueError, "unknown method 'nope'"),
    (dict(method=3), TypeError, "method must be a string"),
    (dict(rtol=-1.0), ValueError, "rtol must be >= 0"),
    (dict(atol=np.nan), ValueError, "atol must be finite"),
    (dict(rtol="big"), TypeError, "rtol must be a real number"),
    (dict(bogus=1, other=2), TypeError, "unknown option.*bogus, other"),
    (dict(method="exact", n_chains=4), TypeError, "unknown option.*n_chains"),
    (dict(max_matvecs=0), ValueError, "max_matvecs must be a positive integer"),
    (dict(max_matvecs=2.5), ValueError, "max_matvecs"),
    (dict(n_chains=0), ValueError, "n_chains must be a positive integer"),
    (dict(n_steps=-3), ValueError, "n_steps must be a positive integer"),
    (dict(n_steps=10, n_avg=20), ValueError, "n_avg=20 exceeds n_steps=10"),
    (dict(eta=-1.0), ValueError, "eta must be > 0"),
    (dict(sigma2=0.0), ValueError, "sigma2 must be > 0"),
    (dict(noise="pink"), ValueError, "noise must be one of 'rademacher', 'gaussian'"),
    (dict(spectrum="odd"), ValueError, "spectrum must be"),
    (dict(eta="x"), TypeError, "eta must be a real number"),
    (dict(n_chains=True), TypeError, "n_chains must be an integer"),
    (dict(lanczos_steps=0), ValueError, "lanczos_steps must be a positive integer"),
    (dict(corrected="yes"), TypeError, "corrected must be True or False"),
    (dict(progress=3), TypeError, "progress must be"),
    (dict(backend=1), TypeError, "backend must be"),
    (dict(check_symmetry="no"), TypeError, "check_symmetry must be True or False"),
    (dict(dtype=int), TypeError, "dtype must be one of float32, float64"),
    (dict(dtype=np.float16), TypeError, "dtype must be one of float32, float64"),
    (dict(rng="seed"), TypeError, "rng must be None, an int"),
    (dict(rng=-1), ValueError, "rng must be a non-negative"),
    (dict(backend="fortran"), ValueError, "unknown backend 'fortran'"),
    (dict(max_matvecs=30, n_chains=8), lmatrank.BudgetError, "leaves room for only"),
    (dict(max_matvecs=500, n_steps=100, n_chains=8), ValueError, "exceeds max_matvecs=500"),
])
def test_bad_options(psd, kwargs, exc, match):
    A, _ = psd
    with pytest.raises(exc, match=match):
        estimate_rank(A, **{"rng": 0, "method": "langevin", "scheme": "em", **kwargs})


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones((3, 4)), ValueError, "square"),
    (np.ones(5), ValueError, "2-D"),
    (np.zeros((0, 0)), ValueError, "empty"),
    (np.array([[1.0, np.nan], [np.nan, 2.0]]), ValueError, "non-finite"),
    (np.array([[1.0, np.inf], [np.inf, 2.0]]), ValueError, "non-finite"),
    (np.eye(3) * (1 + 1j), TypeError, "complex"),
    (np.array([[None, 1], [1, None]]), TypeError, "object"),
    (np.array([[1.0, 5.0], [0.0, 1.0]]), ValueError, "not symmetric"),
])
@pytest.mark.parametrize("method", ["langevin", "exact"])
def test_bad_inputs(bad, exc, match, method):
    with pytest.raises(exc, match=match):
        estimate_rank(bad, method=method, rng=0)


def test_available_methods_and_registration(psd):
    assert {"langevin", "exact"} <= set(lmatrank.available_methods())

    def constant(op, *, rtol, atol, rng, value=1):
        return RankEstimate(rank=value, estimate=float(value), stderr=0.0, threshold=0.0,
                            matvecs=op.matvecs, method="constant")

    lmatrank.register_method("constant-test", constant)
    try:
        A, _ = psd
        assert estimate_rank(A, method="constant-test", value=7).rank == 7
        with pytest.raises(TypeError, match="unknown option.*valu"):
            estimate_rank(A, method="constant-test", valu=7)
    finally:
        from lmatrank import _api
        del _api._METHODS["constant-test"]


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")  # reproducibility only
def test_same_rng_same_result(psd):
    A, _ = psd
    a = estimate_rank(A, method="langevin", rng=123, max_matvecs=3000)
    b = estimate_rank(A, method="langevin", rng=123, max_matvecs=3000)
    c = estimate_rank(A, method="langevin", rng=124, max_matvecs=3000)
    assert a.estimate == b.estimate and a.stderr == b.stderr and a.matvecs == b.matvecs
    assert a.estimate != c.estimate
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert estimate_rank(A, method="langevin", rng=g1, max_matvecs=3000).estimate == \
        estimate_rank(A, method="langevin", rng=g2, max_matvecs=3000).estimate
