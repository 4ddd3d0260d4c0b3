"""Held-in matrix families with known rank: every method on the same operators.

Families (ground truth: the count of dense ``eigvalsh`` eigenvalues above the
threshold, n <= 5000, checked against the construction):

- ``laplacian_components``: graph Laplacian of a random graph with several
  connected components (sparse; rank ``n - #components``, components from
  :func:`scipy.sparse.csgraph.connected_components`);
- ``laplacian_grid``: 2-D grid Laplacian (sparse; rank ``n - 1``, smallest nonzero
  eigenvalue ~ 3e-3 lambda_max);
- ``gram_noise_floor``: ``U diag(s) U^T`` with ``s`` spread over two decades plus a
  full-rank noise floor ~1e-9 of lambda_max; counted with ``rtol=1e-6`` (above the
  floor) by every method;
- ``lowrank_r<r>``: exactly low-rank ``G G^T`` (``G`` Gaussian n x r), given as a
  factored LinearOperator, r in {10, 100, 1000} -- the exactness check of
  ``method="sketch"`` (r = 1000 runs only the product-frugal methods);
- ``kronecker``: :class:`lmatrank.operators.KroneckerProduct` of two low-rank PSD
  factors (rank = product of the factor ranks);
- ``indefinite``: ``U diag(s) U^T`` with eigenvalues of both signs.

Automatic thresholds (``rtol=None``) everywhere except ``gram_noise_floor``; the
truth for ``rtol=None`` is numpy's ``matrix_rank`` convention
(``|lambda| > |lambda|_max n eps``). Each method is run ``--repeats`` times with
independent seeds on the same operator. Writes ``families.json``,
``families.md`` and ``families.png``.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import _common as C

__all__ = ["main", "build_families", "Family"]


@dataclasses.dataclass
class Family:
    name: str
    description: str
    operator: object           # what estimate_rank receives
    dense: np.ndarray          # for the eigvalsh ground truth (n <= 5000)
    construction_rank: int     # rank known from the construction
    rtol: float | None = None
    methods: tuple | None = None   # None: all


def _factored(U, s):
    """``U diag(s) U^T`` as a LinearOperator (products cost O(n r))."""
    from scipy.sparse.linalg import LinearOperator

    n = U.shape[0]
    return LinearOperator((n, n), matvec=lambda x: U @ (s * (U.T @ x)),
                          matmat=lambda X: U @ (s[:, None] * (U.T @ X)),
                          rmatvec=lambda x: U @ (s * (U.T @ x)), dtype=np.float64)


def _orthonormal(rng, n, r):
    Q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return Q


def _random_components_laplacian(rng, sizes, degree):
    import scipy.sparse as sp
    from scipy.sparse import csgraph

    blocks = []
    for m in sizes:
        upper = sp.random(m, m, density=min(1.0, degree / m), random_state=rng,
                          data_rvs=lambda k: rng.uniform(0.5, 2.0, k))
        upper = sp.triu(upper, k=1)
        # a path keeps each block connected, so the component count is known by design
        path = sp.diags(rng.uniform(0.5, 2.0, m - 1), 1, shape=(m, m))
        blocks.append(upper + path)
    adj = sp.block_diag(blocks, format="csr")
    adj = adj + adj.T
    n_comp, _ = csgraph.connected_components(adj, directed=False)
    lap = csgraph.laplacian(adj).tocsr()
    return lap, int(n_comp)


def _grid_laplacian(side):
    import scipy.sparse as sp

    path = sp.diags([np.ones(side - 1), np.ones(side - 1)], [-1, 1], shape=(side, side))
    eye = sp.identity(side)
    adj = sp.kron(path, eye) + sp.kron(eye, path)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    return (sp.diags(deg) - adj).tocsr()


def build_families(seed, quick=False):
    """The list of :class:`Family` (deterministic in `seed`)."""
    from lmatrank.operators import KroneckerProduct

    rng = np.random.default_rng(C.derive_seed(seed, "families"))
    fams = []

    sizes = [40, 30, 20] if quick else [300, 200, 150, 100]
    lap, n_comp = _random_components_laplacian(rng, sizes, degree=6)
    fams.append(Family("laplacian_components",
                       f"random weighted graph, {n_comp} components, n = {lap.shape[0]} (sparse)",
                       lap, lap.toarray(), lap.shape[0] - n_comp))

    side = 8 if quick else 30
    grid = _grid_laplacian(side)
    fams.append(Family("laplacian_grid", f"{side} x {side} grid Laplacian (sparse)",
                       grid, grid.toarray(), grid.shape[0] - 1))

    n, r = (150, 20) if quick else (1500, 200)
    U = _orthonormal(rng, n, r)
    s = np.logspace(0, -2, r)
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    floor = 1e-9 * (W @ W.T) / 4.0
    gram = U @ (s[:, None] * U.T) + floor
    gram = 0.5 * (gram + gram.T)
    fams.append(Family("gram_noise_floor",
                       f"rank-{r} Gram (eigenvalues 1..1e-2) + full-rank floor ~1e-9, n = {n}, "
                       "rtol = 1e-6", gram, gram, r, rtol=1e-6))

    n_low = 200 if quick else 2000
    for r in ((5, 50) if quick else (10, 100, 1000)):
        G = rng.standard_normal((n_low, r))
        heavy = r >= 1000
        op = _factored(G, np.ones(r))
        fams.append(Family(f"lowrank_r{r}", f"exactly rank-{r} G G^T, n = {n_low} (factored)",
                           op, G @ G.T, r,
                           methods=("sketch", "scipy", "exact", "slq") if heavy else None))

    ma, ra, mb, rb = (10, 4, 8, 3) if quick else (60, 20, 50, 30)
    A = rng.standard_normal((ma, ra))
    B = rng.standard_normal((mb, rb))
    A, B = A @ A.T, B @ B.T
    kron = KroneckerProduct(A, B)
    fams.append(Family("kronecker", f"A kron B, A {ma}x{ma} rank {ra}, B {mb}x{mb} rank {rb}, "
                       f"n = {ma * mb} (matrix-free)", kron, np.kron(A, B), ra * rb))

    n, r = (150, 30) if quick else (1500, 300)
    U = _orthonormal(rng, n, r)
    s = rng.uniform(0.1, 1.0, r) * rng.choice([-1.0, 1.0], r)
    fams.append(Family("indefinite", f"rank {r}, {int((s > 0).sum())} positive / "
                       f"{int((s < 0).sum())} negative eigenvalues, n = {n} (factored)",
                       _factored(U, s), U @ (s[:, None] * U.T), r))
    return fams


def ground_truth(fam):
    lam = np.linalg.eigvalsh(fam.dense)
    top = np.abs(lam).max()
    if fam.rtol is not None:
        tol = fam.rtol * top
    else:
        tol = top * fam.dense.shape[0] * np.finfo(np.float64).eps
    return int(np.sum(np.abs(lam) > tol)), float(tol)


def _figure(summaries, fams, specs, path):
    plt = C.pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8))
    names = [f.name for f in fams]
    width = 0.8 / max(1, len(specs))
    for i, spec in enumerate(specs):
        xs, ys = [], []
        for j, name in enumerate(names):
            row = next((s for s in summaries if s["family"] == name and s["method"] == spec.key),
                       None)
            if row is not None and np.isfinite(row["bias_pct"]):
                xs.append(j + (i - (len(specs) - 1) / 2) * width)
                ys.append(row["bias_pct"])
        ax.bar(xs, ys, width=width, label=spec.label)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("mean relative error % (symlog)")
    ax.set_title("Rank estimates on held-in matrix families")
    ax.legend(fontsize=7, ncol=4)
    ax.grid(axis="y", alpha=0.3)
    return C.save_figure(fig, path)


def main(argv=None):
    argv = list(argv or [])
    parser = C.base_parser("families", __doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help="independent seeds per method and matrix (default 2; quick 1)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 2)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    specs = C.available_roster(C.FAMILY_METHODS, only=args.methods, log=C.progress)
    if not specs:
        parser.error("no method to run")
    machine = C.machine_description()
    command = C.command_line("families", argv)
    start = time.perf_counter()
    fams = build_families(args.seed, quick=args.quick)
    # compile kernels / import lazily loaded modules outside the timings
    warm = np.diag([2.0, 1.0, 0.0, 0.0])
    for spec in specs:
        C.run_estimate(spec, warm, 0)

    records, fam_info = [], []
    for fam in fams:
        truth, tol = ground_truth(fam)
        fam_info.append(dict(name=fam.name, description=fam.description, n=fam.dense.shape[0],
                             truth=truth, construction_rank=fam.construction_rank,
                             threshold=tol, rtol=fam.rtol))
        if truth != fam.construction_rank:
            C.progress(f"note: {fam.name}: eigvalsh count {truth} differs from the construction "
                       f"rank {fam.construction_rank}; the eigvalsh count is the truth")
        for spec in specs:
            if fam.methods is not None and spec.key not in fam.methods:
                continue
            for rep in range(repeats):
                rec = C.run_estimate(spec, fam.operator, C.derive_seed(args.seed, fam.name,
                                                                        spec.key, rep),
                                     rtol=fam.rtol)
                rec.update(family=fam.name, method=spec.key, repeat=rep, truth=truth)
                records.append(rec)
            C.progress(f"[{time.perf_counter() - start:7.1f}s] {fam.name} {spec.key}: " + ", ".join(
                f"{r['estimate']:.1f}" for r in records[-repeats:]) + f" (true {truth})")
    elapsed = time.perf_counter() - start

    summaries = []
    for fam in fams:
        for spec in specs:
            recs = [r for r in records if r["family"] == fam.name and r["method"] == spec.key]
            if recs:
                summaries.append(dict(family=fam.name, method=spec.key, label=spec.label,
                                      **C.summarise(recs)))
    statistical = {s.key: s.statistical for s in specs}
    rows = [[s["family"], s["label"], f"{C.fmt(s['mean_estimate'])} / {s['mean_truth']:.0f}",
             C.fmt(s["std_estimate"], 2), C.fmt(s["nrmse_pct"], 2), C.fmt(s["bias_pct"], 2),
             C.fmt(100 * s["exact_fraction"], 0),
             C.fmt(s["mean_stderr"], 2) if statistical[s["method"]] else "-",
             C.fmt(s["products"], 0), C.fmt(s["cpu_s"], 3), f"{s['n'] - s['failures']}/{s['n']}"]
            for s in summaries]
    md = "".join([
        "### Matrix families with known rank\n\n",
        f"Command: `{command}`  \n", f"Machine: {C.machine_line(machine)}  \n",
        f"Total run time: {elapsed / 60:.1f} min wall; {repeats} seed(s) per method.\n\n",
        C.markdown_table(["family", "n", "true rank (eigvalsh)", "threshold", "description"],
                         [[f["name"], f["n"], f["truth"], f"{f['threshold']:.3g}",
                           f["description"]] for f in fam_info]),
        "\n",
        C.markdown_table(["family", "method", "mean estimate / true", "std across seeds",
                          "NRMSE %", "bias %", "exact rank %", "mean reported stderr",
                          "products / estimate", "CPU s / estimate", "runs (ok/run)"], rows),
        "\nFailed runs (an error instead of a number) are counted in the last column; their "
        "messages are in `families.json`. `lowrank_r1000` runs only sketch, SLQ, scipy and exact "
        "(the others would spend ~1e5 products of cost O(n r) each).\n\n",
        "![families](families.png)\n",
    ])
    out = args.out
    C.write_json(out / "families.json", dict(benchmark="families", command=command,
                                             machine=machine, elapsed_s=elapsed, repeats=repeats,
                                             families=fam_info, summaries=summaries,
                                             records=records))
    C.write_text(out / "families.md", md)
    _figure(summaries, fams, specs, out / "families.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
