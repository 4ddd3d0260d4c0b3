"""End-to-end tests of the ``lmatrank`` command line, through subprocess."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from lmatrank import RankEstimate
from lmatrank._cli import _normalise_argv, estimate_to_dict, load_matrix, summarize_info
from lmatrank._plotting import em_mean_rank_curve

REPO = Path(__file__).resolve().parents[1]
FIELDS = [f.name for f in dataclasses.fields(RankEstimate)]
# Euler-Maruyama on the numpy backend: its exact mean is known (theory.em_expected_rank),
# and no JIT compilation is paid in each subprocess
# (corrected=True selects the EM scheme, whose observable it qualifies)
EM_NUMPY = ("--method", "langevin", "-o", "corrected=True", "-o", "backend='numpy'")


def run_cli(*args, timeout=120):
    """Run ``python -m lmatrank ARGS`` on the working tree; stdout/stderr piped."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "lmatrank", *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def graph_laplacian(blocks):
    """Laplacian of a disjoint union of graphs given as edge lists on 0..m-1."""
    mats = []
    for m, edges in blocks:
        rows, cols = np.array(edges).T
        adj = sp.coo_array((np.ones(len(edges)), (rows, cols)), shape=(m, m))
        adj = ((adj + adj.T) > 0).astype(float)
        mats.append(sp.diags_array(np.asarray(adj.sum(axis=1)).ravel()) - adj)
    return sp.block_diag(mats, format="coo")


def complete(m):
    return m, [(i, j) for i in range(m) for j in range(i + 1, m)]


def cycle(m):
    return m, [(i, (i + 1) % m) for i in range(m)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    # graph Laplacian, 3 connected components -> rank n - 3
    lap = graph_laplacian([complete(12), complete(9), cycle(10)])
    scipy.io.mmwrite(tmp / "laplacian.mtx", lap, symmetry="symmetric")
    # dense PSD of rank 7
    basis, _ = np.linalg.qr(rng.standard_normal((40, 7)))
    dense = basis @ np.diag(np.linspace(1.0, 5.0, 7)) @ basis.T
    np.save(tmp / "dense.npy", (dense + dense.T) / 2)
    # sparse indefinite block diagonal of rank 9 (5 positive, 4 negative)
    diag = np.zeros(30)
    diag[:9] = [3.0, 2.0, 1.5, 1.0, 0.8, -0.8, -1.0, -2.0, -3.0]
    sp.save_npz(tmp / "sparse.npz", sp.csr_array(sp.diags_array(diag[rng.permutation(30)])))
    np.save(tmp / "rect.npy", np.ones((4, 6)))
    np.save(tmp / "pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp / "vector.npy", np.ones(5))
    (tmp / "notes.txt").write_text("not a matrix")
    return dict(dir=tmp, laplacian=tmp / "laplacian.mtx", dense=tmp / "dense.npy",
                sparse=tmp / "sparse.npz", rect=tmp / "rect.npy", pickled=tmp / "pickled.npy",
                vector=tmp / "vector.npy", txt=tmp / "notes.txt", lap_matrix=lap,
                dense_matrix=dense)


def assert_one_line_error(proc, code, match):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert match in lines[0], lines[0]
    assert proc.stdout == ""


def test_laplacian_mtx_langevin_json_within_stderr_of_theory(files):
    """Graph Laplacian: rank n - #components; the check is derived from stderr and theory."""
    proc = run_cli("estimate", files["laplacian"], "--json", "--seed", "3",
                   "--max-matvecs", "3000", *EM_NUMPY)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert set(FIELDS) <= set(record)
    lap = files["lap_matrix"].toarray()
    true_rank = lap.shape[0] - 3
    eigenvalues = np.linalg.eigvalsh(lap)
    info = record["info"]
    assert record["method"] == "langevin" and info["squared"] is False
    # exact mean of the averaging window (filter bias included), from the settings used
    curve = em_mean_rank_curve(eigenvalues, info["eta"], info["n_steps"])
    expected = curve[info["burn_in"]:].mean()
    assert abs(expected - true_rank) < 0.05  # well-conditioned: filter bias negligible
    assert record["stderr"] > 0
    assert abs(record["estimate"] - expected) <= 5 * record["stderr"]
    assert record["rank"] == true_rank
    assert record["matvecs"] <= 3000


def test_laplacian_mtx_exact_and_text_output(files):
    proc = run_cli(files["laplacian"], "--method", "exact", "--quiet")  # bare path = estimate
    assert proc.returncode == 0, proc.stderr
    assert f"(rank {files['lap_matrix'].shape[0] - 3})" in proc.stdout
    for label in ("method", "estimate", "threshold", "products", "time"):
        assert label in proc.stdout
    assert proc.stderr == ""


def test_dense_npy_json_holds_every_field(files):
    proc = run_cli("estimate", files["dense"], "--method", "exact", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    for name in FIELDS:
        assert name in record, name
    assert record["rank"] == 7 and record["estimate"] == 7.0 and record["stderr"] == 0.0
    assert record["method"] == "exact" and record["converged"] is True
    assert isinstance(record["info"], dict) and record["info"]["n_positive"] == 7
    # 40 eigenvalues > JSON_ARRAY_LIMIT: summarised, not dumped
    assert record["info"]["eigenvalues"]["length"] == 40
    assert record["true_rank"] is None and record["time_s"] >= 0


def test_sparse_npz_indefinite_rank(files):
    proc = run_cli("estimate", files["sparse"], "--method", "exact", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["rank"] == 9
    assert (record["info"]["n_positive"], record["info"]["n_negative"]) == (5, 4)


def test_sparse_npz_langevin_counts_both_signs(files):
    proc = run_cli("estimate", files["sparse"], "--json", "--max-matvecs", "4000", "--seed", "1",
                   *EM_NUMPY)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    info = record["info"]
    assert info["squared"] is True
    diag = sp.load_npz(files["sparse"]).diagonal()
    curve = em_mean_rank_curve(diag ** 2, info["eta"], info["n_steps"])
    expected = curve[info["burn_in"]:].mean()
    assert abs(record["estimate"] - expected) <= 5 * record["stderr"]
    assert abs(expected - 9) < 0.05 and record["rank"] == 9


def test_method_options_are_passed(files):
    proc = run_cli("estimate", files["dense"], "--json", "--max-matvecs", "1500",
                   "-o", "n_chains=4", "-o", "noise='gaussian'", *EM_NUMPY)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)["info"]
    assert info["n_chains"] == 4 and info["noise"] == "gaussian"


def test_missing_file_exit_2(files):
    assert_one_line_error(run_cli("estimate", files["dir"] / "absent.npy"), 2, "no such file")


def test_non_square_exit_2(files):
    assert_one_line_error(run_cli("estimate", files["rect"]), 2, "non-square 4x6")


def test_pickle_npy_exit_2(files):
    assert_one_line_error(run_cli(files["pickled"]), 2, "pickled Python objects")


def test_vector_and_unknown_suffix_exit_2(files):
    assert_one_line_error(run_cli(files["vector"]), 2, "1-D array")
    assert_one_line_error(run_cli(files["txt"]), 2, "unsupported file type")


def test_usage_errors_exit_2(files):
    assert_one_line_error(run_cli("estimate"), 2, "required: file")
    assert_one_line_error(run_cli("estimate", files["dense"], "--method", "nope"), 2,
                          "invalid choice")
    assert_one_line_error(run_cli("estimate", files["dense"], "-o", "bogus_option=1"), 2,
                          "unknown option(s)")
    assert_one_line_error(run_cli("estimate", files["dense"], "--max-matvecs", "0"), 2,
                          "positive integer")


def test_divergence_exit_1(files):
    # lambda_max = 5: eta = 1 is unstable and the estimator refuses to return a number
    assert_one_line_error(run_cli("estimate", files["dense"], "-o", "eta=1.0", *EM_NUMPY), 1,
                          "estimation failed")


def test_budget_without_answer_exit_1(files):
    assert_one_line_error(run_cli("estimate", files["dense"], "--max-matvecs", "5", *EM_NUMPY), 1,
                          "max_matvecs=5")


def test_info_reports_shape_nnz_symmetry_lambda_max(files):
    proc = run_cli("info", files["laplacian"], "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    lap = files["lap_matrix"]
    assert report["shape"] == list(lap.shape)
    assert report["nnz"] == sp.csr_array(lap).nnz
    assert report["symmetric"] is True
    assert report["lambda_max"] == pytest.approx(np.linalg.eigvalsh(lap.toarray())[-1], rel=1e-8)
    text = run_cli("info", files["rect"])
    assert text.returncode == 0 and "4x6" in text.stdout and "n/a" in text.stdout


def test_info_detects_asymmetry(tmp_path):
    np.save(tmp_path / "asym.npy", np.array([[1.0, 2.0], [0.0, 1.0]]))
    proc = run_cli("info", tmp_path / "asym.npy")
    assert proc.returncode == 0
    assert "symmetric  NO" in proc.stdout


def test_demo_default_problem_json():
    # leading option without subcommand -> demo; small budget keeps it fast
    proc = run_cli("--max-matvecs", "2000", "--json", "--quiet", *EM_NUMPY)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["true_rank"] == 1024
    assert record["matvecs"] <= 2000
    assert "default problem" in record["input"]


def test_plot_writes_png(files, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "diag.png"
    proc = run_cli("estimate", files["dense"], "--max-matvecs", "1000", "--plot", out, "-q",
                   *EM_NUMPY)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_normalise_argv():
    assert _normalise_argv([]) == ["demo"]
    assert _normalise_argv(["a.npy", "--json"]) == ["estimate", "a.npy", "--json"]
    assert _normalise_argv(["--seed", "2"]) == ["demo", "--seed", "2"]
    assert _normalise_argv(["info", "a.npy"]) == ["info", "a.npy"]
    assert _normalise_argv(["--help"]) == ["--help"]


def test_load_matrix_formats(files, tmp_path):
    assert load_matrix(files["dense"]).shape == (40, 40)
    assert sp.issparse(load_matrix(files["sparse"]))
    import gzip

    with gzip.open(tmp_path / "lap.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, files["lap_matrix"])
    assert load_matrix(tmp_path / "lap.mtx.gz").shape == files["lap_matrix"].shape
    with pytest.raises(ValueError, match="pickled"):
        load_matrix(files["pickled"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_matrix(tmp_path / "nothing.npz")
    np.savez(tmp_path / "plain.npz", a=np.eye(2))
    with pytest.raises(ValueError, match="not a scipy.sparse.save_npz file"):
        load_matrix(tmp_path / "plain.npz")


def test_json_summary_is_strict_json():
    info = dict(curve=np.arange(100.0), short=np.array([1.0, np.nan]), nested=dict(x=np.inf),
                attempts=[dict(eta=0.1)], obj=object(), flag=np.bool_(True), n=np.int64(3))
    summary = summarize_info(info)
    text = json.dumps(summary, allow_nan=False)
    back = json.loads(text)
    assert back["curve"]["length"] == 100 and back["curve"]["last"] == 99.0
    assert back["short"] == [1.0, None] and back["nested"] == {"x": None}
    assert back["attempts"] == [{"eta": 0.1}] and back["flag"] is True and back["n"] == 3
    est = RankEstimate(rank=1, estimate=1.0, stderr=float("nan"), threshold=0.5, matvecs=3,
                       method="x", info=info)
    record = estimate_to_dict(est)
    assert record["stderr"] is None and list(record)[:len(FIELDS)] == FIELDS


def test_console_script_entry_point(files):
    import shutil

    exe = shutil.which("lmatrank")
    if exe is None:
        pytest.skip("the lmatrank console script is not installed (pip install .)")
    proc = subprocess.run([exe, "info", str(files["dense"]), "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["shape"] == [40, 40]
    missing = subprocess.run([exe, "estimate", str(files["dir"] / "absent.npz")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("lmatrank: error: no such file")
