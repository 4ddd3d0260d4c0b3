"""Smoke tests of the benchmark suite (``python -m bench <name> --quick``).

Each benchmark is run in a tiny configuration into a temporary folder; the
tests check that JSON, Markdown and PNG are written and hold the expected
rows and columns, plus the arithmetic of the shared helpers.
"""

import json
import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from bench import __main__ as dispatcher  # noqa: E402
from bench import _common as C  # noqa: E402
from bench import families, fig1, report, table1  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load(path):
    return json.loads(path.read_text())


def test_table1_quick_writes_json_markdown_png(tmp_path):
    out = tmp_path / "t1"
    assert table1.main(["--quick", "--dims", "3", "--minima", "2", "--out", str(out)]) == 0
    data = _load(out / "table1.json")
    keys = {m["key"] for m in data["config"]["methods"]}
    assert {"ld_paper", "ld_default", "scipy"} <= keys
    assert data["config"]["dims"] == [3] and data["config"]["minima"] == {"3": 2}
    # every method ran on both minima of the same operator, truth = d^2
    assert len(data["records"]) == 2 * len(keys)
    assert all(r["truth"] == 9 and r["n"] == 5 * 9 for r in data["records"])
    for s in data["summaries"]:
        assert s["n"] == 2
        for col in ("mean_estimate", "nrmse_pct", "bias_pct", "products", "cpu_s"):
            assert col in s
    ok = [s for s in data["summaries"] if s["failures"] == 0]
    assert ok and all(s["products"] > 0 for s in ok)
    paper = next(s for s in data["summaries"] if s["method"] == "ld_paper")
    assert paper["products"] >= 15000            # Algorithm 1: 15,000 single-chain steps
    md = (out / "table1.md").read_text()
    for col in ("mean estimate / true", "NRMSE %", "bias %", "products / estimate",
                "CPU s / estimate", "mean reported stderr"):
        assert col in md
    assert "LD paper-faithful" in md and "scipy interpolative" in md
    assert "python -m bench table1 --quick" in md
    assert (out / "table1_fig2.png").read_bytes()[:8] == PNG_MAGIC
    # re-rendering from the JSON alone reproduces the table
    (out / "table1.md").unlink()
    assert table1.main(["--render-only", "--out", str(out)]) == 0
    assert (out / "table1.md").read_text() == md


def test_report_assembles_docs_page(tmp_path):
    results = tmp_path / "results"
    assert table1.main(["--quick", "--dims", "3", "--minima", "2", "--methods",
                        "us_faithful,ld_paper,sketch", "--out", str(results / "table1")]) == 0
    docs = tmp_path / "docs"
    assert report.main(["--results", str(results), "--docs", str(docs)]) == 0
    page = (docs / "benchmarks.md").read_text()
    assert "Acceptance summary" in page and "U&S faithful bias %" in page
    assert "benchmark_figures/table1_fig2.png" in page
    assert (docs / "benchmark_figures" / "table1_fig2.png").read_bytes()[:8] == PNG_MAGIC


def test_fig1_quick_theory_and_simulation(tmp_path):
    out = tmp_path / "f1"
    assert fig1.main(["--quick", "--out", str(out)]) == 0
    data = _load(out / "fig1.json")
    s = data["summary"]
    assert s["rank"] == 16 and s["steps"] == 15000 and s["sigma2"] == 2e-5
    # Prop. 1 level is sigma^2 rank / 4 and the exact EM mean has reached it at the end
    assert math.isclose(s["proposition1_level"], 2e-5 * 16 / 4)
    assert abs(s["em_exact_rank_at_end"] - 16) < 0.5
    curves = data["curves"]
    assert len(curves["loss"]) == len(curves["theorem1"]) == len(curves["em_exact"])
    md = (out / "fig1.md").read_text()
    assert "Theorem 1" in md and "Proposition 1" in md
    assert (out / "fig1.png").read_bytes()[:8] == PNG_MAGIC


def test_families_quick_rows_and_truths(tmp_path):
    out = tmp_path / "fam"
    assert families.main(["--quick", "--out", str(out)]) == 0
    data = _load(out / "families.json")
    names = [f["name"] for f in data["families"]]
    assert {"laplacian_components", "laplacian_grid", "gram_noise_floor", "kronecker",
            "indefinite"} <= set(names)
    for fam in data["families"]:       # eigvalsh count agrees with the construction
        assert fam["truth"] == fam["construction_rank"], fam
    by = {(s["family"], s["method"]): s for s in data["summaries"]}
    assert by[("kronecker", "exact")]["exact_fraction"] == 1.0
    md = (out / "families.md").read_text()
    for name in names:
        assert name in md
    assert "exact rank %" in md and "NRMSE %" in md
    assert (out / "families.png").read_bytes()[:8] == PNG_MAGIC


def test_theory_curves_limits():
    lam = np.array([5.0, 1.0, 0.2])
    curves = fig1.theory_curves(lam, 1e-2, 2e-5, np.array([0, 10, 100000]))
    assert curves["theorem1"][0] == 0 and curves["em_exact"][0] == 0
    assert math.isclose(curves["proposition1"], 2e-5 * 3 / 4)
    assert math.isclose(curves["theorem1"][-1], curves["proposition1"], rel_tol=1e-9)
    # the uncorrected EM mean exceeds the level by the gain 2 / (2 - eta lambda)
    gain = np.sum(2 / (2 - 1e-2 * lam))
    assert math.isclose(curves["em_exact"][-1], 2e-5 / 4 * gain, rel_tol=1e-9)


def test_summarise_metrics():
    recs = [dict(estimate=e, rank=round(e), stderr=1.0, matvecs=10, wall_s=1.0, cpu_s=0.5,
                 converged=True, error=None, truth=100) for e in (90.0, 110.0, 100.0)]
    recs.append(dict(estimate=float("nan"), rank=None, stderr=float("nan"), matvecs=None,
                     wall_s=0.1, cpu_s=0.1, converged=False, error="ValueError: x", truth=100))
    s = C.summarise(recs)
    assert s["n"] == 4 and s["failures"] == 1
    assert math.isclose(s["nrmse_pct"], 100 * math.sqrt((0.01 + 0.01 + 0) / 3))
    assert math.isclose(s["bias_pct"], 0.0, abs_tol=1e-12)
    assert math.isclose(s["exact_fraction"], 1 / 3)
    assert s["products"] == 10 and s["cpu_s"] == 0.5


def test_scipy_interpolative_products_are_counted():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((60, 7))
    spec = next(s for s in C.TABLE1_METHODS if s.key == "scipy")
    rec = C.run_estimate(spec, G @ G.T, 1)
    assert rec["error"] is None
    assert rec["matvecs"] >= rec["rank"] >= 7


def test_run_estimate_records_errors_instead_of_raising():
    spec = C.MethodSpec("bad", "bad", "langevin", {"no_such_option": 1})
    rec = C.run_estimate(spec, np.eye(4), 0)
    assert rec["error"].startswith("TypeError") and math.isnan(rec["estimate"])


def test_roster_skips_unregistered(capsys):
    specs = (C.MethodSpec("x", "X", "no-such-method"), C.TABLE1_METHODS[0])
    notes = []
    chosen = C.available_roster(specs, log=notes.append)
    assert [s.key for s in chosen] == ["ld_paper"]
    assert "no-such-method" in notes[0]


def test_markdown_table_shape():
    text = C.markdown_table(["a", "b"], [[1, 2], [3, 4]])
    lines = text.strip().splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "| :-- | --: |" and len(lines) == 4


def test_dispatcher_list_and_unknown(capsys):
    assert dispatcher.main(["--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"table1", "fig1", "families"} <= set(listed)
    assert dispatcher.main(["no_such_benchmark"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--minima", "0"], "minima"),
    (["--jobs", "0"], "jobs"),
    (["--dims", "1"], "d must be"),
])
def test_table1_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        table1.main(argv)
    assert message in capsys.readouterr().err
