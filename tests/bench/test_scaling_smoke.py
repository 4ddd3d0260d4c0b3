"""Smoke test of ``python -m bench scaling --quick`` and of its cost-model helpers."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from bench import scaling  # noqa: E402


def test_scaling_quick_writes_json_markdown_png(tmp_path):
    out = tmp_path / "scaling"
    assert scaling.main(["--quick", "--out", str(out)]) == 0
    data = json.loads((out / "scaling.json").read_text())
    schemes = {(r["scheme"], r["kappa"]) for r in data["kappa"]}
    assert schemes == {(s, k) for s in ("em", "baoab") for k in scaling.QUICK["kappas"]}
    for row in data["kappa"]:
        assert row["products_model"] > 0 and len(row["rmse"]) == len(row["grid"])
    assert set(data["kappa_slopes"]) == {"em", "baoab"}
    assert [r["rank"] for r in data["rank"]] == list(scaling.QUICK["ranks"])
    md = (out / "scaling.md").read_text()
    assert "Fitted log–log slopes" in md and "python -m bench scaling --quick" in md
    assert (out / "scaling.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not (tmp_path / "docs").exists()


def test_products_to_target_interpolates_the_last_crossing():
    grid = np.array([10, 100, 1000, 10000])
    assert scaling.products_to_target(grid, [0.1, 0.005, 0.02, 0.001]) == pytest.approx(
        10 ** (3 + math.log(0.5) / math.log(0.05)))
    assert math.isnan(scaling.products_to_target(grid, [0.1, 0.05, 0.02, 0.011]))
    assert scaling.products_to_target(grid, [0.001] * 4) == 10.0


def test_cost_models_favour_baoab_more_as_kappa_grows():
    grid = np.unique(np.geomspace(16, 2e5, 100).astype(int))
    ratio = []
    for kappa in (10.0, 300.0):
        lam = scaling.spectrum(50, kappa)
        em = scaling.products_to_target(grid, scaling.model_error_em(lam, grid))
        baoab = scaling.products_to_target(grid, scaling.model_error_baoab(lam, grid))
        ratio.append(em / baoab)
    assert ratio[1] > 3 * ratio[0]
