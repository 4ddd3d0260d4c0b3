"""Real-network experiment: Hessian rank of a small denoising CNN (paper Fig. 3 / Fig. 4).

Modelled on the "Denoising NN" section and appendix D of Bar, Mulayoff, Michaeli
& Talmon (AAAI 2024), on data that ships with an installable package:

- data: scikit-learn's digits (8x8 images scaled to [0, 1]), a random subset of
  ``--images`` images, corrupted by N(0, 1) white noise; MSE loss;
- model: a DnCNN-style residual CNN, ``x - conv3(s(conv2(s(conv1(x)))))``
  with 8 channels and 3x3 kernels (737 parameters; the paper's has 753 and
  batch norm, left out here so the loss is a pure function of the weights).
  ``s`` is SiLU, a smooth ReLU: with ReLU the Hessian jumps at every kink the
  walk crosses and dead units get ``v_hat = 0``, i.e. ``G = 1/eps = 1e8`` --
  a first trial with ReLU diverged at the first step for that reason;
- training: mini-batch SGD with momentum and fresh noise every epoch, then
  full-batch gradient descent on one fixed noise draw, polished by full-batch
  L-BFGS (GD alone leaves a residual gradient along the flat directions, and
  a residual gradient biases the estimate, see docs/theory_gradient.md);
- preconditioner: Adam's bias-corrected second moments after 1,000 Adam steps
  with beta_1 = 0, beta_2 = 0.999 on mini-batches at theta_0 (the Adam steps only
  produce ``v_hat``; theta_0 is kept), ``G = 1 / (sqrt(v_hat) + eps)``;
- LD: :func:`lmatrank.hessian_rank` (Algorithm 1, gradients only, corrected
  estimator, automatic step, two noise levels for the quadratic-regime check);
- U&S: ``estimate_rank(method="chebyshev", faithful=True)`` (published settings:
  degree 50, 300 probes) on the exact Hessian of the same loss;
- evaluation: the exact Hessian by automatic differentiation
  (:meth:`lmatrank.torch.ModelLoss.hessian`), its eigenvalues, and the
  normalised cumulative energy ``sum_{i<=j} lambda_i / Tr(H)`` at each estimate
  (the paper reports >= 98.5 % for LD, 88 % for U&S on its DnCNN);
- Fig. 4: the same dynamics with ``G = I`` at the step that is stable with
  Adam's ``G`` rescaled to the same mean, which leaves the minimum.

Run ``python -m bench denoising`` (``--quick`` for a smoke run). Writes
``denoising.json``, ``denoising.md`` and ``denoising.png`` into ``--out`` and
copies the Markdown and figure to ``docs/benchmarks_denoising.md`` /
``docs/figures/denoising.png``.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings

import numpy as np

from . import _common as C

__all__ = ["main"]


def _build_model(torch, channels):
    class DenoisingCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, channels, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)
            self.conv3 = torch.nn.Conv2d(channels, 1, 3, padding=1)

        def forward(self, x):  # residual learning as in DnCNN: predict the noise
            act = torch.nn.functional.silu
            return x - self.conv3(act(self.conv2(act(self.conv1(x)))))

    return DenoisingCNN()


def _energy_at(evals_desc, trace, r):
    r = int(min(max(round(r), 0), evals_desc.size))
    return float(np.sum(evals_desc[:r]) / trace) if r > 0 else 0.0


def main(argv=None):
    parser = C.base_parser("denoising", __doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="training images (default 128)")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000, help="LD steps per chain (K_tot)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--sigma2", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-docs", action="store_true", help="do not copy results to docs/")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.steps, args.chains = 32, 150, 2

    import torch
    from sklearn.datasets import load_digits

    import lmatrank
    from lmatrank.torch import ModelLoss, adam_preconditioner

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = np.random.default_rng(args.seed)
    t_start = time.time()
    timings = {}

    # ---------------------------------------------------------------- data and training
    digits = load_digits().images / 16.0
    idx = gen.choice(len(digits), size=args.images, replace=False)
    clean = torch.tensor(digits[idx], dtype=torch.float32).unsqueeze(1)
    model = _build_model(torch, args.channels)
    n_params = sum(p.numel() for p in model.parameters())
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    epochs = 20 if args.quick else 150
    for _ in range(epochs):                      # fresh noise every epoch (paper)
        noisy = clean + torch.randn_like(clean)
        for batch in torch.randperm(args.images).split(16):
            sgd.zero_grad()
            torch.nn.functional.mse_loss(model(noisy[batch]), clean[batch]).backward()
            sgd.step()
    model = model.double()
    noisy = (clean + torch.randn_like(clean)).double()   # the fixed draw of the final loss
    clean = clean.double()
    f = ModelLoss(model, torch.nn.functional.mse_loss, (noisy, clean))
    # full-batch GD at 1.9 / lambda_max(H) to the minimum
    hop = f.hessian_operator()
    v = gen.standard_normal(f.n_params)
    for _ in range(30):
        v = hop @ v
        lam_h = float(np.linalg.norm(v))
        v /= lam_h
    theta = f.theta0.copy()
    gd_steps = 100 if args.quick else 1000
    for _ in range(gd_steps):
        theta -= (1.0 / lam_h) * f.gradient(theta)
    f.load(theta)
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=50 if args.quick else 3000,
                              tolerance_grad=1e-11, tolerance_change=0.0, history_size=50,
                              line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        value = torch.nn.functional.mse_loss(model(noisy), clean)
        value.backward()
        return value

    lbfgs.step(closure)
    f = ModelLoss(model, torch.nn.functional.mse_loss, (noisy, clean))
    grad_norm = float(np.linalg.norm(f.gradient(f.theta0)))
    timings["training_s"] = time.time() - t_start
    C.progress(f"trained: loss {f.loss(f.theta0):.5f}, |grad| {grad_norm:.2e}, {n_params} params")

    # --------------------------------------------------------- Adam second moments
    t0 = time.time()
    adam_model = _build_model(torch, args.channels).double()
    adam_model.load_state_dict(model.state_dict())
    adam = torch.optim.Adam(adam_model.parameters(), lr=1e-6, betas=(0.0, 0.999), eps=1e-8)
    for k in range(1000):
        batch = torch.randperm(args.images)[:16]
        adam.zero_grad()
        torch.nn.functional.mse_loss(adam_model(noisy[batch]), clean[batch]).backward()
        adam.step()
    params_adam = [p for p in adam_model.parameters()]
    G = adam_preconditioner(adam, params_adam)
    timings["adam_s"] = time.time() - t0

    # ------------------------------------------------------------- exact Hessian
    t0 = time.time()
    H = f.hessian()
    evals = np.linalg.eigvalsh(H)[::-1]
    trace = float(np.sum(evals))
    timings["exact_hessian_s"] = time.time() - t0
    probe = gen.standard_normal((f.n_params, 4))
    hvp_rel_err = float(np.linalg.norm(f.hessian_operator() @ probe - H @ probe)
                        / np.linalg.norm(H @ probe))

    # ------------------------------------------------------------------------ LD
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ld = lmatrank.hessian_rank(f, None, f.theta0, preconditioner=G, sigma2=args.sigma2,
                                   n_steps=args.steps, n_chains=args.chains, batched=True,
                                   rng=args.seed + 1)
    timings["ld_s"] = time.time() - t0
    C.progress(f"LD: {ld}")

    # ----------------------------------------------------------------- U&S faithful
    t0 = time.time()
    us = None
    try:
        us = lmatrank.estimate_rank(H, method="chebyshev", faithful=True, rng=args.seed + 2)
    except (ValueError, TypeError) as exc:  # method not registered in this checkout
        C.progress(f"U&S skipped: {exc}")
    timings["us_s"] = time.time() - t0

    # ----------------------------------------------- Fig. 4: G = I leaves the minimum
    G_mean = float(np.mean(G))
    eta_adam = ld.info["eta"]
    eta_identity = eta_adam * G_mean      # same mean step per coordinate as with Adam's G
    unstable = dict(eta=eta_identity, eta_lambda_max_H=eta_identity * float(evals[0]))
    theta_i = f.theta0.copy()
    curve_i = []
    noise_gen = np.random.default_rng(args.seed + 3)
    loss0 = f.loss(f.theta0)
    escape = 100.0 * args.sigma2 * f.n_params / 4.0   # 100 x the largest LD loss rise
    for k in range(300):
        value, g = f.value_and_grad(theta_i)
        curve_i.append(value - loss0)
        if not np.isfinite(value) or value - loss0 > escape:
            break
        theta_i = theta_i - eta_identity * g + math.sqrt(eta_identity * args.sigma2) \
            * noise_gen.standard_normal(f.n_params)
    unstable.update(steps_run=len(curve_i), final_rise=float(curve_i[-1]), escape_level=escape,
                    escaped=bool(not np.isfinite(curve_i[-1]) or curve_i[-1] > escape))

    # --------------------------------------------------------------------- report
    pos = evals[evals > 0]
    ld_energy = _energy_at(evals, trace, ld.estimate)
    us_energy = _energy_at(evals, trace, us.estimate) if us is not None else None
    numerical = {f"{tol:g}": int(np.sum(evals > tol * evals[0])) for tol in (1e-3, 1e-6, 1e-9)}
    result = dict(
        benchmark="denoising", command=C.command_line("denoising", argv),
        machine=C.machine_description(), torch=torch.__version__,
        settings=dict(images=args.images, channels=args.channels, n_params=f.n_params,
                      sgd_epochs=epochs, gd_steps=gd_steps, adam_steps=1000, sigma2=args.sigma2,
                      n_steps=args.steps, n_chains=args.chains, seed=args.seed),
        minimum=dict(loss=float(loss0), grad_norm=grad_norm, lambda_max_H=float(evals[0]),
                     lambda_min_H=float(evals[-1]), trace_H=trace, hvp_rel_err=hvp_rel_err,
                     numerical_rank=numerical, positive_eigenvalues=int(pos.size)),
        ld=dict(estimate=ld.estimate, stderr=ld.stderr, rank=ld.rank, energy=ld_energy,
                gradient_evaluations=ld.matvecs, eta=ld.info["eta"],
                eta_lambda_max=ld.info["eta_lambda_max"], nonquadratic=ld.info["nonquadratic"],
                estimates_by_sigma2=ld.info["estimates"], stderrs_by_sigma2=ld.info["stderrs"],
                threshold=ld.threshold, warnings=[str(w.message) for w in caught]),
        us=None if us is None else dict(estimate=us.estimate, stderr=us.stderr, rank=us.rank,
                                        energy=us_energy, hessian_vector_products=us.matvecs,
                                        threshold=us.threshold),
        identity_preconditioner=unstable, timings_s=timings,
        paper=dict(ld_energy=0.985, ld_rank=133, us_energy=0.88, us_rank=34, n_params=753),
    )
    out = args.out
    C.write_json(out / "denoising.json", result)

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    cum = np.cumsum(evals) / trace
    ax.plot(np.arange(1, evals.size + 1), cum, color="tab:blue", label="Hessian (exact, AD)")
    ax.axvline(ld.estimate, color="black", label=f"LD (Adam G): {ld.estimate:.1f}, "
               f"{100 * ld_energy:.1f}% energy")
    if us is not None:
        ax.axvline(us.estimate, color="gray", ls="--",
                   label=f"U&S faithful: {us.estimate:.1f}, {100 * us_energy:.1f}% energy")
    ax.set_xlabel("index j")
    ax.set_ylabel("normalised cumulative eigenvalue sum")
    ax.set_title(f"Denoising CNN ({f.n_params} params), cf. paper Fig. 3")
    ax.set_xlim(0, evals.size)
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[1]
    steps_ld = np.arange(ld.info["loss_curve"].size)
    ax.semilogy(steps_ld, np.maximum(ld.info["loss_curve"], 1e-12), label="Adam G (LD run)")
    ax.semilogy(np.arange(len(curve_i)), np.maximum(np.abs(curve_i), 1e-12),
                label=f"G = I, eta = {eta_identity:.3g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("L(theta_t) - L(theta_0)")
    ax.set_title("G = I leaves the minimum (cf. paper Fig. 4)")
    ax.legend(fontsize=8)
    C.save_figure(fig, out / "denoising.png")

    rows = [["LD (Algorithm 1, Adam G)", f"{ld.estimate:.1f} ± {ld.stderr:.1f}",
             f"{100 * ld_energy:.2f} %", f"{ld.matvecs} gradients", "98.5 % (rank 133)"]]
    if us is not None:
        rows.append(["U&S faithful (Chebyshev, deg 50, 300 probes)", f"{us.estimate:.1f}",
                     f"{100 * us_energy:.2f} %", f"{us.matvecs} Hessian-vector products",
                     "88 % (rank 34)"])
    table = C.markdown_table(["method", "rank estimate", "energy captured", "cost",
                              "paper (DnCNN, 753 params)"], rows)
    md = f"""# Denoising CNN: Hessian rank from gradients only (paper Fig. 3 / Fig. 4)

Generated by `{result['command']}` on {C.machine_line(result['machine'])}.
Digits 8x8 (scikit-learn), {args.images} images + N(0, 1) noise, MSE; residual CNN with
{args.channels} channels, {f.n_params} parameters; SGD then full-batch GD to the minimum
(loss {loss0:.5f}, gradient norm {grad_norm:.2e}); Adam second moments from 1,000 steps with
beta_1 = 0. LD: sigma^2 = {args.sigma2:g} (and sigma^2/4 for the quadratic-regime check),
{args.chains} chains x {args.steps} steps, eta = {ld.info['eta']:.3g}
(eta lambda_max(G H) = {ld.info['eta_lambda_max']:.2f}).

{table}

Exact Hessian (automatic differentiation): lambda_max = {evals[0]:.3g}, trace = {trace:.3g},
{pos.size} positive eigenvalues; eigenvalues above 1e-3 / 1e-6 / 1e-9 of lambda_max:
{numerical['0.001']} / {numerical['1e-06']} / {numerical['1e-09']}.
Quadratic-regime check: estimates {ld.info['estimates'][0]:.1f} ± {ld.info['stderrs'][0]:.1f}
(sigma^2) and {ld.info['estimates'][1]:.1f} ± {ld.info['stderrs'][1]:.1f} (sigma^2/4):
nonquadratic = {ld.info['nonquadratic']}.

G = I at eta = {eta_identity:.3g} (Adam's step times the mean of G; eta lambda_max(H) =
{unstable['eta_lambda_max_H']:.2f}): left the minimum (loss rise above 100 sigma^2 P / 4 =
{escape:.3g}): {unstable['escaped']}, after {unstable['steps_run']} steps (loss rise
{unstable['final_rise']:.3g}).

![Fig. 3 / Fig. 4](figures/denoising.png)

Wall time: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}.
"""
    C.write_text(out / "denoising.md", md)
    if not args.no_docs and not args.quick:
        docs = C.REPO_ROOT / "docs"
        C.write_text(docs / "benchmarks_denoising.md", md)
        (docs / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "denoising.png", docs / "figures" / "denoising.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
