"""Smoke test of ``python -m bench scale --quick`` and of its closed-form truth."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("numba")

from bench import scale  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIELDS = ("dim", "m", "n", "nnz", "time_s", "peak_rss_mb", "build_mb", "matvecs", "n_chains",
          "n_steps", "rank", "estimate", "interval", "converged", "threshold", "resolution",
          "truth", "truth_at_threshold", "rel_error_pct", "achieved_gbs", "step_mb",
          "bytes_streamed", "threshold_source")


def test_scale_quick_records_and_truth_inside_the_interval(tmp_path):
    out = tmp_path / "scale"
    assert scale.main(["--quick", "--out", str(out)]) == 0
    data = json.loads((out / "scale.json").read_text())
    assert data["roofline_gbs"] > 0
    cases = data["cases"]
    assert [(c["dim"], c["m"]) for c in cases] == [tuple(c) for c in scale.QUICK["cases"]]
    for rec in cases:
        assert not rec.get("error"), rec.get("error")
        missing = [f for f in FIELDS if f not in rec]
        assert not missing, missing
        assert rec["n"] == rec["m"] ** rec["dim"]
        assert rec["truth"] == rec["n"] - 1          # numpy's default threshold
        lo, hi = rec["interval"]
        assert lo <= rec["truth_at_threshold"] <= hi, rec
        assert lo <= rec["truth"] <= hi, rec
        assert rec["matvecs"] <= scale.TUNED[rec["dim"]]["max_matvecs"]
        assert rec["peak_rss_mb"] >= rec["rss_after_build_mb"] > 0
        assert 0 < rec["achieved_gbs"] and rec["n_steps"] > 0
        assert abs(rec["rel_error_pct"]) < 5.0
    md = (out / "scale.md").read_text()
    assert "python -m bench scale --quick" in md and "roofline" in md
    assert md.count("| 3-D ") >= 2 and md.count("| 2-D ") >= 2
    assert (out / "scale.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "docs").exists()


@pytest.mark.parametrize("dim,m", [(1, 9), (2, 7), (3, 5), (2, 12)])
def test_exact_count_matches_eigvalsh(dim, m):
    A = scale.grid_laplacian(m, dim)
    assert A.indices.dtype == np.int32 and A.indptr.dtype == np.int32
    assert A.dtype == np.float64 and (A - A.T).nnz == 0
    ev = np.linalg.eigvalsh(A.toarray())
    assert ev.max() == pytest.approx(scale.lambda_max(m, dim), rel=1e-12)
    for t in np.random.default_rng(0).uniform(0.0, ev.max(), 12):
        assert scale.exact_count(m, dim, t) == int((ev > t).sum())
    tol = scale.numpy_threshold(m, dim)
    assert scale.exact_count(m, dim, tol) == np.linalg.matrix_rank(A.toarray()) == m ** dim - 1


def test_laplacian_stencil_and_bytes():
    A = scale.grid_laplacian(4, 3)
    assert A.nnz == 7 * 64 - 6 * 16                  # 7-point stencil minus the boundary
    assert np.allclose(A @ np.ones(64), 0.0)          # Neumann: constants in the kernel
    assert scale.matrix_bytes(64, A.nnz) == 12 * A.nnz + 4 * 65
    assert scale.step_bytes(64, A.nnz, 2) == scale.matrix_bytes(64, A.nnz) + 2 * 4 * 8 * 64
    # Lanczos: step k reads the k stored basis vectors twice on top of the product
    extra = scale.lanczos_bytes(64, A.nnz, 3) - scale.lanczos_bytes(64, A.nnz, 2)
    assert extra == scale.matrix_bytes(64, A.nnz) + (2 * 3 + 12) * 8 * 64
    assert scale.run_bytes(64, A.nnz, 2, 10, 0) == (10 * scale.step_bytes(64, A.nnz, 2)
                                                    + 3 * scale.matrix_bytes(64, A.nnz)
                                                    + 3 * 3 * 8 * 64)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="dim must be 1, 2 or 3"):
        scale.grid_laplacian(4, 4)
    with pytest.raises(ValueError, match="dim must be 1, 2 or 3"):
        scale.exact_count(4, 0, 1.0)
    with pytest.raises(ValueError, match="m must be >= 2"):
        scale.path_eigenvalues(1)
    with pytest.raises(ValueError, match="too large for int32"):
        scale.grid_laplacian(1400, 3)
    with pytest.raises(ValueError, match="bad case"):
        scale.parse_cases("4d:3")
    assert scale.parse_cases("3d:46,2d:316") == [(3, 46), (2, 316)]


def test_kernel_record_times_baoab_steps():
    rec = scale.kernel_record(3, 6, 2, 3, seed=0, warm_steps=2)
    assert rec["n"] == 216 and rec["chains"] == 2 and rec["steps"] == 3
    assert rec["step_mb"] * 2 ** 20 == scale.step_bytes(216, rec["nnz"], 2)
    assert rec["seconds_per_step"] > 0 and rec["gbs"] > 0


def test_kernels_need_a_results_file():
    with pytest.raises(ValueError, match="--kernels needs --render"):
        scale.main(["--kernels"])
