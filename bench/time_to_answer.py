"""Time to answer: lmatrank (auto, sketch) against scipy ID, numpy matrix_rank and eigvalsh.

``python -m bench time_to_answer [--quick] [--reps 3]`` times, in one run and
one process, every method on the same matrices and reports medians of
``--reps`` repetitions (taken round-robin, so slow spells of a shared machine
hit all methods alike), the ratio of each method's time to lmatrank's
``sketch`` (and ``auto``), and whether the answers agree with the truth.

Regimes: deep-linear-network Hessians at random global minima (d = 16, 32;
depth 5; rank d^2), low-rank-plus-floor operators (n = 2,000 and 20,000,
rank 200, eigenvalues ``geomspace(1, 1e-6)`` plus a diagonal floor of
``1e-13``; the truth, 200 at ``rtol = 1e-10``, follows from Weyl's inequality),
and a full-rank sparse 2-D Dirichlet Laplacian (n = 3,969). Every method counts
at the same relative threshold ``1e-10 |lambda|_max`` (lmatrank ``rtol``,
scipy ``eps``, ``matrix_rank(tol=...)``, the eigvalsh count), except the
linear nets, where lmatrank uses its default threshold (numpy's rule) and the
others 1e-10 (the nets' smallest nonzero eigenvalue is far above both).
``scipy.linalg.interpolative.estimate_rank`` returns the rank plus one on
exactly low-rank input (it stops one vector after the range is exhausted):
"agrees" accepts that. Dense methods are skipped where the dense matrix
exceeds ``--max-dense`` (default 6,000) rows; scipy ID and the sketch are
skipped on the full-rank case (both grow to ``n`` columns: ``O(n^3)`` work in
matrix products or Gram-Schmidt, minutes; ``auto`` is what answers there).

Writes ``bench/results/time_to_answer/time_to_answer.{json,md}`` and
``docs/benchmarks_time.md``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from . import _common as C

__all__ = ["main", "regimes"]

RTOL = 1e-10
METHODS = ("sketch", "auto", "scipy_id", "matrix_rank", "eigvalsh")


class _FloorOperator:
    """``G diag(lam) G^T / n + floor * diag(d)``: a low-rank operator plus a tiny full-rank floor."""

    def __init__(self, n, r, floor, seed):
        rng = np.random.default_rng(seed)
        self.G = rng.standard_normal((n, r)) / np.sqrt(n)
        self.lam = np.geomspace(1.0, 1e-6, r)
        self.d = floor * rng.uniform(0.5, 1.0, n)
        self.shape, self.dtype = (n, n), np.dtype(np.float64)

    def __matmul__(self, X):
        X = np.asarray(X)
        out = self.G @ (self.lam[:, None] * (self.G.T @ X)) if X.ndim == 2 else \
            self.G @ (self.lam * (self.G.T @ X))
        return out + (self.d[:, None] * X if X.ndim == 2 else self.d * X)

    def todense(self):
        return (self.G * self.lam) @ self.G.T + np.diag(self.d)


def regimes(quick=False):
    """(name, builder, truth, rtol for lmatrank, dense allowed) of each regime."""
    import scipy.sparse as sp

    from lmatrank.operators import LinearNetworkHessian

    def net(d):
        return lambda: LinearNetworkHessian.random_minimum(d, depth=5, rng=C.derive_seed(d, 5))

    def floor(n):
        return lambda: _FloorOperator(n, 200, 1e-13, C.derive_seed(n, 200))

    def laplacian(m):
        def build():
            t = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
            return sp.csr_array(sp.kronsum(t, t))
        return build

    if quick:
        return [("linear net d=8", net(8), 64, None), ("low rank + floor n=1000", floor(1000),
                                                          200, RTOL),
                ("2-D Laplacian n=400 (full rank)", laplacian(20), 400, RTOL)]
    return [("linear net d=16 (n=1,280)", net(16), 256, None),
            ("linear net d=32 (n=5,120)", net(32), 1024, None),
            ("low rank + floor n=2,000", floor(2000), 200, RTOL),
            ("low rank + floor n=20,000", floor(20000), 200, RTOL),
            ("2-D Laplacian n=3,969 (full rank)", laplacian(63), 3969, RTOL)]


def _dense(A):
    return A.toarray() if hasattr(A, "toarray") else np.asarray(A.todense())


def _run(method, A, dense, rtol, seed):
    import scipy.linalg.interpolative as sli

    import lmatrank
    from lmatrank.operators import as_operator

    if method in ("sketch", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
            est = lmatrank.estimate_rank(A, method=method, rng=seed, rtol=rtol)
        return est.rank, dict(interval=list(est.interval), converged=est.converged,
                              matvecs=est.matvecs, choice=est.info.get("choice"),
                              core=est.info.get("core") or (est.info.get("detail") or {}).get(
                                  "core"))
    if method == "scipy_id":
        op = as_operator(A, check_symmetry=False)
        return int(sli.estimate_rank(op.as_linear_operator(), RTOL, rng=seed)), dict(
            matvecs=op.matvecs)
    if method == "eigvalsh":
        w = np.linalg.eigvalsh(dense)
        return int(np.sum(np.abs(w) > RTOL * np.abs(w).max())), {}
    return int(np.linalg.matrix_rank(dense, rtol=RTOL, hermitian=True)), {}


def main(argv=None):
    parser = C.base_parser("time_to_answer", __doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--max-dense", type=int, default=6000)
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write benchmarks_time.md here (default: docs/ unless --quick)")
    args = parser.parse_args(list(argv or []))
    docs = args.docs if args.docs is not None else (None if args.quick else C.REPO_ROOT / "docs")
    methods = args.methods or list(METHODS)
    machine = C.machine_description()
    import os

    machine["blas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get(
        "OMP_NUM_THREADS") or "default"
    start = time.perf_counter()
    rows = []
    for name, build, truth, rtol in regimes(args.quick):
        A = build()
        n = A.shape[0]
        dense = _dense(A) if n <= args.max_dense else None
        full_rank = truth == n
        todo = [m for m in methods
                if not (m in ("matrix_rank", "eigvalsh") and dense is None)
                and not (m in ("scipy_id", "sketch") and full_rank)]
        times = {m: [] for m in todo}
        answers = {}
        for rep in range(args.reps):
            for m in todo:  # round-robin
                t0 = time.perf_counter()
                rank, extra = _run(m, A, dense, rtol if m in ("sketch", "auto") else RTOL,
                                   C.derive_seed(args.seed, name, rep))
                times[m].append(time.perf_counter() - t0)
                answers.setdefault(m, []).append(dict(rank=rank, **extra))
            C.progress(f"[{time.perf_counter() - start:7.1f}s] {name} rep {rep}: " + ", ".join(
                f"{m} {times[m][-1]:.2f}s r={answers[m][-1]['rank']}" for m in todo))
        med = {m: statistics.median(v) for m, v in times.items()}
        agree = {m: all(a["rank"] == truth or (m == "scipy_id" and a["rank"] == truth + 1)
                        for a in answers[m]) for m in todo}
        rows.append(dict(regime=name, n=n, truth=truth, median_s=med, times_s=times,
                         answers=answers, agrees=agree))
    elapsed = time.perf_counter() - start
    payload = dict(benchmark="time_to_answer", machine=machine, elapsed_s=elapsed,
                   config=dict(reps=args.reps, rtol=RTOL, quick=args.quick,
                               max_dense=args.max_dense, seed=args.seed),
                   command=C.command_line("time_to_answer", list(argv or [])), rows=rows)
    out = Path(args.out)
    C.write_json(out / "time_to_answer.json", payload)
    md = markdown(payload)
    C.write_text(out / "time_to_answer.md", md)
    if docs is not None:
        C.write_text(Path(docs) / "benchmarks_time.md", md)
    print(md)
    return 0


def markdown(payload):
    """The "Time to answer" page from the JSON payload."""
    headers = ["regime", "truth"] + [f"{m} s" for m in METHODS] + [
        "scipy ID / sketch", "scipy ID / auto", "eigvalsh / auto", "matrix_rank / auto",
        "answers agree"]
    table = []
    for row in payload["rows"]:
        med = row["median_s"]

        def ratio(a, b):
            return f"{med[a] / med[b]:.2f}x" if a in med and b in med else "-"

        cells = [row["regime"], C.fmt(row["truth"])]
        for m in METHODS:
            if m in med:
                ranks = sorted({a["rank"] for a in row["answers"][m]})
                cells.append(f"{med[m]:.2f} (r={'/'.join(str(r) for r in ranks)})")
            else:
                cells.append("-")
        cells += [ratio("scipy_id", "sketch"), ratio("scipy_id", "auto"),
                  ratio("eigvalsh", "auto"), ratio("matrix_rank", "auto"),
                  "yes" if all(row["agrees"].values()) else
                  "no: " + ", ".join(m for m, ok in row["agrees"].items() if not ok)]
        table.append(cells)
    cfg = payload["config"]
    return (
        "# Time to answer\n\n"
        f"Machine: {C.machine_line(payload['machine'])}; BLAS threads: "
        f"{payload['machine'].get('blas_threads', 'default')}.\n\n"
        f"Command: `{payload['command']}`; medians of {cfg['reps']} repetitions taken "
        "round-robin in one process (seconds; `r=` the answers over the repetitions). "
        "Ratios > 1 mean lmatrank is faster. Thresholds: `1e-10 |lambda|_max` for every method "
        "(lmatrank on the linear nets: its default, numpy's rule); scipy's "
        "`interpolative.estimate_rank` (through a `LinearOperator`) reports rank + 1 on exactly "
        "low-rank input, which counts as agreeing. `-`: not run (dense matrix above "
        f"{cfg['max_dense']:,} rows, or scipy ID and the sketch on the full-rank case). Total run time "
        f"{payload['elapsed_s'] / 60:.1f} min.\n\n"
        + C.markdown_table(headers, table))


if __name__ == "__main__":
    raise SystemExit(main())
