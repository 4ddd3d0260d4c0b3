"""Scale benchmark: grid Laplacians with n = 1e5 .. 1e7 through the Numba backend.

Usage::

    python -m bench scale [--quick] [--cases 3d:46,2d:316] [--settings default,tuned]
                          [--threads 2] [--out bench/results/scale] [--docs docs]

Matrices: the graph Laplacian of the ``m x m`` (2-D, 5-point) and ``m x m x m``
(3-D, 7-point) grid, i.e. the finite-difference Laplacian with homogeneous
Neumann boundary conditions, ``L = sum_d I x .. x L_1 x .. x I`` (Kronecker
sum) with ``L_1`` the path Laplacian (``tridiag(-1, 2, -1)`` with corner
entries 1). It is built as CSR with int32 indices and float64 values.

Truth, exact: ``L_1`` has the eigenvalues ``mu_k = 2 - 2 cos(pi k / m)``,
``k = 0 .. m-1`` (eigenvectors ``cos(pi k (j + 1/2) / m)``), so the eigenvalues of
``L`` are the sums ``mu_i + mu_j (+ mu_k)`` over all index tuples: one zero
(the constant vector), rank ``n - 1``, ``lambda_max = d (2 + 2 cos(pi / m))``,
smallest nonzero eigenvalue ``mu_1 = 2 - 2 cos(pi / m)``. The count above any
threshold is obtained exactly from the sorted ``mu`` (:func:`exact_count`), no
``eigvalsh``. numpy's default threshold ``n eps lambda_max`` is far below
``mu_1``, so the truth there is ``n - 1``.

Every case runs in a fresh subprocess (``--worker``) so that its peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: it includes the Numba and
scipy buffers that ``tracemalloc`` does not see) belongs to that case alone. The
worker first runs the same call on a tiny grid (loads the compiled kernels), then
builds the matrix (build time and memory recorded) and times
``lmatrank.estimate_rank(A, method="langevin", backend="numba", rng=seed, **settings)``.

Settings: ``default`` (the estimator's defaults: numpy's threshold, 20,000
products) and ``tuned`` (the options in :data:`TUNED`, found with this benchmark).

Roofline: each BAOAB step streams the CSR arrays (8 + 4 bytes per nonzero, 4 per
row) and the chain state once (positions read and written, momenta read and
written: ``4 x 8 x n`` bytes per chain); a Lanczos step streams the matrix, about
twelve vectors and, for its full reorthogonalisation, the stored basis twice
(:func:`lanczos_bytes`). The bytes of the whole run divided by its time, over the
bandwidth this machine reaches on a triad (``a = b + s c``, best of several
repetitions on arrays far larger than the caches, counted STREAM-like: bytes of
the arrays read and written, no write-allocate traffic), measured both with numpy
(two passes: ``a = s c``, ``a += b``, five array streams) and with a Numba
parallel loop on the same threads (three streams), is the fraction of the
roofline reached; the larger of the two bandwidths is the roofline.

Writes ``scale.json``, ``scale.md`` and ``scale.png`` to ``--out`` and, unless
``--quick``, ``benchmarks_scale.md`` / ``benchmarks_scale.png`` to ``--docs``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import _common as C

__all__ = ["main", "path_eigenvalues", "exact_count", "grid_laplacian", "numpy_threshold",
           "case_record", "parse_cases", "TUNED", "FULL", "QUICK", "matrix_bytes", "step_bytes",
           "lambda_max", "lanczos_bytes", "run_bytes"]

NAME = "scale"
EPS = float(np.finfo(np.float64).eps)

#: options of the "tuned" runs, per grid dimension: see docs/benchmarks_scale.md for how
#: they were chosen (measured with this benchmark).
TUNED = {
    3: dict(n_chains=2, max_matvecs=500, lanczos_steps=30),
    2: dict(n_chains=2, max_matvecs=500, lanczos_steps=30),
}
#: (dimension, m): n = m**d
FULL = dict(cases=((3, 46), (3, 100), (2, 316), (2, 1000), (3, 215), (2, 3162)),   # 1e7 last
            settings=("default", "tuned"),
            # the default settings (20,000 products of 8 chains) would take ~15 min per
            # 1e7 case on 2 cores: they run up to this n
            default_max_n=2_000_000, bandwidth_elems=1 << 25, bandwidth_reps=7)
QUICK = dict(cases=((3, 22), (3, 46), (2, 100), (2, 316)), settings=("tuned",),
             default_max_n=0, bandwidth_elems=1 << 22, bandwidth_reps=3)


# ---------------------------------------------------------------- matrices and truth

def path_eigenvalues(m):
    """Eigenvalues ``2 - 2 cos(pi k / m)``, k = 0..m-1, of the path Laplacian (ascending)."""
    if m < 2:
        raise ValueError(f"m must be >= 2, got {m}")
    k = np.arange(m, dtype=np.float64)
    return 2.0 - 2.0 * np.cos(np.pi * k / m)


def exact_count(m, dim, threshold):
    """Number of eigenvalues of the ``dim``-D ``m``-grid Laplacian above `threshold`.

    The eigenvalues are the sums of ``dim`` path eigenvalues; for every tuple of the
    first ``dim - 1`` indices the last index is counted by a binary search.
    """
    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3, got {dim}")
    mu = path_eigenvalues(m)
    partial = np.zeros(1)
    for _ in range(dim - 1):
        partial = (partial[:, None] + mu[None, :]).ravel()
    below = np.searchsorted(mu, threshold - partial, side="right")   # mu_k <= thr - partial
    return int(partial.size * m - below.sum())


def lambda_max(m, dim):
    return dim * float(path_eigenvalues(m)[-1])


def numpy_threshold(m, dim):
    """numpy.linalg.matrix_rank's default tolerance ``sigma_max * n * eps`` for this matrix."""
    return lambda_max(m, dim) * m ** dim * EPS


def _path_laplacian(m):
    import scipy.sparse as sp

    main = np.full(m, 2.0)
    main[0] = main[-1] = 1.0
    off = -np.ones(m - 1)
    return sp.diags([off, main, off], [-1, 0, 1], format="csr", dtype=np.float64)


def _int32(A):
    A.indices = A.indices.astype(np.int32, copy=False)
    A.indptr = A.indptr.astype(np.int32, copy=False)
    return A


def grid_laplacian(m, dim):
    """CSR (int32 indices, float64) graph Laplacian of the ``dim``-D grid with side `m`.

    Built as a Kronecker sum one dimension at a time, ``L_d = L_{d-1} x I + I x L_1``,
    so that no more than two terms of the final size exist at once.
    """
    import scipy.sparse as sp

    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3, got {dim}")
    if m ** dim >= 2 ** 31 or 7 * m ** dim >= 2 ** 31:
        raise ValueError(f"m={m}, dim={dim}: too large for int32 CSR indices")
    L1 = _path_laplacian(m)
    L = L1
    for d in range(1, dim):
        eye_small = sp.identity(m, format="csr", dtype=np.float64)
        eye_big = sp.identity(m ** d, format="csr", dtype=np.float64)
        left = _int32(sp.kron(L, eye_small, format="csr"))
        right = _int32(sp.kron(eye_big, L1, format="csr"))
        del L
        L = _int32((left + right).tocsr())
        del left, right
    L.sort_indices()
    return L


def matrix_bytes(n, nnz):
    """Bytes of the CSR arrays: float64 values, int32 column indices and row pointers."""
    return 12 * nnz + 4 * (n + 1)


def step_bytes(n, nnz, chains):
    """Bytes one BAOAB step of `chains` chains streams: the matrix and the state once."""
    return matrix_bytes(n, nnz) + 4 * 8 * n * chains


def lanczos_bytes(n, nnz, steps):
    """Bytes ``steps`` Lanczos steps with full reorthogonalisation stream: the matrix and
    about 12 vectors per step, plus one Gram-Schmidt pass over the stored basis (read
    twice: ``Q w`` and ``Q^T (Q w)``), ``2 k`` vectors at step ``k``."""
    return steps * matrix_bytes(n, nnz) + (steps * (steps + 1) + 12 * steps) * 8 * n


def run_bytes(n, nnz, chains, steps, lanczos):
    """Bytes of a whole run: BAOAB steps, Lanczos, and 3 symmetry-probe products."""
    return (steps * step_bytes(n, nnz, chains) + lanczos_bytes(n, nnz, lanczos)
            + 3 * (matrix_bytes(n, nnz) + 3 * 8 * n))


# ---------------------------------------------------------------- the worker (one case)

def _maxrss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _estimate(A, seed, options):
    import warnings

    import lmatrank

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wall0, cpu0 = time.perf_counter(), time.process_time()
        est = lmatrank.estimate_rank(A, method="langevin", backend="numba", rng=seed,
                                     **options)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return est, wall, cpu, sorted({f"{w.category.__name__}: {w.message}" for w in caught})


def case_record(dim, m, options, seed, *, warm=True):
    """Run one case in this process; returns the record (see the module docstring)."""
    rss0 = _maxrss_mb()
    load_start = os.getloadavg()[0]
    warm_s = None
    if warm:   # load the compiled kernels (disk cache) on a tiny grid of the same kind
        t0 = time.perf_counter()
        small = dict(options)
        small["max_matvecs"] = 200
        _estimate(grid_laplacian(6, dim), seed, small)
        warm_s = time.perf_counter() - t0
    rss_warm = _maxrss_mb()
    t0 = time.perf_counter()
    A = grid_laplacian(m, dim)
    build_s = time.perf_counter() - t0
    rss_build = _maxrss_mb()
    n, nnz = A.shape[0], int(A.nnz)
    est, wall, cpu, warns = _estimate(A, seed, options)
    rss_peak = _maxrss_mb()
    info = est.info
    thr_np = numpy_threshold(m, dim)
    truth = exact_count(m, dim, thr_np)
    truth_at = exact_count(m, dim, float(est.threshold))
    chains = int(info.get("n_chains", 0))
    steps = int(info.get("n_steps", 0))
    lanczos = int(info.get("lanczos_matvecs") or 0)
    moved = run_bytes(n, nnz, chains, steps, lanczos)
    lo, hi = (int(v) for v in est.interval)
    return dict(
        dim=dim, m=m, n=n, nnz=nnz, options=options, seed=seed,
        matrix_mb=matrix_bytes(n, nnz) / 2 ** 20, build_s=build_s,
        rss_start_mb=rss0, rss_after_warmup_mb=rss_warm, rss_after_build_mb=rss_build,
        build_mb=rss_build - rss_warm, peak_rss_mb=rss_peak, warmup_s=warm_s,
        time_s=wall, cpu_s=cpu, matvecs=int(est.matvecs), n_chains=chains, n_steps=steps,
        lanczos_matvecs=lanczos, burn_in=info.get("burn_in"),
        rank=int(est.rank), estimate=float(est.estimate), stderr=float(est.stderr),
        interval=[lo, hi], converged=bool(est.converged), threshold=float(est.threshold),
        threshold_source=info.get("threshold_source"), resolution=float(est.resolution),
        stop_reason=info.get("stop_reason"), accuracy_met=info.get("accuracy_met"),
        resolved_count=[int(v) for v in info.get("resolved_count") or ()],
        h=info.get("h"), friction=info.get("friction"), lambda_max_run=info.get("lambda_max"),
        lambda_max_exact=lambda_max(m, dim), mu_1=float(path_eigenvalues(m)[1]),
        numpy_threshold=thr_np, truth=truth, truth_at_threshold=truth_at,
        rel_error_pct=100.0 * (est.rank - truth) / truth,
        estimate_error_pct=100.0 * (est.estimate - truth) / truth,
        truth_in_interval=bool(lo <= truth <= hi),
        truth_at_threshold_in_interval=bool(lo <= truth_at <= hi),
        bytes_streamed=moved, step_mb=step_bytes(n, nnz, chains) / 2 ** 20,
        seconds_per_step=wall / max(steps, 1), achieved_gbs=moved / wall / 1e9,
        warnings=[w[:400] for w in warns], backend=info.get("backend"),
        load_average=[load_start, os.getloadavg()[0]],
    )


# ---------------------------------------------------------------- bandwidth

def _bandwidth(elems, reps):
    """Best triad bandwidth (GB/s) with numpy (5 streams) and a parallel Numba loop (3)."""
    import numba

    @numba.njit(parallel=True, cache=False)
    def triad(a, b, c, s):
        for i in numba.prange(a.size):
            a[i] = b[i] + s * c[i]

    a = np.zeros(elems)
    b = np.ones(elems)
    c = np.full(elems, 2.0)
    best_np = best_nb = math.inf
    triad(a, b, c, 3.0)   # compile, touch pages
    for _ in range(reps):
        t0 = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        best_np = min(best_np, time.perf_counter() - t0)
        t0 = time.perf_counter()
        triad(a, b, c, 3.0)
        best_nb = min(best_nb, time.perf_counter() - t0)
    if not np.all(a == 7.0):
        raise RuntimeError("triad gave a wrong result")
    return dict(elems=elems, reps=reps, threads=numba.get_num_threads(),
                numpy_triad_gbs=5 * 8 * elems / best_np / 1e9,
                numba_triad_gbs=3 * 8 * elems / best_nb / 1e9)


def kernel_record(dim, m, chains, steps, seed, warm_steps=12):
    """Time `steps` BAOAB steps (product, noise, update, observable) of `chains` chains on
    the Numba backend alone, after `warm_steps` (compilation, the fused/two-pass choice)."""
    from lmatrank.backends import get_backend
    from lmatrank.langevin._dynamics import BaoabChains
    from lmatrank.operators import as_operator, as_preconditioner

    A = grid_laplacian(m, dim)
    n, nnz = A.shape[0], int(A.nnz)
    op = as_operator(A, check_symmetry=False)
    be = get_backend("numba", op)
    h = 1.9 / math.sqrt(lambda_max(m, dim))
    run = BaoabChains(op, be, n_chains=chains, h=h, friction=0.9, temperature=0.5,
                      precond=as_preconditioner(None, n, np.float64), noise="rademacher",
                      gen=np.random.default_rng(seed))
    run.advance(warm_steps)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run.advance(steps)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    per_step = step_bytes(n, nnz, chains)
    return dict(dim=dim, m=m, n=n, nnz=nnz, chains=chains, steps=steps,
                seconds_per_step=wall / steps, cpu_per_step=cpu / steps, step_mb=per_step / 2 ** 20,
                gbs=per_step * steps / wall / 1e9, load_average=os.getloadavg()[0],
                fused=str(be.sparse_plan(op).info.get("fuse")))


KERNEL_CHAINS = (2, 8)
KERNEL_STEPS = 20


def measure_kernels(result, threads, seed, log):
    """Per-step kernel timings for every grid of `result`, each in a fresh process."""
    grids = sorted({(r["dim"], r["m"]) for r in result["cases"] if not r.get("error")},
                   key=lambda g: (-g[0], g[1]))
    out = []
    for dim, m in grids:
        for chains in KERNEL_CHAINS:
            log(f"scale: kernel {dim}-D m={m}, {chains} chains, {KERNEL_STEPS} steps")
            rec = run_subprocess(dict(kind="kernel", dim=dim, m=m, chains=chains,
                                      steps=KERNEL_STEPS, seed=seed), threads)
            if not rec.get("error"):
                log(f"  {1e3 * rec['seconds_per_step']:.1f} ms per step, {rec['gbs']:.2f} GB/s")
            out.append(rec)
    return out


def _worker(spec):
    if spec["kind"] == "bandwidth":
        return _bandwidth(spec["elems"], spec["reps"])
    if spec["kind"] == "kernel":
        return kernel_record(spec["dim"], spec["m"], spec["chains"], spec["steps"], spec["seed"])
    return case_record(spec["dim"], spec["m"], spec["options"], spec["seed"],
                       warm=spec.get("warm", True))


def run_subprocess(spec, threads, timeout=None):
    """Run one worker spec in a fresh Python; returns its record (or an error record)."""
    env = dict(os.environ)
    env["NUMBA_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "bench.scale", "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(C.REPO_ROOT),
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, error=f"timed out after {timeout} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            record = json.loads(line)
            record["process_s"] = time.perf_counter() - t0
            return record
    return dict(spec, error=f"worker failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


# ---------------------------------------------------------------- report

def _label(rec):
    return f"{rec['dim']}-D {rec['m']}^{rec['dim']}"


def _options_text(options):
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in options.items()) or "(defaults)"


#: the targets of the 1e7 case: seconds, peak GB, |error| in percent
TARGET_SECONDS, TARGET_GB, TARGET_ERROR_PCT = 300.0, 16.0, 0.1


def targets(result):
    """Lines saying, for every case with n >= 5e6, which targets it met."""
    out = []
    for rec in result["cases"]:
        if rec.get("error") or rec["n"] < 5_000_000:
            continue
        checks = [(f"time {rec['time_s']:.0f} s <= {TARGET_SECONDS:.0f} s",
                   rec["time_s"] <= TARGET_SECONDS),
                  (f"peak memory {rec['peak_rss_mb'] / 1024:.2f} GB <= {TARGET_GB:.0f} GB",
                   rec["peak_rss_mb"] / 1024 <= TARGET_GB),
                  (f"|error| {abs(rec['rel_error_pct']):.4f}% <= {TARGET_ERROR_PCT}%",
                   abs(rec["rel_error_pct"]) <= TARGET_ERROR_PCT),
                  ("truth n - 1 inside the reported interval "
                   f"[{rec['interval'][0]:,}, {rec['interval'][1]:,}]", rec["truth_in_interval"]),
                  ("converged=True" if rec["converged"] else "converged=False",
                   rec["converged"])]
        text = "; ".join(f"{t}: {'met' if ok else '**not met**'}" for t, ok in checks)
        out.append(f"- {_label(rec)} (n = {rec['n']:,}), {rec['setting']}: {text}; "
                   f"{rec['matvecs']:,} products, "
                   f"{100 * rec['achieved_gbs'] / result['roofline_gbs']:.0f}% of the roofline.")
    return out


def observations(result):
    """Summary lines per settings: trivial intervals, coverage, convergence, budget use."""
    out = []
    ok = [r for r in result["cases"] if not r.get("error")]
    for setting in sorted({r["setting"] for r in ok}):
        recs = [r for r in ok if r["setting"] == setting]
        trivial = [r for r in recs if r["interval"] == [0, r["n"]]]
        out.append(
            f"- `{setting}`: {len(recs)} runs; truth inside the reported interval in "
            f"{sum(r['truth_in_interval'] for r in recs)}; converged in "
            f"{sum(r['converged'] for r in recs)}; trivial interval [0, n] in {len(trivial)}"
            + (" (" + ", ".join(_label(r) for r in trivial) + ")" if trivial else "")
            + f"; largest |error| {max(abs(r['rel_error_pct']) for r in recs):.4f}%; products "
            f"used / products allowed: "
            + ", ".join(f"{r['matvecs']:,}/{r['options'].get('max_matvecs', 20_000):,}"
                        for r in recs) + ".")
    shares = [(r, lanczos_bytes(r["n"], r["nnz"], r["lanczos_matvecs"]) / r["bytes_streamed"])
              for r in ok if r.get("bytes_streamed")]
    if shares:
        out.append("- share of the streamed bytes spent in the Lanczos estimate of lambda_max "
                   "(full reorthogonalisation): "
                   + ", ".join(f"{_label(r)} {r['setting']} {100 * f:.0f}%" for r, f in shares)
                   + ".")
    return out


def markdown(result, argv=None):
    bw = result["bandwidth"]
    roof = result["roofline_gbs"]
    lines = [
        "# Scale: grid Laplacians up to n = 1e7 (Numba backend)\n",
        f"Command: `{result['command']}`  \n"
        f"Machine: {C.machine_line(result['machine'])}; {result['threads']} Numba threads\n",
        "Graph Laplacians of the 2-D (5-point) and 3-D (7-point) grids with side `m` "
        "(finite differences with Neumann boundary, CSR, int32 indices, float64), built as "
        "Kronecker sums. Truth from the closed form: the eigenvalues are the sums of the path "
        "eigenvalues `2 - 2 cos(pi k / m)`, `k = 0..m-1`, so the count above any threshold is "
        "exact without `eigvalsh`; one zero eigenvalue, rank `n - 1` at numpy's default "
        "threshold `n eps lambda_max` (far below the smallest nonzero eigenvalue "
        "`2 - 2 cos(pi / m)`).\n",
        "Each case runs in a fresh process: `estimate_rank(A, method=\"langevin\", "
        "backend=\"numba\", rng=seed, **settings)`; peak memory is that process's `ru_maxrss` "
        "(Python, the libraries, the matrix build and the estimator's buffers); the compiled "
        "kernels were loaded before (a run on a 6-point grid). *error* is `(rank - (n - 1)) / "
        "(n - 1)`, against the truth at numpy's default threshold; *truth in interval* checks "
        "it against the interval lmatrank reports; *truth at threshold* is the exact count at "
        "the threshold lmatrank reports (equal to `n - 1` whenever that threshold is below the "
        "smallest nonzero eigenvalue).\n",
        f"Bandwidth (triad `a = b + s c`, {bw['elems']:,} float64 per array, best of "
        f"{bw['reps']}): numpy {bw['numpy_triad_gbs']:.1f} GB/s (two passes, 5 streams), Numba "
        f"parallel {bw['numba_triad_gbs']:.1f} GB/s ({bw['threads']} threads, 3 streams); "
        f"roofline {roof:.1f} GB/s. *Roofline* = bytes streamed by the run (every step: the "
        "CSR arrays plus positions and momenta read and written once per chain; Lanczos step "
        "`k`: the matrix, about 12 vectors and the `k` stored basis vectors read twice for the "
        "reorthogonalisation) / run time / roofline.\n",
        "## Settings\n",
    ]
    for key, opts in result["settings"].items():
        lines.append(f"- `{key}`: {opts}")
    lines.append(
        "\nThe tuned settings keep numpy's default threshold (no `rtol`/`atol`). At that "
        "threshold the estimator runs its product budget to the end, so `max_matvecs` sets "
        "the run length: the budget above is chosen so that the eigenvalues the run cannot "
        "place (the slowest modes, whose number is a fixed fraction of `n` for a given number "
        "of steps on these grids) stay well below the error target; two chains suffice for the "
        "sampling error at these `n` and stream far fewer bytes per step than the default "
        "chains; the shorter Lanczos estimate of `lambda_max` stores and re-reads fewer "
        "length-`n` basis vectors (its full reorthogonalisation keeps them all).\n")
    goal = targets(result)
    if goal:
        lines.append(f"## Targets at n ~ 1e7 (<= {TARGET_SECONDS:.0f} s, <= {TARGET_GB:.0f} GB, "
                     f"<= {TARGET_ERROR_PCT}% at numpy's default threshold)\n")
        lines.extend(goal)
        lines.append("")
    lines.append("## Results\n")
    rows = []
    for rec in result["cases"]:
        if rec.get("error"):
            rows.append([_label(rec), rec.get("setting", ""), "-", "-", "-", "-", "-", "-", "-",
                         "-", "-", "-", "-", rec["error"][:80]])
            continue
        rows.append([
            _label(rec), rec["setting"], f"{rec['n']:,}", C.fmt(rec["time_s"], 1),
            C.fmt(rec["peak_rss_mb"] / 1024, 2), f"{rec['matvecs']:,}",
            f"{rec['n_chains']} x {rec['n_steps']:,}", f"{rec['rel_error_pct']:+.4f}",
            f"[{rec['interval'][0]:,}, {rec['interval'][1]:,}]",
            "yes" if rec["truth_in_interval"] else "**no**",
            "yes" if rec["converged"] else "no",
            f"{rec['threshold']:.3g} ({rec['threshold_source']})",
            C.fmt(100 * rec["achieved_gbs"] / roof, 0), rec.get("stop_reason") or "",
        ])
    lines.append(C.markdown_table(
        ["grid", "settings", "n", "time s", "peak GB", "products", "chains x steps",
         "error %", "interval", "truth in interval", "converged", "threshold",
         "roofline %", "stop"], rows))
    lines.append("\n## Memory and bandwidth detail\n")
    rows = []
    for rec in result["cases"]:
        if rec.get("error"):
            continue
        rows.append([_label(rec), rec["setting"], f"{rec['nnz']:,}", C.fmt(rec["matrix_mb"], 0),
                     C.fmt(rec["build_s"], 2), C.fmt(rec["build_mb"], 0),
                     C.fmt(rec["peak_rss_mb"], 0), C.fmt(rec["step_mb"], 0),
                     C.fmt(1e3 * rec["seconds_per_step"], 1), C.fmt(rec["achieved_gbs"], 2),
                     C.fmt(rec["cpu_s"], 1),
                     " / ".join(f"{v:.1f}" for v in rec.get("load_average", ())),
                     f"{rec['resolution']:.3g}", f"{rec['mu_1']:.3g}",
                     f"{rec['truth_at_threshold']:,}",
                     f"{rec['estimate']:,.1f} +- {rec['stderr']:.1f}"])
    lines.append(C.markdown_table(
        ["grid", "settings", "nnz", "CSR MB", "build s", "build MB (rss)", "peak MB (rss)",
         "MB per step", "ms per step", "GB/s", "CPU s", "load before / after", "resolution",
         "mu_1", "truth at threshold", "estimate +- stderr"], rows))
    kernels = [k for k in result.get("kernels", ()) if not k.get("error")]
    if kernels:
        lines.append("\n## Per-step kernel alone\n")
        km = result.get("kernels_machine")
        lines.append((f"Machine: {C.machine_line(km)}\n\n" if km else "")
                     + f"`{result.get('kernels_command', '')}`: {KERNEL_STEPS} BAOAB steps "
                     "(fused CSR product, noise, update and observable, Numba backend) timed "
                     "after warm-up steps, in a fresh process per row; *CPU-normalised* is the "
                     "bandwidth at the CPU time the process got (bytes / CPU seconds x threads): "
                     "what the same work reaches when its threads are not waiting for the "
                     "cores other processes hold (an estimate; spinning threads count as busy, "
                     "so it errs low). Both columns were measured on a shared machine (load "
                     "average in the last column): above 100% where the triad, measured under "
                     "the same load, understates the bandwidth, or where the matrix and state fit "
                     "in the caches; neither is an uncontended measurement.\n")
        rows = [[f"{k['dim']}-D {k['m']}^{k['dim']}", f"{k['n']:,}", k["chains"],
                 C.fmt(k["step_mb"], 0), C.fmt(1e3 * k["seconds_per_step"], 1),
                 C.fmt(k["gbs"], 2), C.fmt(100 * k["gbs"] / roof, 0),
                 C.fmt(k["gbs"] * k["seconds_per_step"] / max(k["cpu_per_step"], 1e-12)
                       * result["threads"], 2),
                 C.fmt(100 * k["gbs"] * k["seconds_per_step"] / max(k["cpu_per_step"], 1e-12)
                       * result["threads"] / roof, 0),
                 f"{k['load_average']:.1f}"] for k in kernels]
        lines.append(C.markdown_table(
            ["grid", "n", "chains", "MB per step", "ms per step", "GB/s", "roofline %",
             "CPU-normalised GB/s", "CPU-normalised roofline %", "load"], rows))
    lines.append("\n## Observations (computed from the records above)\n")
    lines.extend(observations(result))
    notes = [rec for rec in result["cases"] if rec.get("warnings")]
    if notes:
        lines.append("\n## Warnings lmatrank gave\n")
        for rec in notes:
            for w in rec["warnings"]:
                lines.append(f"- {_label(rec)}, {rec['setting']}: {w}")
    lines.append("\n![Scale](scale.png)\n")
    return "\n".join(lines)


def figure(result, path):
    plt = C.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    roof = result["roofline_gbs"]
    styles = {(3, "default"): ("tab:blue", "o--"), (3, "tuned"): ("tab:blue", "o-"),
              (2, "default"): ("tab:red", "s--"), (2, "tuned"): ("tab:red", "s-")}
    panels = [("time_s", "time to answer (s)", 1.0), ("peak_rss_mb", "peak memory (GB)", 1 / 1024),
              ("rel_error_pct", "|error| vs n - 1 (%)", 1.0),
              ("achieved_gbs", "fraction of the bandwidth roofline", 1 / roof)]
    for ax, (key, label, scale) in zip(axes.ravel(), panels):
        for (dim, setting), (color, style) in styles.items():
            recs = [r for r in result["cases"] if not r.get("error") and r["dim"] == dim
                    and r["setting"] == setting]
            if not recs:
                continue
            x = [r["n"] for r in recs]
            y = [abs(r[key]) * scale for r in recs]
            if key == "rel_error_pct":
                y = [max(v, 1e-5) for v in y]
            ax.plot(x, y, style, color=color, label=f"{dim}-D, {setting}")
        ax.set_xscale("log")
        if key != "achieved_gbs":
            ax.set_yscale("log")
        ax.set_xlabel("n")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[1, 0].axhline(0.1, color="gray", lw=0.8, ls=":")
    axes[0, 1].axhline(16, color="gray", lw=0.8, ls=":")
    axes[0, 0].axhline(300, color="gray", lw=0.8, ls=":")
    fig.suptitle("grid Laplacians, langevin (BAOAB), Numba backend")
    fig.tight_layout()
    C.save_figure(fig, path)


def parse_cases(text):
    """``'3d:46,2d:316'`` -> ``[(3, 46), (2, 316)]``."""
    cases = []
    for item in text.split(","):
        dim, _, m = item.partition(":")
        if dim not in ("2d", "3d") or not m.isdigit():
            raise ValueError(f"bad case {item!r}: expected e.g. 3d:46 or 2d:316")
        cases.append((int(dim[0]), int(m)))
    return cases


def main(argv=None):
    argv = [] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:
        print(json.dumps(_worker(json.loads(argv[1])), default=C._json_default), flush=True)
        return 0
    parser = C.base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write benchmarks_scale.md/png here (default: docs/ unless "
                             "--quick)")
    parser.add_argument("--cases", type=parse_cases, default=None,
                        help="comma-separated grids, e.g. 3d:46,2d:316 (n = m^d)")
    parser.add_argument("--settings", type=lambda s: tuple(x for x in s.split(",") if x),
                        default=None, help="default,tuned")
    parser.add_argument("--threads", type=int, default=2, help="Numba threads (default 2)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds per case before the worker is stopped")
    parser.add_argument("--render", type=Path, default=None,
                        help="only rewrite the Markdown and figures from this scale.json")
    parser.add_argument("--kernels", action="store_true",
                        help="with --render: (re)measure the per-step kernel of every grid of "
                             "that file and store it there")
    args = parser.parse_args(argv)
    if args.kernels and args.render is None:
        raise ValueError("--kernels needs --render FILE (the results it is added to)")
    if args.render is not None:
        result = json.loads(Path(args.render).read_text())
        if args.kernels:
            result["kernels"] = measure_kernels(result, args.threads, args.seed, C.progress)
            result["kernels_command"] = C.command_line(NAME, argv)
            result["kernels_machine"] = C.machine_description()
            C.write_json(args.render, result)
        docs = args.docs if args.docs is not None else (
            None if "--quick" in result["command"] else C.REPO_ROOT / "docs")
        _write(result, Path(args.out), docs)
        return 0
    cfg = dict(QUICK if args.quick else FULL)
    cases = args.cases or cfg["cases"]
    settings = args.settings or cfg["settings"]
    for s in settings:
        if s not in ("default", "tuned"):
            raise ValueError(f"unknown settings {s!r}: expected default or tuned")
    docs = args.docs if args.docs is not None else (None if args.quick else C.REPO_ROOT / "docs")
    log = C.progress
    tuned = {dim: dict(opts) for dim, opts in TUNED.items()}
    if "max_matvecs" in cfg:
        for opts in tuned.values():
            opts["max_matvecs"] = cfg["max_matvecs"]
    result = dict(machine=C.machine_description(), command=C.command_line(NAME, argv),
                  threads=args.threads, config={k: v for k, v in cfg.items()},
                  settings={"default": "(estimator defaults)",
                            **{f"tuned {d}-D": _options_text(o) for d, o in tuned.items()}})
    log(f"scale: triad bandwidth ({cfg['bandwidth_elems']:,} float64 per array)")
    bw = run_subprocess(dict(kind="bandwidth", elems=cfg["bandwidth_elems"],
                             reps=cfg["bandwidth_reps"]), args.threads)
    if bw.get("error"):
        raise RuntimeError(bw["error"])
    result["bandwidth"] = bw
    result["roofline_gbs"] = max(bw["numpy_triad_gbs"], bw["numba_triad_gbs"])
    log(f"  numpy {bw['numpy_triad_gbs']:.1f} GB/s, numba {bw['numba_triad_gbs']:.1f} GB/s")
    records = []
    for dim, m in cases:
        for setting in settings:
            if setting == "default" and m ** dim > cfg["default_max_n"]:
                continue
            options = {} if setting == "default" else tuned[dim]
            spec = dict(kind="case", dim=dim, m=m, options=options,
                        seed=C.derive_seed(args.seed, dim, m))
            log(f"scale: {dim}-D m={m} (n={m ** dim:,}), {setting}: {_options_text(options)}")
            rec = run_subprocess(spec, args.threads, timeout=args.timeout)
            rec["setting"] = setting
            records.append(rec)
            if rec.get("error"):
                log(f"  ERROR {rec['error'][:300]}")
            else:
                log(f"  {rec['time_s']:.1f} s, peak {rec['peak_rss_mb']:.0f} MB, "
                    f"{rec['matvecs']:,} products, rank {rec['rank']:,} "
                    f"(error {rec['rel_error_pct']:+.4f}%), interval {rec['interval']}, "
                    f"converged {rec['converged']}, "
                    f"roofline {100 * rec['achieved_gbs'] / result['roofline_gbs']:.0f}%")
    result["cases"] = sorted(records, key=lambda r: (-r["dim"], r["m"], r["setting"]))
    C.write_json(Path(args.out) / "scale.json", result)
    _write(result, Path(args.out), docs)
    return 0


def _write(result, out, docs):
    for rec in result["cases"]:   # the byte model of this version of the benchmark
        if not rec.get("error"):
            rec["bytes_streamed"] = run_bytes(rec["n"], rec["nnz"], rec["n_chains"],
                                              rec["n_steps"], rec["lanczos_matvecs"])
            rec["achieved_gbs"] = rec["bytes_streamed"] / rec["time_s"] / 1e9
    C.publish("scale", markdown(result), lambda path: figure(result, path), out, docs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
