"""Assemble ``docs/benchmarks.md`` from the committed results in ``bench/results/``.

``python -m bench report`` reads what ``table1``, ``fig1`` and ``families`` wrote
(JSON + Markdown), copies their figures to ``docs/benchmark_figures/`` and
writes ``docs/benchmarks.md``: a summary of the acceptance numbers computed from
the JSON (nothing typed by hand), followed by each benchmark's own Markdown.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import _common as C

__all__ = ["main", "build_report"]

PARTS = (("table1", "table1.md", ("table1_fig2.png",)),
         ("fig1", "fig1.md", ("fig1.png",)),
         ("families", "families.md", ("families.png",)))
FIG_DIR_NAME = "benchmark_figures"


def _summary_lines(results):
    lines = []
    t1 = results.get("table1")
    if t1:
        from .table1 import PAPER_TABLE1

        by = {(s["d"], s["method"]): s for s in t1["summaries"]}
        dims = t1["config"]["dims"]
        rows = []
        for d in dims:
            us, ld = by.get((d, "us_faithful")), by.get((d, "ld_paper"))
            ref = PAPER_TABLE1.get(d, {})
            paper_us_bias = (100 * (ref["us_mean"] / d ** 2 - 1)) if ref else None
            rows.append([d, t1["config"]["minima"].get(str(d), t1["config"]["minima"].get(d)),
                         C.fmt(us["bias_pct"], 1) if us else "-",
                         C.fmt(paper_us_bias, 1) if paper_us_bias is not None else "-",
                         ("yes" if us and -22 <= us["bias_pct"] <= -10 else "no") if us else "-",
                         C.fmt(ld["nrmse_pct"], 2) if ld else "-",
                         C.fmt(ref.get("ld_nrmse"), 1),
                         (f"{ld['nrmse_pct'] / ref['ld_nrmse']:.2f}" if ld and ref else "-"),
                         f"{us['threshold_rel']:.2e}" if us and "threshold_rel" in us else "-",
                         C.fmt(us.get("threshold_bias_pct"), 1) if us else "-",
                         C.fmt(us.get("estimator_bias_pct"), 1) if us else "-",
                         C.fmt(ld.get("theory_bias_pct"), 2) if ld else "-",
                         C.fmt(ld.get("noise_rms_pct"), 2) if ld else "-"])
        from .table1 import default_minima

        cpu_per_instance = {}
        for r in t1["records"]:
            if r["error"] is None:
                cpu_per_instance.setdefault((r["d"], r["method"]), []).append(r["cpu_s"])
        projected = sum(default_minima(d) * sum(sum(v) / len(v) for (dd, _), v
                                                in cpu_per_instance.items() if dd == d)
                        for d in dims if d <= 32)
        lines += [
            "## Acceptance summary (computed from `bench/results/*/*.json`)\n\n",
            C.markdown_table(["d", "minima", "U&S faithful bias %", "paper U&S bias %",
                              "U&S bias in [-22, -10] %", "LD paper-faithful NRMSE %",
                              "paper LD NRMSE %", "ratio ours / paper",
                              "U&S faithful threshold / lambda_max",
                              "U&S bias from the threshold %", "U&S bias of the estimator %",
                              "LD paper expected bias (exact EM mean) %",
                              "LD paper rms chain noise %"], rows),
            f"\n`table1` total run time: "
            f"{(t1['elapsed_s'] + sum(e['elapsed_s'] for e in t1.get('earlier_runs', []))) / 60:.1f}"
            f" min wall ({len(t1.get('earlier_runs', [])) + 1} run(s), "
            f"{t1['config']['jobs']} worker processes, on a machine shared with other jobs: load "
            f"average {t1['machine']['load_average_at_start'][0]:.1f} at the start); sum of the per-estimate CPU seconds: "
            f"{sum(r['cpu_s'] for r in t1['records']) / 60:.1f} min "
            f"(of which d <= 32: "
            f"{sum(r['cpu_s'] for r in t1['records'] if r['d'] <= 32) / 60:.1f} min). "
            f"Projected for the default counts at d <= 32 (100, 100, 20 minima) from the measured "
            f"mean CPU seconds per estimate of every method in this run: "
            f"{projected / 60:.1f} CPU min, i.e. about {projected / 120:.1f} min wall on an idle "
            "2-core machine with `--jobs 2` (the exact-spectrum diagnostics are not included: they "
            "are not part of any method).\n\n"]
    fam = results.get("families")
    if fam:
        rows = []
        for s in fam["summaries"]:
            if s["family"].startswith("lowrank_r") and s["method"] == "sketch":
                rows.append([s["family"], f"{s['mean_truth']:.0f}", C.fmt(s["mean_estimate"], 2),
                             C.fmt(100 * s["exact_fraction"], 0), C.fmt(s["products"], 0)])
        if rows:
            lines += ["`sketch` on exactly low-rank matrices (families benchmark):\n\n",
                      C.markdown_table(["matrix", "true rank", "mean estimate",
                                        "runs exact %", "products"], rows), "\n"]
    return lines


def build_report(results_dir, docs_dir):
    results_dir, docs_dir = Path(results_dir), Path(docs_dir)
    fig_dir = docs_dir / FIG_DIR_NAME
    results, sections = {}, []
    for name, md_name, figures in PARTS:
        folder = results_dir / name
        if not (folder / md_name).exists():
            continue
        results[name] = json.loads((folder / f"{name}.json").read_text())
        md = (folder / md_name).read_text()
        for fig in figures:
            if (folder / fig).exists():
                fig_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / fig, fig_dir / fig)
                link = f"{FIG_DIR_NAME}/{fig}"
                if f"({fig})" in md:
                    md = md.replace(f"({fig})", f"({link})")
                else:
                    md += f"\n![{name}]({link})\n"
        sections.append(md.replace("### ", "## ", 1))
    text = [
        "# Benchmark results\n\n",
        "Produced by the benchmark suite in `bench/` (`python -m bench <name>`, then "
        "`python -m bench report`); every number below is written by the suite from one run "
        "per benchmark, on the machine and with the command stated in each section. All "
        "methods are called through `lmatrank.estimate_rank` on the same operator and are "
        "charged the operator's own product count.\n\n",
        *_summary_lines(results),
        *[s + "\n" for s in sections],
    ]
    out = docs_dir / "benchmarks.md"
    C.write_text(out, "".join(text))
    return out


def main(argv=None):
    argv = list(argv or [])
    parser = C.base_parser("report", __doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=C.RESULTS_DIR)
    parser.add_argument("--docs", type=Path, default=C.REPO_ROOT / "docs")
    args = parser.parse_args(argv)
    out = build_report(args.results, args.docs)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
