"""Scaling benchmark: products to reach 1% error vs condition number, and error vs rank.

Usage::

    python -m bench scaling [--quick] [--out bench/results/scaling] [--docs docs]

Part 1 (``kappa``): diagonal ``S`` with ``r`` nonzero eigenvalues log-uniform on
``[1/kappa, 1]`` and ``r`` zeros. For Euler–Maruyama (``eta = 1.9 / lambda_max``,
corrected observable) and BAOAB (``h = 1.9 / sqrt(lambda_max)``,
``gamma = 2.5 sqrt(lambda_min)``) the benchmark simulates ``--chains``
independent chains from 0 (one block product per step, Rademacher noise); every
chain is one replicate whose estimate after ``N`` steps is the mean of its
observable over steps ``N/4..N``. The products a single chain needs to reach 1%
relative RMSE (``N`` at the first grid point from which the RMSE over the
replicates stays below 1%) are read off, with a bootstrap interval over the
replicates, and a log–log slope against ``kappa`` is fitted for each scheme
(theory: ~1 for EM, ~0.5 for BAOAB). The cost model of the same quantity from the
exact per-mode formulas (:mod:`lmatrank.langevin._modes`: exact transient mean,
stationary integrated autocorrelation times) is drawn as lines.

Part 2 (``rank``): relative RMSE of BAOAB at a fixed number of steps per chain
vs the rank ``r`` (``kappa`` fixed); log–log slope fitted (theory ~ -1/2:
the per-mode variances add, the estimate grows like ``r``).

Writes ``scaling.json``, ``scaling.md`` and ``scaling.png`` to ``--out`` and, unless
``--quick``, ``benchmarks_scaling.md`` / ``benchmarks_scaling.png`` to ``--docs``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import _common as C

__all__ = ["main", "products_to_target", "model_error_em", "model_error_baoab",
           "simulate_chains", "FULL", "QUICK"]

NAME = "scaling"
TARGET = 0.01
FULL = dict(rank=100, kappas=(10.0, 100.0, 1e3, 1e4), chains=64, ranks=(10, 30, 100, 300, 1000),
            rank_kappa=100.0, rank_steps=1500, rank_chains=48, boot=200)
QUICK = dict(rank=20, kappas=(10.0, 30.0), chains=16, ranks=(10, 40), rank_kappa=10.0,
             rank_steps=200, rank_chains=12, boot=20, max_steps=12_000)
STEP_FACTOR = 1.9
FRICTION_FACTOR = 2.5


def spectrum(r, kappa):
    """``r`` eigenvalues log-uniform on [1/kappa, 1] (deterministic grid)."""
    return np.geomspace(1.0 / kappa, 1.0, r)


def _window_means(trace, grid):
    """Per-chain mean of rows ``N//4 .. N-1`` for every N in `grid`: shape (len(grid), chains)."""
    cums = np.vstack([np.zeros((1, trace.shape[1])), np.cumsum(trace, axis=0)])
    out = np.empty((len(grid), trace.shape[1]))
    for j, n_steps in enumerate(grid):
        b = n_steps // 4
        out[j] = (cums[n_steps] - cums[b]) / (n_steps - b)
    return out


def simulate_chains(lam, scheme, n_steps, chains, seed):
    """Trace (n_steps, chains) of the rank observable of `chains` chains on diag(lam, 0...)."""
    from lmatrank.backends import NumpyBackend
    from lmatrank.langevin._dynamics import BaoabChains, run_euler_maruyama
    from lmatrank.operators import as_operator, as_preconditioner

    r = lam.size
    diag = np.r_[lam, np.zeros(r)]
    from scipy.sparse import diags

    op = as_operator(diags(diag).tocsr(), check_symmetry=False)
    precond = as_preconditioner(None, 2 * r, np.float64)
    gen = np.random.default_rng(seed)
    be = NumpyBackend()
    lam_max = float(lam.max())
    if scheme == "em":
        return run_euler_maruyama(op, be, n_chains=chains, n_steps=n_steps,
                                  eta=STEP_FACTOR / lam_max, sigma2=1.0, precond=precond,
                                  noise="rademacher", gen=gen)
    h = STEP_FACTOR / math.sqrt(lam_max)
    c = math.exp(-FRICTION_FACTOR * math.sqrt(float(lam.min())) * h)
    run = BaoabChains(op, be, n_chains=chains, h=h, friction=c, temperature=0.5,
                      precond=precond, noise="rademacher", gen=gen)
    return run.advance(n_steps)


def _finite_window_variance(rho, m):
    """Variance factor of the mean of m samples with autocorrelation rho^l: (1/m^2) sum."""
    rho = np.asarray(rho, dtype=np.float64)
    one = 1.0 - rho
    s = rho * (m * one - (1.0 - rho ** m)) / np.where(one > 0, one ** 2, 1.0)
    return (m + 2.0 * s) / m ** 2


def model_error_em(lam, grid):
    """Relative RMSE of one EM chain (window N/4..N) from the exact per-mode formulas."""
    eta = STEP_FACTOR / lam.max()
    a2 = (1.0 - eta * lam) ** 2
    r = lam.size
    out = []
    for n_steps in grid:
        b = n_steps // 4
        m = n_steps - b
        deficit = np.sum(a2 ** b * (1.0 - a2 ** m) / (1.0 - a2)) / m  # mean of sum a^(2k)
        var = 2.0 * np.sum(_finite_window_variance(a2, m))           # Gaussian-noise variance
        out.append(math.sqrt(deficit ** 2 + var) / r)
    return np.array(out)


def model_error_baoab(lam, grid):
    """Relative RMSE of one BAOAB chain (window N/4..N): exact mean curve + 2 tau / m variance."""
    from lmatrank.langevin._modes import baoab_integrated_autocorrelation, baoab_mean_curve

    h = STEP_FACTOR / math.sqrt(lam.max())
    c = math.exp(-FRICTION_FACTOR * math.sqrt(lam.min()) * h)
    mean = baoab_mean_curve(lam, h, c, int(max(grid)))
    cums = np.r_[0.0, np.cumsum(mean)]
    tau = baoab_integrated_autocorrelation(lam, h, c)
    r = lam.size
    out = []
    for n_steps in grid:
        b = n_steps // 4
        m = n_steps - b
        bias = r - (cums[n_steps] - cums[b]) / m
        var = 2.0 * np.sum(np.minimum(tau, m)) / m   # a window cannot be worse than one sample
        out.append(math.sqrt(bias ** 2 + var) / r)
    return np.array(out)


def products_to_target(grid, errors, target=TARGET):
    """First grid N from which `errors` stay <= target (log-interpolated); nan if never."""
    errors = np.asarray(errors)
    ok = errors <= target
    if not ok[-1]:
        return math.nan
    bad = np.flatnonzero(~ok)
    j = 0 if bad.size == 0 else bad[-1] + 1
    if j == 0:
        return float(grid[0])
    x0, x1 = math.log(grid[j - 1]), math.log(grid[j])
    y0, y1 = math.log(errors[j - 1]), math.log(errors[j])
    t = (math.log(target) - y0) / (y1 - y0) if y1 != y0 else 1.0
    return float(math.exp(x0 + t * (x1 - x0)))


def _rmse(est, r):
    return np.sqrt(np.mean((est - r) ** 2, axis=-1)) / r


def _fit_slope(x, y):
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(x[keep], y[keep], 1)[0])


def kappa_part(cfg, seed, log):
    r = cfg["rank"]
    rows = []
    for scheme in ("em", "baoab"):
        for kappa in cfg["kappas"]:
            lam = spectrum(r, kappa)
            # horizon: the cost model's N for 1%, times 3 (at least 400 steps)
            # 1% needs ~2e4 tau/r steps (tau ~ kappa for EM, ~ sqrt(kappa) for BAOAB) + burn-in
            top = (4e4 * kappa if scheme == "em" else 1.2e5 * math.sqrt(kappa)) / r + 5000
            probe = np.unique(np.geomspace(16, top, 80).astype(int))
            model_fn = model_error_em if scheme == "em" else model_error_baoab
            model = model_fn(lam, probe)
            n_model = products_to_target(probe, model)
            n_max = int(min(max(400, 3 * (n_model if math.isfinite(n_model) else 1e5)),
                            cfg.get("max_steps", 300_000)))
            t0 = time.perf_counter()
            trace = simulate_chains(lam, scheme, n_max, cfg["chains"],
                                    C.derive_seed(seed, scheme, kappa))
            grid = np.unique(np.geomspace(16, n_max, 60).astype(int))
            means = _window_means(trace, grid)
            err = _rmse(means, r)             # per grid point (RMSE over chains)
            n_sim = products_to_target(grid, err)
            boot_rng = np.random.default_rng(C.derive_seed(seed, "boot", scheme, kappa))
            boots = []
            for _ in range(cfg["boot"]):
                idx = boot_rng.integers(0, cfg["chains"], cfg["chains"])
                boots.append(products_to_target(grid, _rmse(means[:, idx], r)))
            boots = np.array(boots)
            boots = boots[np.isfinite(boots)]
            lo, hi = (np.percentile(boots, [16, 84]) if boots.size else (math.nan, math.nan))
            rows.append(dict(scheme=scheme, kappa=kappa, rank=r, chains=cfg["chains"],
                             n_max=n_max, products_sim=n_sim, products_lo=float(lo),
                             products_hi=float(hi), products_model=n_model,
                             grid=grid.tolist(), rmse=err.tolist(),
                             rmse_model=model_fn(lam, grid).tolist(),
                             seconds=time.perf_counter() - t0))
            log(f"  {scheme:5s} kappa={kappa:8.0f}: {n_sim:10.0f} products to 1% "
                f"(model {n_model:.0f}, 68% CI {lo:.0f}..{hi:.0f})")
    slopes = {}
    for scheme in ("em", "baoab"):
        sub = [x for x in rows if x["scheme"] == scheme]
        slopes[scheme] = dict(sim=_fit_slope([x["kappa"] for x in sub],
                                             [x["products_sim"] for x in sub]),
                              model=_fit_slope([x["kappa"] for x in sub],
                                               [x["products_model"] for x in sub]))
    return rows, slopes


def rank_part(cfg, seed, log):
    rows = []
    steps = cfg["rank_steps"]
    for r in cfg["ranks"]:
        lam = spectrum(r, cfg["rank_kappa"])
        trace = simulate_chains(lam, "baoab", steps, cfg["rank_chains"],
                                C.derive_seed(seed, "rank", r))
        b = steps // 4
        est = trace[b:].mean(axis=0)
        err = float(_rmse(est, r))
        boot_rng = np.random.default_rng(C.derive_seed(seed, "rank-boot", r))
        boots = [float(_rmse(est[boot_rng.integers(0, est.size, est.size)], r))
                 for _ in range(cfg["boot"])]
        lo, hi = np.percentile(boots, [16, 84])
        model = float(model_error_baoab(lam, [steps])[0])
        rows.append(dict(rank=r, kappa=cfg["rank_kappa"], steps=steps, chains=cfg["rank_chains"],
                         rel_rmse=err, lo=float(lo), hi=float(hi), model=model))
        log(f"  rank {r:6d}: relative RMSE {err:.4f} (model {model:.4f}) after {steps} steps")
    slope = dict(sim=_fit_slope([x["rank"] for x in rows], [x["rel_rmse"] for x in rows]),
                 model=_fit_slope([x["rank"] for x in rows], [x["model"] for x in rows]))
    return rows, slope


def figure(result, path):
    plt = C.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(em="tab:blue", baoab="tab:red")
    for scheme in ("em", "baoab"):
        sub = [x for x in result["kappa"] if x["scheme"] == scheme]
        k = np.array([x["kappa"] for x in sub])
        y = np.array([x["products_sim"] for x in sub])
        lo = np.array([x["products_lo"] for x in sub])
        hi = np.array([x["products_hi"] for x in sub])
        s = result["kappa_slopes"][scheme]
        ax1.errorbar(k, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="o",
                     color=colors[scheme], capsize=3,
                     label=f"{scheme.upper()} simulated (slope {s['sim']:.2f})")
        ax1.plot(k, [x["products_model"] for x in sub], "--", color=colors[scheme],
                 label=f"{scheme.upper()} exact per-mode model (slope {s['model']:.2f})")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("condition number kappa of the nonzero spectrum")
    ax1.set_ylabel("products (steps of one chain) to 1% rel. RMSE")
    ax1.set_title(f"rank {result['config']['rank']}, eigenvalues log-uniform on [1/kappa, 1]")
    ax1.legend(fontsize=8)
    rr = result["rank"]
    r = np.array([x["rank"] for x in rr])
    y = np.array([x["rel_rmse"] for x in rr])
    ax2.errorbar(r, y, yerr=[np.maximum(y - [x["lo"] for x in rr], 0),
                             np.maximum(np.array([x["hi"] for x in rr]) - y, 0)],
                 fmt="o", color="tab:red", capsize=3,
                 label=f"BAOAB simulated (slope {result['rank_slope']['sim']:.2f})")
    ax2.plot(r, [x["model"] for x in rr], "--", color="tab:red",
             label=f"exact per-mode model (slope {result['rank_slope']['model']:.2f})")
    ax2.plot(r, y[0] * np.sqrt(r[0] / r), ":", color="gray", label="1/sqrt(r)")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("rank r")
    ax2.set_ylabel("relative RMSE")
    ax2.set_title(f"fixed budget: {rr[0]['steps']} steps per chain, kappa = {rr[0]['kappa']:g}")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    C.save_figure(fig, path)


def markdown(result, argv):
    lines = ["# Scaling: products vs condition number, error vs rank\n",
             f"Command: `{C.command_line(NAME, argv)}`  \n"
             f"Machine: {C.machine_line(result['machine'])}\n",
             "Diagonal spectra, `r` eigenvalues log-uniform on `[1/kappa, 1]` plus `r` zeros; "
             "each chain is one replicate started at 0, estimate = mean of its observable over "
             "steps `N/4..N` (Rademacher noise; EM `eta = 1.9/lambda_max`, corrected; BAOAB "
             "`h = 1.9/sqrt(lambda_max)`, `gamma = 2.5 sqrt(lambda_min)`). Model: exact per-mode "
             "transient means and stationary autocorrelation times (`lmatrank.langevin._modes`), with the "
             "Gaussian-noise variance (Rademacher noise, simulated, has a lower variance, so the "
             "model lies above the points). Intervals: 16–84% percentiles of a bootstrap over the "
             "replicate chains.\n",
             "## Products to reach 1% relative RMSE\n"]
    rows = [[x["scheme"].upper(), f"{x['kappa']:g}", C.fmt(x["products_sim"], 0),
             f"{C.fmt(x['products_lo'], 0)} .. {C.fmt(x['products_hi'], 0)}",
             C.fmt(x["products_model"], 0), x["chains"]] for x in result["kappa"]]
    lines.append(C.markdown_table(["scheme", "kappa", "products (simulated)",
                                   "68% bootstrap interval", "products (model)", "replicates"],
                                  rows))
    s = result["kappa_slopes"]
    lines.append(f"\nFitted log–log slopes vs kappa: EM {s['em']['sim']:.2f} (model "
                 f"{s['em']['model']:.2f}), BAOAB {s['baoab']['sim']:.2f} (model "
                 f"{s['baoab']['model']:.2f}); theory ~1 and ~0.5.\n")
    lines.append("\n## Relative error vs rank at a fixed budget (BAOAB)\n")
    rows = [[x["rank"], x["steps"], C.fmt(100 * x["rel_rmse"], 2),
             f"{C.fmt(100 * x['lo'], 2)} .. {C.fmt(100 * x['hi'], 2)}", C.fmt(100 * x["model"], 2),
             x["chains"]] for x in result["rank"]]
    lines.append(C.markdown_table(["rank", "steps", "rel. RMSE %", "68% bootstrap interval",
                                   "model %", "replicates"], rows))
    lines.append(f"\nFitted log–log slope vs rank: {result['rank_slope']['sim']:.2f} (model "
                 f"{result['rank_slope']['model']:.2f}); theory -0.5.\n")
    lines.append("\n![Scaling](scaling.png)\n")
    return "\n".join(lines)


def main(argv=None):
    argv = [] if argv is None else list(argv)
    parser = C.base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write benchmarks_scaling.md/png here (default: docs/ unless "
                             "--quick)")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    docs = args.docs if args.docs is not None else (None if args.quick else C.REPO_ROOT / "docs")
    log = C.progress
    result = dict(machine=C.machine_description(), config=cfg, command=C.command_line(NAME, argv))
    log("scaling: products to 1% vs kappa")
    result["kappa"], result["kappa_slopes"] = kappa_part(cfg, args.seed, log)
    log("scaling: error vs rank at a fixed budget")
    result["rank"], result["rank_slope"] = rank_part(cfg, args.seed, log)
    out = Path(args.out)
    C.write_json(out / "scaling.json", result)
    C.publish("scaling", markdown(result, argv), lambda path: figure(result, path), out, docs)
    return 0
