"""Smoke test of ``python -m bench speed --quick`` (tiny sizes; nothing is timed-asserted)."""

import json

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("numba")

from bench import speed  # noqa: E402


def test_speed_quick_writes_json_markdown_png(tmp_path):
    out = tmp_path / "speed"
    assert speed.main(["--quick", "--reps", "1", "--no-compile", "--out", str(out)]) == 0
    data = json.loads((out / "speed.json").read_text())
    families = {r["family"] for r in data["records"]}
    assert {"grid", "random graph", "dense"} <= families
    assert any(f.startswith("linear net") for f in families)
    assert {r["dtype"] for r in data["records"]} == {"float64", "float32"}
    for rec in data["records"]:
        assert rec["numpy_step"] > 0 and rec["numba_em"] > 0 and rec["numba_baoab"] > 0
    acc = data["acceptance"]
    assert set(acc) >= {"step_speedup", "product_speedup", "fused_overhead", "bandwidth_fraction"}
    assert data["bandwidth"]["numpy"] > 0 and data["bandwidth"]["numba"] > 0
    e2e = {r["backend"]: r for r in data["end_to_end"]}
    assert set(e2e) == {"numpy", "numba"}
    side_n = speed.QUICK["e2e_side"] ** 2
    for r in e2e.values():  # grid Laplacian with Neumann boundary has rank n - 1
        assert r["n"] == side_n
        assert abs(r["estimate"] - (side_n - 1)) < 5 * r["stderr"] + 0.01 * side_n
    md = (out / "speed.md").read_text()
    assert "EM two-pass" in md and "Acceptance ratios" in md
    for rec in data["records"]:
        if rec["kind"] == "sparse":  # fuse="auto" settled before the timing
            assert set(rec["fuse_choice"].values()) <= {True, False}
            assert rec["numba_em_fused"] > 0 and rec["numba_em_two_pass"] > 0
    assert (out / "speed.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not (tmp_path / "docs").exists()


def test_grid_laplacian_is_neumann_rank_n_minus_1():
    import numpy as np

    L = speed.grid_laplacian(6).toarray()
    assert np.allclose(L.sum(axis=1), 0) and np.allclose(L, L.T)
    assert np.linalg.matrix_rank(L) == 35
    assert L[0, 0] == 2 and L[7, 7] == 4  # corner has 2 neighbours, interior 4
