"""Smoke test of ``python -m bench accuracy --quick`` (tiny sizes)."""

import json

import pytest

pytest.importorskip("matplotlib")

from bench import accuracy  # noqa: E402


def test_accuracy_quick_writes_json_markdown_png(tmp_path):
    out = tmp_path / "accuracy"
    assert accuracy.main(["--quick", "--minima", "8:1", "--coverage-runs", "4",
                          "--out", str(out)]) == 0
    data = json.loads((out / "accuracy.json").read_text())
    summary = {(s["d"], s["method"]): s for s in data["paper_summary"]}
    assert set(summary) == {(8, "langevin"), (8, "auto")}
    assert summary[(8, "auto")]["nrmse_pct"] == 0.0          # the sketch is exact at d = 8
    assert summary[(8, "langevin")]["nrmse_pct"] < 5.0
    assert all(r["matvecs"] <= accuracy.BUDGET for r in data["paper"])
    assert data["families"] and all(r["passed"] for r in data["families"])
    assert data["coverage_summary"]["runs"] == 4
    md = (out / "accuracy.md").read_text()
    assert "Honest uncertainty" in md and "python -m bench accuracy --quick" in md
    assert (out / "accuracy.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_nrmse_is_relative_rms_error_in_percent():
    assert accuracy.nrmse([99.0, 101.0], 100) == pytest.approx(1.0)
