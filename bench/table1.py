"""Paper Table 1 / Fig. 2: rank of deep-linear-network Hessians at random global minima.

Protocol (docs/numerics.md; "Linear Networks" section of Bar, Mulayoff, Michaeli &
Talmon, AAAI 2024): depth 5, square d x d layers, Sigma_x = I, a random global
minimum per instance (:meth:`lmatrank.operators.LinearNetworkHessian.random_minimum`),
Hessian-vector products by identity (26), true rank d^2. Every method is called
through ``lmatrank.estimate_rank`` on the same operator; products are the
operator's count ``est.matvecs`` (symmetry probes and Lanczos included), seconds
are the CPU seconds of one estimate (``time.process_time``; wall seconds are in
the JSON). Metric: NRMSE = sqrt(mean((r_hat - d^2)^2)) / d^2 over independent
minima, bias = mean(r_hat - d^2) / d^2.

Run ``python -m bench table1`` (d in 8, 16, 32, 64; ``--large`` adds 128 and
256), ``--quick`` for a smoke run. Writes ``table1.json``, ``table1.md`` and
``table1_fig2.png`` into ``--out``.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np

from . import _common as C

__all__ = ["main", "PAPER_TABLE1", "run_instance"]

#: Published reference values (the paper's Table 1), for comparison only.
PAPER_TABLE1 = {
    8: dict(ld_nrmse=6.9, us_nrmse=12.2, us_mean=56.2),
    16: dict(ld_nrmse=2.8, us_nrmse=18.5, us_mean=208.7),
    32: dict(ld_nrmse=1.2, us_nrmse=19.0, us_mean=829.9),
    64: dict(ld_nrmse=0.3, us_nrmse=19.2, us_mean=3306.6),
    128: dict(ld_nrmse=2.0, us_nrmse=17.9, us_mean=13447.9),
    256: dict(ld_nrmse=4.6, us_nrmse=18.7, us_mean=53255.8),
}
DEPTH = 5
DEFAULT_DIMS = (8, 16, 32, 64)
LARGE_DIMS = (128, 256)
QUICK_DIMS = (3, 4)


def default_minima(d):
    return 100 if d <= 16 else 20


def _parse_minima(text):
    """'20' -> all d; '8:100,64:5' -> per d."""
    if text is None:
        return None
    if ":" not in text:
        value = int(text)
        if value < 1:
            raise ValueError("--minima must be >= 1")
        return {None: value}
    out = {}
    for item in text.split(","):
        d, _, m = item.partition(":")
        out[int(d)] = int(m)
        if out[int(d)] < 1:
            raise ValueError("--minima must be >= 1")
    return out


#: exact spectra (gram_eigenvalues, O(d^6)) for the threshold diagnostics up to this d
SPECTRUM_MAX_D = 32


def ld_paper_expectation(eigenvalues):
    """Exact mean of the paper-faithful LD estimate for this spectrum (no sampling noise).

    The mean over the averaging window (the last ``K_avg`` of ``K_tot`` steps) of the
    exact EM mean of the uncorrected observable started at the minimum,
    :func:`lmatrank.theory.em_expected_rank` -- what ``paper=True`` returns on average.
    """
    from lmatrank import theory
    from lmatrank.langevin import PAPER_SETTINGS as cfg

    steps = np.arange(cfg["n_steps"] - cfg["n_avg"] + 1, cfg["n_steps"] + 1)
    total = 0.0
    for start in range(0, steps.size, 1000):
        total += float(np.sum(theory.em_expected_rank(eigenvalues, cfg["eta"],
                                                      steps[start:start + 1000],
                                                      corrected=False)))
    return total / steps.size


def _spectrum_diagnostics(rec, lam):
    threshold = rec.get("threshold")        # JSON writes NaN as null
    if threshold is not None and np.isfinite(threshold):
        rec["exact_count_at_threshold"] = int(np.sum(lam > rec["threshold"]))
        rec["threshold_rel"] = float(rec["threshold"] / lam.max())
    if rec["method"] == "ld_paper":
        rec["theory_expected_estimate"] = ld_paper_expectation(lam)


def add_spectrum_diagnostics(records, seed):
    """Fill in the exact-spectrum diagnostics of records that lack them (d <= SPECTRUM_MAX_D)."""
    from lmatrank.operators import LinearNetworkHessian

    cache = {}
    for rec in records:
        if rec["d"] > SPECTRUM_MAX_D or rec["error"] is not None:
            continue
        if "theory_expected_estimate" in rec or (rec["method"] != "ld_paper"
                                                 and "exact_count_at_threshold" in rec):
            continue
        key = (rec["d"], rec["minimum"])
        if key not in cache:
            H = LinearNetworkHessian.random_minimum(rec["d"], depth=DEPTH,
                                                    rng=C.derive_seed(seed, *key))
            cache = {key: np.asarray(H.gram_eigenvalues(), dtype=float)}
        _spectrum_diagnostics(rec, cache[key])


def run_instance(d, index, seed, specs):
    """All methods on one random minimum (the same operator object for all).

    For d <= SPECTRUM_MAX_D the exact nonzero spectrum is computed (not counted as
    products of any method) to split each error into the part due to the threshold
    (``exact_count_at_threshold - d^2``) and the part due to the estimator itself
    (``estimate - exact_count_at_threshold``).
    """
    from lmatrank.operators import LinearNetworkHessian

    H = LinearNetworkHessian.random_minimum(d, depth=DEPTH, rng=C.derive_seed(seed, d, index))
    truth = int(H.theoretical_rank)
    n = int(H.shape[0])
    lam = None
    records = []
    for spec in specs:
        if spec.max_n is not None and n > spec.max_n:
            continue
        rec = C.run_estimate(spec, H, C.derive_seed(seed, d, index, spec.key))
        rec.update(d=d, minimum=index, method=spec.key, truth=truth, n=n)
        if d <= SPECTRUM_MAX_D and rec["error"] is None:
            if lam is None:
                lam = np.asarray(H.gram_eigenvalues(), dtype=float)
            _spectrum_diagnostics(rec, lam)
        records.append(rec)
    return records


def _warm_up(specs):
    """Compile numba kernels / import lazily-loaded modules before anything is timed."""
    run_instance(2, -1, 0, specs)


def _worker_init(specs):
    _warm_up(specs)


def _worker(args):
    return run_instance(*args)


def _run_all(tasks, specs, jobs):
    if jobs <= 1:
        _warm_up(specs)
        for task in tasks:
            yield run_instance(*task, specs)
        return
    # one BLAS thread per worker so that workers do not fight over the cores;
    # spawned children import numpy afresh and read these variables
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    for key in saved:
        os.environ[key] = "1"
    try:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(jobs, initializer=_worker_init, initargs=(specs,)) as pool:
            yield from pool.imap(_worker, [(*task, specs) for task in tasks])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _summaries(records, specs, dims):
    out = []
    for d in dims:
        for spec in specs:
            recs = [r for r in records if r["d"] == d and r["method"] == spec.key]
            if recs:
                row = dict(d=d, method=spec.key, label=spec.label, **C.summarise(recs))
                diag = [r for r in recs if r["error"] is None and "exact_count_at_threshold" in r]
                if diag:
                    row["threshold_rel"] = float(np.mean([r["threshold_rel"] for r in diag]))
                    row["exact_count_at_threshold"] = float(np.mean(
                        [r["exact_count_at_threshold"] for r in diag]))
                    row["threshold_bias_pct"] = 100 * (row["exact_count_at_threshold"] / d ** 2 - 1)
                    row["estimator_bias_pct"] = 100 * float(np.mean(
                        [(r["estimate"] - r["exact_count_at_threshold"]) / d ** 2 for r in diag]))
                theo = [r for r in recs if r["error"] is None and "theory_expected_estimate" in r]
                if theo:
                    expected = np.array([r["theory_expected_estimate"] for r in theo])
                    est = np.array([r["estimate"] for r in theo])
                    row["theory_expected_estimate"] = float(expected.mean())
                    row["theory_bias_pct"] = 100 * float(np.mean(expected / d ** 2 - 1))
                    row["theory_nrmse_pct"] = 100 * float(
                        np.sqrt(np.mean((expected / d ** 2 - 1) ** 2)))
                    row["noise_rms_pct"] = 100 * float(np.sqrt(np.mean(((est - expected)
                                                                         / d ** 2) ** 2)))
                out.append(row)
    return out


def _markdown(summaries, specs, config, machine, command, elapsed, earlier=()):
    statistical = {s.key: s.statistical for s in specs}
    rows = []
    for s in summaries:
        rows.append([s["d"], s["label"], f"{C.fmt(s['mean_estimate'])} / {s['mean_truth']:.0f}",
                     C.fmt(s["std_estimate"], 2), C.fmt(s["nrmse_pct"], 2), C.fmt(s["bias_pct"], 2),
                     C.fmt(s["mean_stderr"], 2) if statistical[s["method"]] else "-",
                     C.fmt(s["products"], 0), C.fmt(s["cpu_s"], 3),
                     f"{s['n'] - s['failures']}/{s['n']}"])
    text = [
        "### Table 1 protocol: deep linear network Hessians (depth 5, d x d layers, rank d^2)\n",
        f"Command: `{command}`  \n",
        f"Machine: {C.machine_line(machine)}  \n",
        f"Total run time: {elapsed / 60:.1f} min wall ({config['jobs']} worker process(es)).\n\n",
        *[f"Earlier run kept for d = {e['dims']}: `{e['command']}` ({e['elapsed_s'] / 60:.1f} min "
          f"wall; machine: {C.machine_line(e['machine'])})  \n" for e in earlier],
        "\n" if earlier else "",
        C.markdown_table(
            ["d", "method", "mean estimate / true", "std across minima", "NRMSE %", "bias %",
             "mean reported stderr", "products / estimate", "CPU s / estimate", "minima (ok/run)"],
            rows),
        "\nNRMSE = sqrt(mean((r_hat - d^2)^2)) / d^2 and bias = mean(r_hat - d^2) / d^2 over "
        "independent random minima; products = operator products counted by the operator "
        "(symmetry probes and Lanczos included); CPU seconds of one estimate "
        "(`time.process_time`, robust to other load on the machine).\n\n",
    ]
    paper_rows = []
    by = {(s["d"], s["method"]): s for s in summaries}
    for d in config["dims"]:
        ref = PAPER_TABLE1.get(d)
        if ref is None:
            continue
        ld = by.get((d, "ld_paper"))
        us = by.get((d, "us_faithful"))
        paper_rows.append([
            d, ref["ld_nrmse"], C.fmt(ld["nrmse_pct"], 2) if ld else "-",
            ref["us_nrmse"], C.fmt(us["nrmse_pct"], 2) if us else "-",
            f"{ref['us_mean']} ({100 * (ref['us_mean'] / d ** 2 - 1):+.1f} %)",
            f"{C.fmt(us['mean_estimate'])} ({us['bias_pct']:+.1f} %)" if us else "-"])
    if paper_rows:
        text += [
            "Against the published Table 1 (reference values from the paper):\n\n",
            C.markdown_table(["d", "paper LD NRMSE %", "LD paper-faithful NRMSE %",
                              "paper U&S NRMSE %", "U&S faithful NRMSE %",
                              "paper U&S mean (bias)", "U&S faithful mean (bias)"], paper_rows),
            "\n"]
    diag_rows = [[s["d"], s["label"], f"{s['threshold_rel']:.2e}",
                  C.fmt(s["exact_count_at_threshold"], 1), C.fmt(s["threshold_bias_pct"], 2),
                  C.fmt(s["estimator_bias_pct"], 2), C.fmt(s["bias_pct"], 2)]
                 for s in summaries if "threshold_rel" in s and s["method"] != "ld_paper"]
    if diag_rows:
        text += [
            "Where the error comes from (d <= 32, exact spectra from `gram_eigenvalues`): the "
            "threshold a method counts above, relative to lambda_max, the exact number of "
            "eigenvalues above it, and the split of the bias into the threshold's part "
            "(exact count above threshold - d^2) and the estimator's part (estimate - exact count "
            "above threshold), all in % of d^2:\n\n",
            C.markdown_table(["d", "method", "threshold / lambda_max",
                              "exact count above threshold", "bias from threshold %",
                              "bias of the estimator %", "total bias %"], diag_rows),
            "\n"]
    theory_rows = [[s["d"], C.fmt(s["mean_estimate"], 1), C.fmt(s["theory_expected_estimate"], 1),
                    C.fmt(s["bias_pct"], 2), C.fmt(s["theory_bias_pct"], 2),
                    C.fmt(s["theory_nrmse_pct"], 2), C.fmt(s["noise_rms_pct"], 2),
                    C.fmt(s["nrmse_pct"], 2)]
                   for s in summaries if s["method"] == "ld_paper" and "theory_bias_pct" in s]
    if theory_rows:
        text += [
            "LD paper-faithful against its exact expectation (exact EM mean of the uncorrected "
            "observable over the averaging window, from the exact spectrum of each minimum): "
            "the deterministic part of the error (finite-time filter + discretisation gain) and "
            "the sampling noise of the single chain (rms of estimate - expectation), in % of d^2:"
            "\n\n",
            C.markdown_table(["d", "mean estimate", "mean exact expectation", "bias %",
                              "expected bias %", "NRMSE of the expectation %",
                              "rms noise %", "NRMSE %"], theory_rows),
            "\n"]
    text.append("Methods:\n\n" + "".join(f"- **{s.label}** (`method={s.method!r}`"
                                           f"{', ' + ', '.join(f'{k}={v!r}' for k, v in s.options.items()) if s.options else ''}): {s.note}\n"
                                           for s in specs))
    return "".join(text)


def _figure(summaries, specs, path):
    plt = C.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    truths = sorted({s["mean_truth"] for s in summaries if np.isfinite(s["mean_truth"])})
    if truths:
        lo, hi = truths[0] / 1.6, truths[-1] * 1.6
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    n = len(specs)
    for i, spec in enumerate(specs):
        rows = [s for s in summaries if s["method"] == spec.key and np.isfinite(s["mean_estimate"])]
        if not rows:
            continue
        jitter = 1.0 + 0.025 * (i - (n - 1) / 2)
        x = np.array([r["mean_truth"] for r in rows]) * jitter
        y = np.array([r["mean_estimate"] for r in rows])
        err = np.array([r["std_estimate"] for r in rows])
        ax.errorbar(x, y, yerr=err, fmt="o-", ms=4, lw=1, capsize=3, label=spec.label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true rank d^2")
    ax.set_ylabel("estimated rank (mean, error bars: std across minima)")
    ax.set_title("Deep linear network Hessians (paper Fig. 2 protocol)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return C.save_figure(fig, path)


def _render_existing(out, theory=False):
    import json

    data = json.loads((out / "table1.json").read_text())
    config = data["config"]
    if theory:
        add_spectrum_diagnostics(data["records"], config["seed"])
    done = sorted({r["d"] for r in data["records"]})
    if done != sorted(config["dims"]):
        C.progress(f"note: table1.json holds results for d = {done} only (run cut short)")
        config["dims"] = done
    current = {s.key: s.note for s in C.TABLE1_METHODS}
    specs = [C.MethodSpec(m["key"], m["label"], m["method"], m["options"],
                          note=current.get(m["key"], m["note"]),
                          statistical=next((s.statistical for s in C.TABLE1_METHODS
                                            if s.key == m["key"]), True))
             for m in config["methods"]]
    summaries = _summaries(data["records"], specs, done)
    data["summaries"] = summaries
    C.write_json(out / "table1.json", data)
    md = _markdown(summaries, specs, config, data["machine"], data["command"], data["elapsed_s"],
                   data.get("earlier_runs", ()))
    C.write_text(out / "table1.md", md)
    _figure(summaries, specs, out / "table1_fig2.png")
    print(md)
    return 0


def main(argv=None):
    argv = list(argv or [])
    parser = C.base_parser("table1", __doc__.splitlines()[0])
    parser.add_argument("--dims", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="comma-separated layer widths d (default 8,16,32,64)")
    parser.add_argument("--large", action="store_true", help="add d = 128, 256")
    parser.add_argument("--minima", default=None,
                        help="minima per d: one number for all, or '8:100,64:5' "
                             "(default 100 for d <= 16, 20 for d >= 32)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, one BLAS thread each (default 1)")
    parser.add_argument("--render-only", action="store_true",
                        help="re-write table1.md and the figure from an existing (possibly "
                             "partial) table1.json in --out, running nothing")
    parser.add_argument("--resume", action="store_true",
                        help="keep the records of the other d in an existing table1.json in "
                             "--out and add this run's (continue a run cut short)")
    parser.add_argument("--add-theory", action="store_true",
                        help="with --render-only: compute the exact-spectrum diagnostics "
                             "(d <= 32) missing from the JSON")
    args = parser.parse_args(argv)
    if args.render_only:
        return _render_existing(args.out, theory=args.add_theory)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    try:
        minima_opt = _parse_minima(args.minima)
    except ValueError as exc:
        parser.error(str(exc))
    dims = args.dims or list(QUICK_DIMS if args.quick else DEFAULT_DIMS)
    if args.large:
        dims += [d for d in LARGE_DIMS if d not in dims]
    if any(d < 2 for d in dims):
        parser.error("every d must be >= 2")

    def minima_for(d):
        if minima_opt is not None:
            return minima_opt.get(d, minima_opt.get(None, 2 if args.quick else default_minima(d)))
        return 2 if args.quick else default_minima(d)

    specs = C.available_roster(C.TABLE1_METHODS, only=args.methods, log=C.progress)
    if not specs:
        parser.error("no method to run")
    machine = C.machine_description()
    command = C.command_line("table1", argv)
    config = dict(dims=dims, minima={d: minima_for(d) for d in dims}, depth=DEPTH, seed=args.seed,
                  jobs=args.jobs, quick=args.quick,
                  methods=[dict(key=s.key, label=s.label, method=s.method, options=s.options,
                                note=s.note) for s in specs])
    out = args.out
    records, earlier = [], []
    if args.resume and (out / "table1.json").exists():
        import json

        old = json.loads((out / "table1.json").read_text())
        records = [r for r in old["records"] if r["d"] not in dims]
        earlier = old.get("earlier_runs", []) + [dict(
            command=old["command"], machine=old["machine"], elapsed_s=old["elapsed_s"],
            dims=sorted({r["d"] for r in records}))]
        kept = sorted({r["d"] for r in records})
        config["minima"] = {**{d: m for d, m in old["config"]["minima"].items()
                               if int(d) in kept}, **config["minima"]}
        config["dims"] = sorted(set(kept) | set(dims))
        known = {m["key"] for m in config["methods"]}
        config["methods"] += [m for m in old["config"]["methods"] if m["key"] not in known]
        specs = specs + [C.MethodSpec(m["key"], m["label"], m["method"], m["options"],
                                      note=m["note"]) for m in old["config"]["methods"]
                         if m["key"] not in known]
        C.progress(f"resuming: keeping {len(records)} records for d = {kept}")
    run_specs = [s for s in specs if args.methods is None or s.key in args.methods]
    start = time.perf_counter()
    tasks = [(d, i, args.seed) for d in dims for i in range(minima_for(d))]
    for k, recs in enumerate(_run_all(tasks, run_specs, args.jobs)):
        records.extend(recs)
        d, i = recs[0]["d"], recs[0]["minimum"]
        C.progress(f"[{time.perf_counter() - start:7.1f}s] d={d} minimum {i}: " + ", ".join(
            f"{r['method']}={r['estimate']:.1f}" for r in recs))
        last_of_d = k + 1 == len(tasks) or tasks[k + 1][0] != d
        if last_of_d:  # write partial results after every d (a long run may be cut short)
            elapsed = time.perf_counter() - start
            summaries = _summaries(records, specs, config["dims"])
            payload = dict(benchmark="table1", command=command, machine=machine, config=config,
                           elapsed_s=elapsed, summaries=summaries, records=records,
                           earlier_runs=earlier)
            C.write_json(out / "table1.json", payload)
    elapsed = time.perf_counter() - start
    summaries = _summaries(records, specs, config["dims"])
    C.write_json(out / "table1.json", dict(benchmark="table1", command=command, machine=machine,
                                           config=config, elapsed_s=elapsed, summaries=summaries,
                                           records=records, earlier_runs=earlier))
    md = _markdown(summaries, specs, config, machine, command, elapsed, earlier)
    C.write_text(out / "table1.md", md)
    _figure(summaries, specs, out / "table1_fig2.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
