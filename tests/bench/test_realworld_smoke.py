"""Smoke test of ``python -m bench realworld`` on two tiny real matrices and two methods."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from bench import realworld  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_realworld_writes_json_markdown_png(tmp_path):
    out, docs = tmp_path / "rw", tmp_path / "docs"
    argv = ["--matrices", "karate_laplacian,davis_adjacency", "--methods", "exact,sketch",
            "--thresholds", "default,1e-6", "--out", str(out), "--docs", str(docs)]
    assert realworld.main(argv) == 0
    data = json.loads((out / "realworld.json").read_text())
    assert data["machine"]["git_commit"]
    assert data["config"]["methods"] == ["exact", "sketch"]
    assert data["config"]["thresholds"] == ["default", "rtol=1e-06"]
    recs = data["records"]
    assert len(recs) == 2 * 2 * 2
    assert {r["matrix"] for r in recs} == {"karate_laplacian", "davis_adjacency"}
    counts = {m["name"]: m["counts"] for m in data["matrices"]}
    assert counts["karate_laplacian"]["default"] == 33           # connected graph: n - 1
    assert counts["davis_adjacency"]["default"] == 26
    for r in recs:
        assert r["error"] is None
        # exact eigvalsh is the truth itself: right, inside, threshold as the rule
        if r["method"] == "exact":
            assert r["right"] and r["inside"] and r["threshold_ok"] and r["width"] == 0
            assert r["truth"] == counts[r["matrix"]][r["threshold_spec"]]
        assert r["numpy_s"] is not None and r["wall_s"] > 0
    summary = data["summary"]["exact"]
    assert summary["cases"] == 4 and summary["right"] == 4 and summary["confident_wrong"] == 0
    md = (out / "realworld.md").read_text()
    assert "Summary per method" in md and "confident-wrong" in md and "karate_laplacian" in md
    assert (out / "realworld.png").read_bytes().startswith(PNG_MAGIC)
    page = (docs / "benchmarks_realworld.md").read_text()
    assert "](benchmarks_realworld.png)" in page
    assert (docs / "benchmarks_realworld.png").read_bytes().startswith(PNG_MAGIC)


def test_classify_catches_a_confident_wrong_answer():
    # slq's failure mode: rank n with a zero-width interval on a rank n-1 matrix
    right, inside, cw, width_ok = realworld.classify(100, (100, 100), True, 99)
    assert right and not inside and cw and width_ok
    # an honest wide bracket is not confident-wrong, but not right either
    assert realworld.classify(5, (0, 50), False, 30) == (False, True, False, True)
    # converged but too wide
    assert realworld.classify(100, (80, 120), True, 100)[3] is False


def test_contract_threshold_and_parsing():
    lam = np.array([-4.0, 1.0, 0.0])
    assert realworld.contract_threshold(lam, 3, rtol=1e-3) == pytest.approx(4e-3)
    assert realworld.contract_threshold(lam, 3, rtol=1e-3, atol=1.0) == 1.0
    assert realworld.contract_threshold(lam, 3) == pytest.approx(3 * np.finfo(float).eps * 4)
    assert realworld.contract_threshold(lam, 3, noise_floor=1e-6) == 1e-6
    assert realworld.parse_threshold("default") == {}
    assert realworld.parse_threshold("1e-6") == {"rtol": 1e-6}
    assert realworld.parse_threshold("atol=0.5") == {"atol": 0.5}
    with pytest.raises(ValueError, match="bad threshold"):
        realworld.parse_threshold("btol=1")
