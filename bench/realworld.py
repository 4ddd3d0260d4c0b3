"""Real matrices: is every answer right at the requested threshold, or honest about it?

Usage::

    python -m bench realworld [--quick] [--methods exact,auto,...] [--thresholds default,1e-6,1e-9]
                              [--matrices name,...] [--max-matvecs 20000]
                              [--out bench/results/realworld] [--docs docs]

For every matrix of :mod:`bench._realworld_matrices` (graphs bundled with networkx,
Gram and RBF kernel matrices of scikit-learn's bundled datasets, SuiteSparse matrices
committed under ``bench/data``, exact Hessians of small networks trained on
``load_digits()``), every method and every threshold (``default``: ``rtol = atol = None``;
``1e-6`` and ``1e-9``: ``rtol``), one seeded call of ``lmatrank.estimate_rank`` is
classified against dense ``eigvalsh``:

- ``truth``: ``#{|lambda| > t}`` at the threshold ``t`` the result itself reports;
- ``truth_rule``: the same count at the contract's rule computed from the true
  ``|lambda|max`` (``max(atol, rtol |lambda|max)``, or ``n eps |lambda|max`` raised to the
  operator's measured product noise), so that a wrongly reported threshold is caught
  (``threshold_ok``: reported within 1 % of the rule);
- ``right``: ``|rank - truth| <= max(1, 0.5 % of truth)``;
- ``inside``: ``lo <= truth <= hi`` for the reported ``interval``;
- ``confident-wrong``: ``converged=True`` and the truth outside the interval (``outside``
  counts every truth outside the interval, converged or not);
- ``width_ok``: a converged interval is at most ``max(4, 2 % of truth)`` wide.

Methods that accept ``max_matvecs`` get the per-run product budget ``--max-matvecs``. For
n <= 5000 the time of ``numpy.linalg.matrix_rank(A.toarray(), hermitian=True)`` is measured
and ``auto``'s time is reported as a ratio to it. Writes ``realworld.json``,
``realworld.md`` and ``realworld.png`` to ``--out`` and, unless ``--quick``,
``benchmarks_realworld.md`` / ``benchmarks_realworld.png`` to ``--docs``.
"""

from __future__ import annotations

import math
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import _common as C
from . import _realworld_matrices as M

__all__ = ["main", "classify", "contract_threshold", "run_case", "summarise_method",
           "METHODS", "THRESHOLDS", "BUDGET"]

NAME = "realworld"
METHODS = ("exact", "auto", "langevin", "slq", "chebyshev", "kpm", "sketch")
THRESHOLDS = ("default", "1e-6", "1e-9")
BUDGET = 20_000
#: per-run cost cap of the product-based methods (auto and exact are not capped): the
#: product budget is lowered to max(MIN_PRODUCTS, MAX_FLOPS / (2 nnz)) on large dense inputs,
#: so the whole run stays within tens of minutes on a shared 2-core machine
MAX_FLOPS = 1e9
MIN_PRODUCTS = 200
UNCAPPED = ("auto", "exact")
#: Calls timed (best kept) for numpy's matrix_rank and for auto, up to order REPEAT_N.
NUMPY_REPEATS = 5
REPEAT_N = 500
#: numpy's matrix_rank is timed up to this order (dense eigvalsh)
NUMPY_MAX_N = 5000
#: skip a method on matrices larger than this (its own dense work would dominate)
METHOD_MAX_N = {"exact": 5000, "sketch": 6000}
THRESHOLD_TOL = 1e-2   # reported threshold vs the rule, relative


def parse_threshold(text):
    """``"default"`` -> {}, ``"1e-6"`` or ``"rtol=1e-6"`` -> {"rtol": 1e-6}, ``"atol=..."``."""
    text = text.strip()
    if text == "default":
        return {}
    key, _, value = text.rpartition("=")
    key = key or "rtol"
    if key not in ("rtol", "atol"):
        raise ValueError(f"bad threshold {text!r}: use default, rtol=<x>, atol=<x> or <x>")
    return {key: float(value)}


def threshold_label(text):
    tol = parse_threshold(text)
    return "default" if not tol else ",".join(f"{k}={v:g}" for k, v in tol.items())


def contract_threshold(lam, n, *, rtol=None, atol=None, noise_floor=None):
    """The contract's threshold from the true eigenvalues ``lam``: ``max(atol, rtol
    |lambda|max)`` when a tolerance is given, else ``n eps |lambda|max`` raised to
    `noise_floor` (float64 products).

    >>> contract_threshold(np.array([-2.0, 1.0]), 2, rtol=1e-3)
    0.002
    >>> contract_threshold(np.array([1.0]), 10, noise_floor=1e-9)
    1e-09
    """
    from lmatrank._result import count_threshold

    lam_max = float(np.max(np.abs(lam))) if np.size(lam) else 0.0
    return count_threshold(lam_max, n, np.float64, rtol=rtol, atol=atol,
                           noise_floor=noise_floor)[0]


def right_tolerance(truth):
    return max(1.0, 0.005 * truth)


def width_limit(count):
    return max(4.0, 0.02 * count)


def classify(rank, interval, converged, truth):
    """(right, inside, confident_wrong, width_ok) of one result against the true count.

    >>> classify(10, (9, 12), True, 10)
    (True, True, False, True)
    >>> classify(100, (100, 100), True, 99)
    (True, False, True, True)
    >>> classify(5, (0, 50), False, 30)
    (False, True, False, True)
    """
    lo, hi = interval
    right = abs(rank - truth) <= right_tolerance(truth)
    inside = lo <= truth <= hi
    confident_wrong = bool(converged) and not inside
    width_ok = (not converged) or (hi - lo) <= width_limit(truth)
    return bool(right), bool(inside), bool(confident_wrong), bool(width_ok)


def _noise_floor(A, seed):
    """The product noise the method saw: estimate_rank's own symmetry probe, same stream."""
    from lmatrank.operators import as_operator

    check_gen, _ = np.random.default_rng(seed).spawn(2)
    try:
        op = as_operator(A, check_symmetry=True, rng=check_gen, fresh=True)
    except (TypeError, ValueError):
        return None
    return getattr(op, "noise_floor", None)


def _options(method, budget):
    import inspect

    from lmatrank._api import _resolve

    if budget is None or method == "exact":
        return {}
    params = inspect.signature(_resolve(method)).parameters
    return {"max_matvecs": int(budget)} if "max_matvecs" in params else {}


def product_cost(A):
    """Multiply-adds of one product with ``A`` (nonzeros; ~100 n for a structured operator)."""
    if sp.issparse(A):
        return int(A.nnz)
    if isinstance(A, np.ndarray):
        return int(A.size)
    return 100 * int(A.shape[0])


def case_budget(A, method, budget=BUDGET, max_flops=MAX_FLOPS):
    """The product budget of one run: `budget`, lowered for expensive products."""
    if budget is None or method in UNCAPPED or max_flops is None:
        return budget
    return int(min(budget, max(MIN_PRODUCTS, max_flops // (2 * product_cost(A)))))


def run_case(A, lam, method, threshold, seed, *, budget=BUDGET):
    """One seeded ``estimate_rank`` call classified against the eigenvalues ``lam``."""
    import lmatrank

    tol = parse_threshold(threshold)
    n = A.shape[0]
    rec = dict(method=method, threshold_spec=threshold_label(threshold), n=int(n))
    noise = _noise_floor(A, seed) if not tol else None
    rule = contract_threshold(lam, n, noise_floor=noise, **tol)
    rec.update(rule_threshold=rule, noise_floor=noise, truth_rule=M.count_above(lam, rule),
               numpy_default_threshold=contract_threshold(lam, n),
               truth_numpy_default=M.count_above(lam, contract_threshold(lam, n)))
    options = _options(method, budget)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est = lmatrank.estimate_rank(A, method=method, rng=seed, **tol, **options)
            error = None
        except Exception as exc:  # recorded and counted, never hidden
            est, error = None, f"{type(exc).__name__}: {exc}"[:300]
    rec["wall_s"] = time.perf_counter() - wall0
    rec["cpu_s"] = time.process_time() - cpu0
    # the numpy comparison takes the best of repeated calls on both sides (small cases last
    # well under a millisecond, where one call measures mostly the scheduler)
    # calls alternate with numpy's so that a busy spell of a shared machine hits both
    rec["best_s"], rec["numpy_paired_s"] = rec["wall_s"], None
    if method == "auto" and error is None and n <= NUMPY_MAX_N:
        rec["numpy_paired_s"] = time_numpy_rank(A, reps=1)
        for _ in range((NUMPY_REPEATS if n <= REPEAT_N else 2) - 1):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lmatrank.estimate_rank(A, method=method, rng=seed, **tol, **options)
            rec["best_s"] = min(rec["best_s"], time.perf_counter() - t0)
            rec["numpy_paired_s"] = min(rec["numpy_paired_s"], time_numpy_rank(A, reps=1))
    rec["warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:240] for w in caught})
    rec["error"] = error
    rec["options"] = options
    if est is None:
        rec.update(rank=None, interval=None, converged=False, right=False, inside=False,
                   confident_wrong=False, outside=True, width_ok=True, threshold_ok=None,
                   truth=rec["truth_rule"])
        return rec
    lo, hi = (int(v) for v in est.interval)
    truth = M.count_above(lam, est.threshold)
    right, inside, cw, width_ok = classify(est.rank, (lo, hi), est.converged, truth)
    if rule > 0:
        rel = abs(est.threshold - rule) / rule
    else:
        rel = 0.0 if est.threshold == 0 else math.inf
    info = est.info
    rec.update(
        rank=int(est.rank), estimate=float(est.estimate), stderr=float(est.stderr),
        threshold=float(est.threshold), threshold_source=info.get("threshold_source"),
        threshold_rel_err=float(rel), threshold_ok=bool(rel <= THRESHOLD_TOL),
        resolution=float(est.resolution) if est.resolution is not None else None,
        interval=[lo, hi], width=hi - lo, converged=bool(est.converged),
        matvecs=int(est.matvecs), resolved_method=est.method, truth=truth,
        right=right, inside=inside, confident_wrong=cw, outside=not inside, width_ok=width_ok,
        right_at_rule=bool(abs(est.rank - rec["truth_rule"])
                           <= right_tolerance(rec["truth_rule"])),
        choice=info.get("choice"), reason=str(info.get("reason"))[:200]
        if info.get("reason") is not None else None)
    return rec


def time_numpy_rank(A, reps=None):
    """Best wall time of ``numpy.linalg.matrix_rank(A.toarray(), hermitian=True)``."""
    n = A.shape[0]
    reps = reps or (NUMPY_REPEATS if n <= REPEAT_N else 1)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        np.linalg.matrix_rank(M.as_dense(A), hermitian=True)
        best = min(best, time.perf_counter() - t0)
    return best


def _frac(num, den):
    return num / den if den else math.nan


def summarise_method(records):
    """Counts over the records of one method (errors count as not right, outside)."""
    ok = [r for r in records if r["error"] is None]
    conv = [r for r in ok if r["converged"]]
    return dict(
        cases=len(records), errors=len(records) - len(ok),
        right=sum(r["right"] for r in records), inside=sum(r["inside"] for r in records),
        outside=sum(r["outside"] for r in ok), confident_wrong=sum(r["confident_wrong"]
                                                                   for r in records),
        converged=len(conv), converged_right=sum(r["right"] for r in conv),
        converged_too_wide=sum(not r["width_ok"] for r in conv),
        threshold_ok=sum(bool(r.get("threshold_ok")) for r in ok),
        right_at_rule=sum(bool(r.get("right_at_rule")) for r in ok),
        warned=sum(bool(r["warnings"]) for r in ok),
        median_products=float(np.median([r["matvecs"] for r in ok])) if ok else math.nan,
        total_s=float(sum(r["wall_s"] for r in records)),
        median_s=float(np.median([r["wall_s"] for r in records])) if records else math.nan)


def acceptance(result):
    """The acceptance checks of the real-matrix benchmark, each with its measured value."""
    recs = result["records"]
    by = {m: [r for r in recs if r["method"] == m] for m in result["config"]["methods"]}
    checks = []
    for m, rs in by.items():
        cw = sum(r["confident_wrong"] for r in rs)
        out = sum(r["outside"] for r in rs if r["error"] is None)
        checks.append(dict(check=f"{m}: confident-wrong = 0 (truth outside a converged "
                                 "interval)", value=cw, passed=cw == 0))
        checks.append(dict(check=f"{m}: truth inside the interval on every case",
                           value=f"{len(rs) - out - sum(r['error'] is not None for r in rs)}"
                                 f"/{len(rs)}", passed=out == 0))
    if "auto" in by and by["auto"]:
        rs = by["auto"]
        n_right = sum(r["right"] for r in rs)
        checks.append(dict(check="auto right on every case", value=f"{n_right}/{len(rs)}",
                           passed=n_right == len(rs)))
        # the target is stated for dense or sparse input: an operator must first be densified
        ratios = [r["numpy_ratio"] for r in rs
                  if r.get("numpy_ratio") is not None and r.get("explicit", True)]
        if ratios:
            over = sum(x > 1.5 for x in ratios)
            checks.append(dict(check="auto within 1.5x numpy.linalg.matrix_rank (dense or "
                                     "sparse input, n <= 5000)",
                               value=f"{len(ratios) - over}/{len(ratios)} (median "
                                     f"{np.median(ratios):.2f}x, max {max(ratios):.2f}x)",
                               passed=over == 0))
    if "langevin" in by and by["langevin"]:
        rs = by["langevin"]
        conv = [r for r in rs if r["converged"]]
        good = sum(r["right"] for r in conv)
        checks.append(dict(check="langevin right on >= 90% of its converged cases",
                           value=f"{good}/{len(conv)}",
                           passed=bool(conv) and good >= 0.9 * len(conv)))
        at6 = [r for r in rs if r["threshold_spec"] == "rtol=1e-06"]
        if at6:
            res = sum(r["converged"] and r["right"] for r in at6)
            checks.append(dict(check="langevin converged and right at rtol=1e-6 on >= 75%",
                               value=f"{res}/{len(at6)}", passed=res >= 0.75 * len(at6)))
    for m, rs in by.items():
        wide = sum(r["converged"] and not r["width_ok"] for r in rs)
        checks.append(dict(check=f"{m}: converged interval width <= max(4, 2% of count)",
                           value=f"{wide} too wide", passed=wide == 0))
    return checks


def _mark(r):
    if r is None:
        return "-"
    if r["error"] is not None:
        return "error"
    lo, hi = r["interval"]
    mark = ("ok" if r["right"] and r["inside"] else "in" if r["inside"] else
            "**CW**" if r["confident_wrong"] else "out")
    conv = "" if r["converged"] else "*"
    return f"{r['rank']:,} [{lo:,}, {hi:,}]{conv} {mark}"


def markdown(result):
    machine = result["machine"]
    cfg = result["config"]
    lines = [
        "# Real matrices: right, or honest about it",
        "",
        "Every method of `lmatrank.estimate_rank` on real symmetric matrices nobody here "
        "designed: graphs bundled with networkx, Gram and RBF kernel matrices of "
        "scikit-learn's bundled datasets, SuiteSparse matrices (`bench/data`, origins in "
        "`bench/data/MANIFEST.md`) and exact Hessians of small networks trained on "
        "`load_digits()`. One seeded call per matrix, method and threshold, classified "
        "against dense `eigvalsh`:",
        "",
        "- **truth**: the number of |eigenvalues| above the threshold the result itself "
        "reports; **right**: |rank - truth| <= max(1, 0.5% of truth); **inside**: the "
        "reported `interval` holds the truth; **confident-wrong (CW)**: `converged=True` and "
        "the truth outside the interval; **outside**: the truth outside the interval, "
        "converged or not.",
        "- **threshold ok**: the reported threshold is within 1% of the contract's rule "
        "computed from the true |lambda|max (`max(atol, rtol |lambda|max)`, or "
        "`n eps |lambda|max` raised to the measured product noise); **right at rule**: the "
        "rank is right against the count at that rule.",
        f"- Per-run product budget `max_matvecs={cfg['max_matvecs']}` for the methods that "
        "take one, lowered on expensive products to max("
        f"{cfg.get('min_products')}, {C.fmt(cfg.get('max_flops'), 0)} flops / (2 nnz)) for "
        "every method but `auto` and `exact` (column `budget` of the matrix table; "
        "`max_flops` None: no cap); `default` = `rtol = atol = None`.",
        "",
        f"Machine: {C.machine_line(machine)}. Command: `{result['command']}`.",
    ]
    if result.get("uncommitted"):
        lines += ["", "Uncommitted changes in the checkout when it ran: "
                  + ", ".join(f"`{p}`" for p in result["uncommitted"]) + "."]
    lines += ["", f"![right / inside / confident-wrong per method; auto vs numpy time]"
                  f"({NAME}.png)", "", "## Summary per method", ""]
    headers = ["method", "cases", "right", "inside", "outside", "confident-wrong", "converged",
               "converged & right", "converged too wide", "threshold ok", "right at rule",
               "errors", "median products", "total s"]
    rows = []
    for m, s in result["summary"].items():
        rows.append([f"`{m}`", s["cases"], s["right"], s["inside"], s["outside"],
                     s["confident_wrong"], s["converged"], s["converged_right"],
                     s["converged_too_wide"], s["threshold_ok"], s["right_at_rule"],
                     s["errors"], C.fmt(s["median_products"], 0), C.fmt(s["total_s"], 1)])
    lines.append(C.markdown_table(headers, rows))
    lines += ["## Per threshold", ""]
    headers = ["method", "threshold", "cases", "right", "inside", "confident-wrong", "converged"]
    rows = []
    for m in cfg["methods"]:
        for t in cfg["thresholds"]:
            rs = [r for r in result["records"] if r["method"] == m and r["threshold_spec"] == t]
            if rs:
                rows.append([f"`{m}`", t, len(rs), sum(r["right"] for r in rs),
                             sum(r["inside"] for r in rs),
                             sum(r["confident_wrong"] for r in rs),
                             sum(r["converged"] for r in rs)])
    lines.append(C.markdown_table(headers, rows, align=["l", "l"] + ["r"] * 5))
    lines += ["## Acceptance checks", ""]
    lines.append(C.markdown_table(["check", "value", "passed"],
                                  [[c["check"], c["value"], "yes" if c["passed"] else "**no**"]
                                   for c in result["acceptance"]], align=["l", "r", "c"]))
    lines += ["## Matrices", "",
              "Counts of |eigenvalues| above the contract's threshold (`default`: "
              "`n eps |lambda|max`); numpy time: `matrix_rank(A.toarray(), hermitian=True)`.", ""]
    headers = ["matrix", "source", "n", "nnz", "abs lambda max", "negative"] + [
        f"count @ {t}" for t in cfg["thresholds"]] + ["budget", "numpy ms"]
    rows = []
    for mat in result["matrices"]:
        rows.append([f"`{mat['name']}`", mat["source"], mat["n"], C.fmt(mat["nnz"]),
                     f"{mat['lambda_max']:.3g}", mat["negative"]]
                    + [mat["counts"].get(t, "-") for t in cfg["thresholds"]]
                    + [C.fmt(mat.get("budget"))]
                    + [C.fmt(None if mat["numpy_s"] is None else 1e3 * mat["numpy_s"], 2)])
    lines.append(C.markdown_table(headers, rows, align=["l", "l"] + ["r"] * (len(headers) - 2)))
    lines += ["## Every case", "",
              "Cell: `rank [lo, hi]` (`*`: `converged=False`), then `ok` (right and inside), "
              "`in` (inside, not right), `out` (outside, not converged), `**CW**` "
              "(confident-wrong), `error`, `-` (not run).", ""]
    headers = ["matrix", "threshold", "truth"] + [f"`{m}`" for m in cfg["methods"]]
    index = {(r["matrix"], r["threshold_spec"], r["method"]): r for r in result["records"]}
    rows = []
    for mat in result["matrices"]:
        for t in cfg["thresholds"]:
            cells = [index.get((mat["name"], t, m)) for m in cfg["methods"]]
            if not any(cells):
                continue
            rows.append([f"`{mat['name']}`", t, mat["counts"].get(t, "-")]
                        + [_mark(c) for c in cells])
    lines.append(C.markdown_table(headers, rows, align=["l", "l"] + ["r"] * (len(headers) - 2)))
    if any(r["error"] for r in result["records"]):
        lines += ["## Errors", ""]
        for r in result["records"]:
            if r["error"]:
                lines.append(f"- `{r['matrix']}` / `{r['method']}` / {r['threshold_spec']}: "
                             f"{r['error']}")
        lines.append("")
    return "\n".join(lines) + "\n"


def figure(result, path):
    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    methods = list(result["summary"])
    x = np.arange(len(methods))
    keys = [("right", "right", "tab:green"), ("inside", "inside interval", "tab:blue"),
            ("outside", "outside interval", "tab:orange"),
            ("confident_wrong", "confident-wrong", "tab:red")]
    width = 0.2
    for i, (key, label, color) in enumerate(keys):
        vals = [_frac(result["summary"][m][key], result["summary"][m]["cases"]) for m in methods]
        axes[0].bar(x + (i - 1.5) * width, vals, width, label=label, color=color)
    axes[0].set_xticks(x, methods, rotation=20)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("fraction of cases")
    axes[0].set_title("per method, all matrices and thresholds")
    axes[0].legend(fontsize=8, loc="upper right")
    pts = [(r["numpy_s"], r.get("best_s", r["wall_s"]), r["n"]) for r in result["records"]
           if r["method"] == "auto" and r.get("numpy_s") and r["error"] is None]
    ax = axes[1]
    if pts:
        npy, auto, n = (np.array(v, dtype=float) for v in zip(*pts))
        sc = ax.scatter(npy, auto, c=np.log10(n), cmap="viridis", s=18)
        fig.colorbar(sc, ax=ax, label="log10 n")
        lo = min(npy.min(), auto.min()) / 2
        hi = max(npy.max(), auto.max()) * 2
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="= numpy")
        ax.plot([lo, hi], [1.5 * lo, 1.5 * hi], "k--", lw=0.8, label="1.5x numpy")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("numpy.linalg.matrix_rank(hermitian=True) [s]")
    ax.set_ylabel("estimate_rank(method='auto') [s]")
    ax.set_title("auto vs numpy, wall time")
    C.save_figure(fig, path)


def _uncommitted():
    try:
        out = subprocess.run(["git", "-C", str(C.REPO_ROOT), "status", "--porcelain", "--",
                              "lmatrank"], capture_output=True, text=True, timeout=10)
        return sorted(line[3:] for line in out.stdout.splitlines() if line.strip())
    except (OSError, subprocess.SubprocessError):
        return []


def _warm_up(methods, log):
    """One call per method on a tiny matrix so numba compilation is not timed."""
    A = M.path_laplacian(30)
    lam = np.linalg.eigvalsh(A.toarray())
    for m in methods:
        rec = run_case(A, lam, m, "default", 0, budget=2000)
        if rec["error"]:
            log(f"  warm-up {m}: {rec['error']}")


def _finish(result, t_start, methods, out):
    result["total_s"] = time.perf_counter() - t_start
    result["summary"] = {m: summarise_method([r for r in result["records"] if r["method"] == m])
                         for m in methods}
    result["acceptance"] = acceptance(result)
    C.write_json(out / f"{NAME}.json", result)
    md = markdown(result)
    C.write_text(out / f"{NAME}.md", md)
    return md


def main(argv=None):
    argv = [] if argv is None else list(argv)
    parser = C.base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=lambda s: [t for t in s.split(",") if t],
                        default=list(THRESHOLDS),
                        help="comma-separated: default, <rtol>, rtol=<x>, atol=<x>")
    parser.add_argument("--matrices", type=lambda s: [t for t in s.split(",") if t],
                        default=None, help="comma-separated matrix names (default: the suite)")
    parser.add_argument("--max-matvecs", type=int, default=BUDGET,
                        help="per-run product budget for methods that take max_matvecs")
    parser.add_argument("--max-flops", type=float, default=MAX_FLOPS,
                        help="per-run cost cap (flops) lowering the product budget of the "
                             f"methods other than {', '.join(UNCAPPED)} (0: no cap)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write benchmarks_realworld.md/png here (default: docs/ "
                             "unless --quick)")
    args = parser.parse_args(argv)
    import lmatrank

    log = C.progress
    registered = set(lmatrank.available_methods())
    methods = [m for m in (args.methods or METHODS) if m in registered]
    for m in set(args.methods or METHODS) - registered:
        log(f"note: method {m!r} is not registered; skipped")
    thresholds = [threshold_label(t) for t in args.thresholds]
    specs = M.suite(quick=args.quick and args.matrices is None)
    if args.matrices is not None:
        known = {s.name: s for s in M.suite()}
        unknown = [x for x in args.matrices if x not in known]
        if unknown:
            parser.error(f"unknown matrices {unknown}; known: {sorted(known)}")
        specs = [known[x] for x in args.matrices]
    docs = args.docs if args.docs is not None else (None if args.quick else C.REPO_ROOT / "docs")
    result = dict(machine=C.machine_description(), command=C.command_line(NAME, argv),
                  uncommitted=_uncommitted(),
                  config=dict(methods=methods, thresholds=thresholds, seed=args.seed,
                              max_matvecs=args.max_matvecs, quick=args.quick,
                              max_flops=args.max_flops or None, min_products=MIN_PRODUCTS,
                              matrices=[s.name for s in specs]),
                  matrices=[], records=[])
    log(f"realworld: {len(specs)} matrices x {len(methods)} methods x {len(thresholds)} "
        "thresholds; warming up")
    _warm_up(methods, log)
    t_start = time.perf_counter()
    for spec in specs:
        A = spec.build()
        lam = M.eigenvalues(A)
        n = A.shape[0]
        nnz = int(A.nnz) if sp.issparse(A) else (int(np.count_nonzero(A))
                                                  if isinstance(A, np.ndarray) else None)
        numpy_s = time_numpy_rank(A) if n <= NUMPY_MAX_N else None
        counts = {}
        for t in thresholds:
            tol = parse_threshold(t)
            counts[t] = M.count_above(lam, contract_threshold(lam, n, **tol))
        result["matrices"].append(dict(
            name=spec.name, source=spec.source, kind=spec.kind, description=spec.description,
            n=int(n), nnz=nnz, lambda_max=float(np.max(np.abs(lam))),
            negative=int(np.sum(lam < -contract_threshold(lam, n))), counts=counts,
            numpy_s=numpy_s, budget=case_budget(A, "langevin", args.max_matvecs,
                                                args.max_flops or None)))
        log(f"{spec.name} (n={n}): counts {counts}, numpy {numpy_s}")
        for m in methods:
            if n > METHOD_MAX_N.get(m, math.inf):
                continue
            for t in thresholds:
                seed = C.derive_seed(args.seed, spec.name, m, t)
                rec = run_case(A, lam, m, t, seed,
                               budget=case_budget(A, m, args.max_matvecs, args.max_flops or None))
                rec.update(matrix=spec.name, source=spec.source, numpy_s=numpy_s, seed=seed,
                           explicit=bool(sp.issparse(A) or isinstance(A, np.ndarray)),
                           numpy_ratio=(rec["best_s"] / (rec["numpy_paired_s"] or numpy_s)
                                        if numpy_s and m == "auto"
                                        else None))
                result["records"].append(rec)
                status = ("error" if rec["error"] else
                          f"{rec['rank']} [{rec['interval'][0]}, {rec['interval'][1]}] truth "
                          f"{rec['truth']} conv={rec['converged']} right={rec['right']} "
                          f"inside={rec['inside']}")
                log(f"  {m:9s} {t:10s} {status} {rec['wall_s']:.2f}s")
        _finish(result, t_start, methods, Path(args.out))   # partial results survive a kill
    md = _finish(result, t_start, methods, Path(args.out))
    out = Path(args.out)
    figure(result, out / f"{NAME}.png")
    print(md)
    if docs is not None:
        C.write_text(Path(docs) / "benchmarks_realworld.md",
                     md.replace(f"]({NAME}.png)", "](benchmarks_realworld.png)"))
        figure(result, Path(docs) / "benchmarks_realworld.png")
    return 0
