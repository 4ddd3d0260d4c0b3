"""Hostile and careless inputs: one regression test per defect class.

Each test reproduces a way a wrong number, a traceback or a memory blow-up used to
come out of the input layer, and checks the answer is now right or a clear error.
Runs that cannot resolve their threshold warn (ConvergenceWarning); these tests check the
answers, intervals and errors, so that warning is ignored here.
"""

import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

import lmatrank
from lmatrank import estimate_rank
from lmatrank._cli import load_matrix

pytestmark = pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")


def low_rank(n=80, r=9, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return U @ np.diag(np.linspace(1.0, 2.0, r)) @ U.T


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "lmatrank", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- 1 sparse
@pytest.mark.parametrize("indices, indptr, match", [
    ([0, 1, 7], [0, 1, 2, 3], "column index 7 out of range"),
    ([0, 1, 100_000_000], [0, 1, 2, 3], "out of range"),
    ([0, 1, -1], [0, 1, 2, 3], "column index -1 out of range"),
    ([0, 1, 2], [0, 5, 1, 2], "indptr is not non-decreasing|exceeds"),
    ([0, 1, 2], [0, 1, 2], "indptr has length 3, expected 4"),
    ([0, 1, 2], [0, 1, 2, 9], "indptr\\[-1\\] = 9 exceeds"),
    ([0, 1, 2], [1, 1, 2, 3], "indptr\\[0\\] = 1"),
])
def test_malformed_sparse_refused(tmp_path, indices, indptr, match):
    M = sp.csr_array((3, 3))  # the arrays set afterwards, past scipy's own length checks
    M.data, M.indices, M.indptr = np.ones(3), np.array(indices), np.array(indptr)
    with pytest.raises(ValueError, match=match):
        estimate_rank(M, method="exact")
    path = tmp_path / "bad.npz"
    np.savez(path, format=np.array("csr"), shape=np.array([3, 3]), data=np.ones(3),
             indices=np.array(indices), indptr=np.array(indptr))
    with pytest.raises(ValueError, match="malformed sparse matrix|cannot read"):
        load_matrix(path)
    proc = run_cli("estimate", path, "--method", "exact")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_malformed_coo_after_construction():
    M = sp.coo_array((np.ones(2), (np.array([0, 1]), np.array([0, 1]))), shape=(3, 3))
    M.col[1] = 5  # mutated after scipy's own check
    with pytest.raises(ValueError, match="column index 5 out of range"):
        estimate_rank(M, method="exact")


# ----------------------------------------------------------------------------- 2 dtypes
def test_byte_order_keeps_float32_semantics():
    A = low_rank()
    native = estimate_rank(A.astype(np.float32), method="exact")
    swapped = estimate_rank(A.astype(">f4"), method="exact")
    assert swapped.rank == native.rank == 9
    assert swapped.threshold == native.threshold


def test_float16_judged_at_float16_precision():
    assert estimate_rank(low_rank().astype(np.float16), method="exact").rank == 9


@pytest.mark.parametrize("dtype", [int, np.float16, "complex128", object, "U3"])
def test_unsupported_dtype_option_is_a_type_error(dtype):
    with pytest.raises(TypeError, match="dtype"):
        estimate_rank(np.eye(3), method="exact", dtype=dtype)


# ----------------------------------------------------------------------------- 3 scale
@pytest.mark.parametrize("k", [-1000, -600, 600, 1000])
def test_extreme_scale_exact_bits(k):
    A = low_rank(60, 12)
    A = A / (2.0 ** math.frexp(np.abs(A).max())[1])  # max |entry| in [0.5, 1)
    ref = estimate_rank(A, method="exact")
    est = estimate_rank(np.ldexp(A, k), method="exact")
    assert est.rank == ref.rank == 12 and est.converged
    assert est.threshold == math.ldexp(ref.threshold, k)
    assert est.info["scale"] == 2.0 ** k
    np.testing.assert_array_equal(est.info["eigenvalues"], np.ldexp(ref.info["eigenvalues"], k))


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")  # bits, not convergence
@pytest.mark.parametrize("method", ["langevin", "slq", "chebyshev", "kpm", "sketch"])
def test_extreme_scale_identical_counts(method):
    A = low_rank(60, 12)
    A = A / (2.0 ** math.frexp(np.abs(A).max())[1])
    results = [estimate_rank(np.ldexp(A, k), method=method, rng=1) for k in (-800, 800)]
    assert results[0].estimate == results[1].estimate
    assert results[0].interval == results[1].interval
    assert results[0].threshold == math.ldexp(results[1].threshold, -1600)
    assert all(np.isfinite(r.threshold) and r.threshold > 0 for r in results)


def test_extreme_scale_atol_is_scaled():
    A = np.diag([4.0, 2.0, 1.0, 0.0]) * 2.0 ** 700
    est = estimate_rank(A, method="exact", atol=1.5 * 2.0 ** 700)
    assert est.rank == 2 and est.threshold == 1.5 * 2.0 ** 700


# ----------------------------------------------------------------------------- 4 non-finite
def _failing_operator(A, after, value=np.inf):
    count = [0]

    def matmat(X):
        count[0] += X.shape[1]
        Y = A @ X
        if count[0] > after:
            Y[0, 0] = value
        return Y

    return LinearOperator(A.shape, matvec=lambda x: A @ x, matmat=matmat, dtype=A.dtype)


@pytest.mark.parametrize("method", ["exact", "langevin", "slq", "chebyshev", "kpm"])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_non_finite_operator_output_named(method, value):
    A = low_rank(60, 12)
    with pytest.raises(ValueError, match="operator returned non-finite values .* at product"):
        estimate_rank(_failing_operator(A, 40, value), method=method, rng=0)


def test_inf_from_the_start_is_refused():
    with pytest.raises(ValueError, match="non-finite values .* at product 3"):
        estimate_rank(_failing_operator(low_rank(), 0), method="exact")


# ----------------------------------------------------------------------------- 5 settings


@pytest.mark.parametrize("n_steps", [1, 2])
def test_degenerate_n_steps(n_steps):
    A = low_rank(60, 12)
    try:
        est = estimate_rank(A, method="langevin", scheme="em", n_steps=n_steps, rng=0)
    except ValueError:
        return
    assert not est.converged or est.interval[0] <= 12 <= est.interval[1]


def test_tiny_eta_not_confident():
    A = low_rank(60, 12)
    try:
        est = estimate_rank(A, method="langevin", scheme="em", eta=1e-12, rng=0)
    except ValueError:
        return
    assert not est.converged or est.interval[0] <= 12 <= est.interval[1]


def test_uncorrected_near_stability_not_confident():
    A = low_rank(60, 12)
    lam = np.abs(np.linalg.eigvalsh(A)).max()
    try:
        est = estimate_rank(A, method="langevin", scheme="em", corrected=False,
                            eta=1.95 / lam, rng=0)
    except (ValueError, lmatrank.DivergenceError):
        return
    assert est.rank <= 60 and (not est.converged or est.interval[0] <= 12 <= est.interval[1])


def test_chebyshev_low_degree_counts_at_its_threshold():
    A = low_rank(60, 12) + np.diag(np.r_[np.zeros(48), np.zeros(12)])
    est = estimate_rank(A, method="chebyshev", degree=5, rng=0)
    truth = int(np.sum(np.abs(np.linalg.eigvalsh(A)) > est.threshold))
    assert not est.converged or est.interval[0] <= truth <= est.interval[1]


# ----------------------------------------------------------------------------- 6 CLI
def _one_line_error(proc, code):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("array", [np.ones(5), np.array(3.0), np.eye(4, dtype=bool)])
def test_cli_info_on_odd_arrays(tmp_path, array):
    path = tmp_path / "a.npy"
    np.save(path, array)
    proc = run_cli("info", path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_cli_internal_error_is_exit_1_with_debug(tmp_path, monkeypatch):
    from lmatrank import _cli

    path = tmp_path / "a.npy"
    np.save(path, np.eye(3))

    def broken(*args, **kwargs):
        raise IndexError("index 3 is out of bounds")

    monkeypatch.setattr(_cli, "estimate_rank", broken)
    import io
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert _cli.main(["estimate", str(path), "-q"]) == 1
    assert err.getvalue().startswith("lmatrank: internal error: IndexError")
    assert len(err.getvalue().strip().splitlines()) == 1
    err.truncate(0)
    assert _cli.main(["estimate", str(path), "-q", "--debug"]) == 1
    assert "Traceback" in err.getvalue()


def test_cli_numpy_value_error_is_not_an_input_error(tmp_path, monkeypatch):
    from lmatrank import _cli

    path = tmp_path / "a.npy"
    np.save(path, np.eye(3))
    monkeypatch.setattr(_cli, "estimate_rank", lambda *a, **k: np.linalg.eigvalsh(
        np.full((2, 2), np.inf)))
    assert _cli.main(["estimate", str(path), "-q"]) == 1


def test_cli_keyboard_interrupt_exit_130(tmp_path, monkeypatch, capsys):
    from lmatrank import _cli

    path = tmp_path / "a.npy"
    np.save(path, np.eye(3))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "estimate_rank", interrupted)
    assert _cli.main(["estimate", str(path), "-q"]) == 130
    assert capsys.readouterr().err.strip() == "lmatrank: interrupted"


# ----------------------------------------------------------------------------- 7 zip bomb
def test_zip_bomb_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("format.npy", b"\0" * 100)
        with zf.open("data.npy", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(64):  # 64 MiB inflated, ~64 KiB on disk
                member.write(block)
    assert os.path.getsize(path) < 1 << 20
    with pytest.raises(ValueError, match="needs about 64 MiB, more than the memory cap"):
        load_matrix(path, max_memory=16 << 20)
    proc = run_cli("info", path, "--max-memory", "16M")
    _one_line_error(proc, 2)


# ----------------------------------------------------------------------------- 8 mtx header
@pytest.mark.parametrize("text, match", [
    ("%%MatrixMarket matrix coordinate real general\n1000000000 1000000000 3\n"
     "1 1 1\n2 2 1\n3 3 1\n", "more than the memory cap"),
    ("%%MatrixMarket matrix array real general\n1000000 1000000\n1\n", "cannot fit"),
    ("%%MatrixMarket matrix coordinate real general\n10 10 90\n1 1 1\n", "cannot fit"),
    ("%%MatrixMarket matrix coordinate real general\n10 10 200\n1 1 1\n", "200 entries in a"),
    ("not a matrix market file\n", "not a Matrix Market file"),
])
def test_matrix_market_header_checked_before_allocating(tmp_path, text, match):
    path = tmp_path / "m.mtx"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_matrix(path, max_memory=1 << 30)


# ----------------------------------------------------------------------------- 10 files
def test_special_files_refused(tmp_path):
    zero = tmp_path / "x.mtx"
    os.symlink("/dev/zero", zero)
    with pytest.raises(ValueError, match="not a regular file"):
        load_matrix(zero)
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_matrix(fifo)  # returns at once: never opened for a blocking read
    _one_line_error(run_cli("estimate", fifo, timeout=60), 2)


# ----------------------------------------------------------------------------- 11 random
def test_random_bytes_npy_is_not_called_pickle(tmp_path):
    path = tmp_path / "r.npy"
    path.write_bytes(np.random.default_rng(0).bytes(400))
    with pytest.raises(ValueError, match="not a valid .npy file"):
        load_matrix(path)


def test_truncated_npy(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.eye(50))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        load_matrix(path)


# ----------------------------------------------------------------------------- 12 rng
def test_random_state_accepted_deterministically():
    A = low_rank(60, 12)
    a = estimate_rank(A, method="slq", rng=np.random.RandomState(3))
    b = estimate_rank(A, method="slq", rng=np.random.RandomState(3))
    assert a.estimate == b.estimate


# ----------------------------------------------------------------------------- 14 options
@pytest.mark.parametrize("options, exc, match", [
    (dict(eta="x"), TypeError, "eta must be a real number"),
    (dict(n_chains=True), TypeError, "n_chains must be an integer"),
    (dict(lanczos_steps=0), ValueError, "lanczos_steps must be a positive integer"),
    (dict(n_steps=4.5), ValueError, "n_steps must be an integer"),
    (dict(max_matvecs="many"), TypeError, "max_matvecs must be an integer"),
    (dict(sigma2=np.inf), ValueError, "sigma2 must be finite"),
])
def test_bad_option_values_name_the_option(options, exc, match):
    with pytest.raises(exc, match=match):
        estimate_rank(np.eye(4), method="langevin", **options)


@pytest.mark.parametrize("method, options, exc, match", [
    ("slq", dict(n_probes=0), ValueError, "n_probes must be a positive integer"),
    ("chebyshev", dict(degree="high"), TypeError, "degree must be an integer"),
    ("kpm", dict(doubling="yes"), TypeError, "doubling must be True or False"),
    ("sketch", dict(oversample=-1), ValueError, "oversample must be an integer >= 0"),
])
def test_bad_spectral_options_name_the_option(method, options, exc, match):
    with pytest.raises(exc, match=match):
        estimate_rank(np.eye(4), method=method, **options)


# ----------------------------------------------------------------------------- 15 budget
@pytest.mark.parametrize("method", ["slq", "chebyshev", "kpm", "sketch"])
def test_budget_too_small_is_budget_error(method):
    A = low_rank(60, 12)
    with pytest.raises(lmatrank.BudgetError):
        estimate_rank(A, method=method, max_matvecs=5, rng=0)


# ----------------------------------------------------------------------------- 16 small
def test_non_integral_shape_refused():
    class Op:
        shape = (4.5, 4.5)
        dtype = np.float64

        def matmat(self, X):
            return X

    with pytest.raises(ValueError, match="shape\\[0\\] must be an integer, got 4.5"):
        estimate_rank(Op(), method="exact")


def test_langevin_honours_atol_zero():
    A = np.diag(np.r_[np.linspace(1.0, 2.0, 10), np.zeros(20)])
    est = estimate_rank(A, method="langevin", atol=0.0, rng=0)
    assert est.threshold == 0.0 or est.info.get("threshold_source") == "atol"


def test_langevin_stderr_finite_for_n_avg_one():
    est = estimate_rank(low_rank(60, 12), method="langevin", scheme="em", n_avg=1, rng=0)
    assert np.isfinite(est.stderr)
