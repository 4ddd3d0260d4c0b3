r"""Paper Fig. 1: the loss of Langevin dynamics over iterations vs the theory.

One random minimum of the deep linear network (depth 5, d = 32 by default, rank
d^2 = 1024, n = 5120 parameters). Langevin is run with the paper's settings
(``paper=True``: sigma^2 = 2e-5, eta = 1e-4, 15,000 steps, one chain, Gaussian
noise, uncorrected loss) and its loss per iteration ``info["loss_curve"]`` is
plotted against

- Theorem 1 (continuous time, G = I, Sigma = sigma^2 I, theta_0 at the minimum):
  ``E L(t) = (sigma^2 / 4) sum_i (1 - exp(-2 lambda_i t))`` with ``t = eta k``,
  from the exact nonzero spectrum (:meth:`LinearNetworkHessian.gram_eigenvalues`,
  O(d^6), instead of a dense 5120 x 5120 eigendecomposition);
- the exact mean of the discrete Euler–Maruyama chain the simulation really is
  (:func:`lmatrank.theory.em_expected_rank`, uncorrected observable) in loss
  units ``sigma^2 / 4`` times it; it differs from Theorem 1 by the
  discretisation gain ``2 / (2 - eta lambda_i)`` of the fast modes;
- Proposition 1's stationary level ``sigma^2 rank / 4``.

A second panel shows, in rank units ``(4 / sigma^2) E L``, the same paper run and
the discretisation-corrected observable of a default run
(``method="langevin"``), whose exact mean converges to the rank itself.
Writes ``fig1.json``, ``fig1.md`` and ``fig1.png``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from . import _common as C

__all__ = ["main", "theory_curves"]


def theory_curves(eigenvalues, eta, sigma2, steps):
    """Theorem 1 (continuous), exact EM mean (uncorrected) and Prop. 1, in loss units."""
    from lmatrank import theory

    lam = np.asarray(eigenvalues, dtype=float)
    steps = np.asarray(steps)
    t = eta * steps
    continuous = (sigma2 / 4.0) * np.sum(-np.expm1(-2.0 * np.outer(t, lam)), axis=1)
    em = (sigma2 / 4.0) * theory.em_expected_rank(lam, eta, steps, corrected=False)
    return dict(theorem1=continuous, em_exact=np.asarray(em, dtype=float),
                proposition1=sigma2 * lam.size / 4.0)


def _chunked_theory(eigenvalues, eta, sigma2, steps, chunk=500):
    parts = [theory_curves(eigenvalues, eta, sigma2, steps[i:i + chunk])
             for i in range(0, len(steps), chunk)]
    return dict(theorem1=np.concatenate([p["theorem1"] for p in parts]),
                em_exact=np.concatenate([p["em_exact"] for p in parts]),
                proposition1=parts[0]["proposition1"])


def main(argv=None):
    argv = list(argv or [])
    parser = C.base_parser("fig1", __doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=None, help="layer width (default 32; quick 4)")
    args = parser.parse_args(argv)
    d = args.d or (4 if args.quick else 32)
    if d < 2:
        parser.error("--d must be >= 2")

    import lmatrank
    from lmatrank.operators import LinearNetworkHessian

    machine = C.machine_description()
    command = C.command_line("fig1", argv)
    start = time.perf_counter()
    H = LinearNetworkHessian.random_minimum(d, depth=5, rng=C.derive_seed(args.seed, d, 0))
    rank = int(H.theoretical_rank)
    lam = np.sort(np.asarray(H.gram_eigenvalues(), dtype=float))[::-1]
    with warnings.catch_warnings():  # the figure shows the curves, not the count at a threshold
        warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
        paper = lmatrank.estimate_rank(H, method="langevin", paper=True,
                                       rng=C.derive_seed(args.seed, d, "paper"))
        default = lmatrank.estimate_rank(H, method="langevin",
                                          rng=C.derive_seed(args.seed, d, "default"))
    loss = np.asarray(paper.info["loss_curve"], dtype=float)
    eta, sigma2 = float(paper.info["eta"]), float(paper.info["sigma2"])
    # runs longer than the recorder's capacity keep block means, labelled by their last step
    steps = np.asarray(paper.info["rank_curve_steps"])
    theory = _chunked_theory(lam, eta, sigma2, steps)
    rank_default = np.asarray(default.info["rank_curve"], dtype=float)
    elapsed = time.perf_counter() - start

    # how well the simulation follows each curve over the averaging window
    n_avg = int(paper.info["n_avg"])
    window = slice(loss.size - n_avg, loss.size)
    sim_mean = float(loss[window].mean())
    summary = dict(
        d=d, n=int(H.shape[0]), rank=rank, eta=eta, sigma2=sigma2, steps=int(paper.info["n_steps"]),
        n_avg=n_avg, lambda_max=float(lam[0]), lambda_min_nonzero=float(lam[-1]),
        paper_estimate=float(paper.estimate), paper_stderr=float(paper.stderr),
        default_estimate=float(default.estimate), default_stderr=float(default.stderr),
        default_method=str(default.info.get("scheme", default.method)),
        window_mean_loss=sim_mean,
        window_mean_theorem1=float(theory["theorem1"][window].mean()),
        window_mean_em_exact=float(theory["em_exact"][window].mean()),
        proposition1_level=float(theory["proposition1"]),
        em_exact_rank_at_end=float(theory["em_exact"][-1] * 4 / sigma2),
        theorem1_rank_at_end=float(theory["theorem1"][-1] * 4 / sigma2),
    )

    plt = C.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    ax1.plot(steps, loss, color="0.6", lw=0.6, label="LD paper-faithful (one chain)")
    ax1.plot(steps, theory["theorem1"], "b-", lw=1.5, label="Theorem 1 (continuous time)")
    ax1.plot(steps, theory["em_exact"], "r--", lw=1.5, label="exact EM mean (uncorrected)")
    ax1.axhline(theory["proposition1"], color="k", ls=":", lw=1.2,
                label="Proposition 1: sigma^2 rank / 4")
    ax1.set_xlabel("iteration k")
    ax1.set_ylabel("loss L(theta_k)")
    ax1.set_title(f"d = {d}: n = {H.shape[0]}, rank {rank}, sigma^2 = {sigma2:g}, eta = {eta:g}")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.plot(steps, loss * 4 / sigma2, color="0.6", lw=0.6, label="paper run, (4/sigma^2) L")
    ax2.plot(steps, theory["em_exact"] * 4 / sigma2, "r--", lw=1.2, label="exact EM mean")
    ax2.plot(np.asarray(default.info["rank_curve_steps"]), rank_default, "g-", lw=1.0,
             label=f"default run, corrected observable ({default.info.get('n_chains', '?')} chains)")
    ax2.axhline(rank, color="k", ls=":", lw=1.2, label="true rank")
    ax2.set_xscale("log")
    ax2.set_xlabel("iteration k (log)")
    ax2.set_ylabel("rank observable")
    ax2.set_ylim(0, 1.6 * rank)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    out = args.out
    C.save_figure(fig, out / "fig1.png")

    rows = [
        ["paper-faithful run: mean loss over the last K_avg steps", f"{sim_mean:.6g}"],
        ["Theorem 1 (continuous), same window", f"{summary['window_mean_theorem1']:.6g}"],
        ["exact EM mean (uncorrected), same window", f"{summary['window_mean_em_exact']:.6g}"],
        ["Proposition 1 level sigma^2 rank / 4", f"{summary['proposition1_level']:.6g}"],
        ["paper-faithful rank estimate", f"{paper.estimate:.1f} +- {paper.stderr:.1f}"],
        ["default (corrected) rank estimate", f"{default.estimate:.1f} +- {default.stderr:.1f}"],
        ["exact EM mean at the last step, rank units", f"{summary['em_exact_rank_at_end']:.1f}"],
        ["Theorem 1 at the last step, rank units", f"{summary['theorem1_rank_at_end']:.1f}"],
    ]
    md = "".join([
        f"### Fig. 1: loss over iterations vs theory (d = {d}, true rank {rank})\n\n",
        f"Command: `{command}`  \n", f"Machine: {C.machine_line(machine)}  \n",
        f"Run time: {elapsed:.0f} s wall.\n\n",
        C.markdown_table(["quantity", "value"], rows),
        "\n![Fig. 1](fig1.png)\n",
    ])
    C.write_text(out / "fig1.md", md)
    stride = max(1, loss.size // 3000)
    C.write_json(out / "fig1.json", dict(
        benchmark="fig1", command=command, machine=machine, elapsed_s=elapsed, summary=summary,
        curves=dict(stride=stride, steps=steps[::stride], loss=loss[::stride],
                    theorem1=theory["theorem1"][::stride], em_exact=theory["em_exact"][::stride],
                    default_rank_curve=rank_default[::max(1, rank_default.size // 3000)])))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
