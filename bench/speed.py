"""Speed benchmark: numpy reference vs Numba backend, per Langevin step.

Usage::

    python -m bench speed [--quick] [--out bench/results/speed] [--docs docs]

For each operator family, dtype and block width ``b`` (chains) it times, in
one run and on the same operator, the median of ``--reps`` repetitions of:

- ``numpy step``: the reference step, ``S @ theta`` by scipy/numpy/BLAS plus
  :meth:`NumpyBackend.em_update` (Rademacher noise, the default);
- ``numba EM`` / ``numba BAOAB``: :meth:`NumbaBackend.em_step` /
  :meth:`NumbaBackend.baoab_step` as the estimator calls them (``fuse="auto"``:
  for sparse operators the faster of the fused kernel and the two-pass step,
  chosen by the backend's own timing on its first calls); dense and structured
  operators: their BLAS product followed by the Numba update kernel;
- ``EM fused`` / ``EM two-pass`` (sparse only): the two variants forced
  (``fuse=True``: one kernel for product, noise, update and float64
  observables; ``fuse=False``: the product kernel, then the update kernel);
- ``scipy product`` / ``numba product``: the bare block product;
- the copy bandwidth of numpy (one thread) and of a parallel Numba copy (all
  threads), measured in the same run on a 256 MB array.

Families: 2-D grid Laplacian (5-point, Neumann boundary, rank n - 1), random
graph Laplacian (average degree 10), dense random PSD matrix, deep linear
network Hessian (depth 5, width d). Plus the first-call compile time of the
kernels (fresh cache and cache hit, in subprocesses), and end-to-end
``estimate_rank`` runs on the grid Laplacian to 1% relative standard error with
each backend (each in its own subprocess, reporting peak resident memory and
the resident memory over the steps).

Writes ``speed.json``, ``speed.md`` and ``speed.png`` to ``--out`` and, unless
``--quick``, ``benchmarks_speed.md`` / ``benchmarks_speed.png`` to ``--docs``.
Timings on a shared machine are noisy; ratios measured in one run are what
this benchmark reports.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

if __package__ in (None, ""):  # python bench/speed.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

from . import _common as C  # noqa: E402

from lmatrank.backends import NumbaBackend, NumpyBackend  # noqa: E402
from lmatrank.backends._numba import FUSE_TRIALS  # noqa: E402
from lmatrank.operators import as_operator, as_preconditioner  # noqa: E402

NAME = "speed"

FULL = dict(grid_side=1000, random_n=1_000_000, random_degree=10, dense_n=4000, linnet_d=64,
            widths=(1, 8, 32), dtypes=("float64", "float32"), e2e_side=1000, copy_mb=256)
QUICK = dict(grid_side=60, random_n=4000, random_degree=10, dense_n=200, linnet_d=4,
             widths=(1, 8), dtypes=("float64", "float32"), e2e_side=40, copy_mb=8)


# ------------------------------------------------------------------ operators
def grid_laplacian(side, dtype=np.float64):
    """5-point Laplacian of a side x side grid with Neumann boundary (rank n - 1)."""
    main = np.full(side, 2.0)
    main[[0, -1]] = 1.0
    T = sp.diags_array([-np.ones(side - 1), main, -np.ones(side - 1)], offsets=[-1, 0, 1])
    return sp.csr_array(sp.kronsum(T, T, format="csr"), dtype=dtype)


def random_graph_laplacian(n, degree, rng, dtype=np.float64):
    """Laplacian of a random graph with ``n * degree / 2`` random edges."""
    m = n * degree // 2
    rows, cols = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = rows != cols
    W = sp.coo_array((np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(n, n)).tocsr()
    W = sp.csr_array(((W + W.T) > 0).astype(np.float64))
    L = sp.diags_array(np.asarray(W.sum(axis=1)).ravel()) - W
    return sp.csr_array(L, dtype=dtype)


def dense_psd(n, rng, dtype=np.float64):
    G = rng.standard_normal((n, n // 2))
    return np.ascontiguousarray((G @ G.T) / n, dtype=dtype)


def linear_network(d, rng, dtype=np.float64):
    from lmatrank.operators import random_minimum

    return random_minimum(d, 5, rng=rng, dtype=dtype)


# ------------------------------------------------------------------ timing
def median_time(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def interleaved_medians(fns, reps):
    """Median seconds of each callable in `fns` (name -> fn), timed round-robin: every
    repetition runs each once, so a slow spell of a shared machine hits all of them alike
    and the ratios between them stay meaningful (timed one after the other, the same kernel
    was seen to differ by 1.5x between blocks of one run)."""
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def resident_bytes():
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return float("nan")


def copy_bandwidth(megabytes, reps, numba_backend):
    """Copy bandwidth in bytes/s, counting read + write (numpy 1 thread, Numba all)."""
    n = megabytes * (1 << 20) // 8
    src = np.random.default_rng(0).standard_normal(n)
    dst = np.empty_like(src)
    t_np, _ = median_time(lambda: np.copyto(dst, src), reps)
    t_nb, _ = median_time(lambda: numba_backend.parallel_copy(src, dst), reps)
    return dict(numpy=2 * src.nbytes / t_np, numba=2 * src.nbytes / t_nb, bytes=src.nbytes)


def _sparse_bytes(M, b, itemsize):
    """Bytes a fused step must move at least: the matrix once, the block read and written."""
    matrix = M.data.nbytes + M.indices.nbytes + M.indptr.nbytes
    return matrix + 2 * M.shape[0] * b * itemsize


def lambda_max_bound(op):
    """An upper bound of lambda_max: Gershgorin for matrices, padded power iteration otherwise."""
    if op.kind == "sparse":
        return float(abs(op.matrix).sum(axis=1).max())
    if op.kind == "dense":
        return float(np.abs(op.matrix).sum(axis=1).max())
    x = np.random.default_rng(0).standard_normal((op.n, 1))
    for _ in range(30):
        y = op.matrix.matmat(x.astype(op.dtype)).astype(np.float64)
        lam = float(np.linalg.norm(y))
        x = y / lam
    return 1.5 * lam


def time_family(family, A, kind, dtype, widths, reps, rng, log):
    """All timings of one operator in one dtype; returns a list of records."""
    records = []
    op = as_operator(A, dtype=dtype, check_symmetry=False)
    n = op.n
    precond = as_preconditioner(None, n)
    ref = NumpyBackend()
    numba_be = NumbaBackend(reorder=False)  # the timed kernels run in the given order
    eta = 1.0 / lambda_max_bound(op)  # stable: the timed states stay finite
    kw = dict(eta=eta, noise_std=math.sqrt(eta), precond=precond, noise="rademacher")
    M = op.matrix if kind == "sparse" else None
    for b in widths:
        log(f"  {family} {dtype} b={b}")
        rec = dict(family=family, kind=kind, dtype=dtype, n=n, b=b, nnz=int(M.nnz) if M is not None
                   else None)
        theta0 = (0.01 * rng.standard_normal((n, b))).astype(dtype)
        gen = np.random.default_rng(1)

        theta = theta0.copy()

        def numpy_step():
            s = op.matmat(theta)
            ref.em_update(theta, s, gen=gen, **kw)

        state = [theta0.copy()]

        def numba_em():
            state[0], _, _ = numba_be.em_step(op, state[0], gen=gen, **kw)

        q = [theta0.copy()]
        p = theta0.copy()

        def numba_baoab():
            q[0], _ = numba_be.baoab_step(op, q[0], p, h=math.sqrt(eta), friction=0.5,
                                          temperature=0.5,
                                          precond=precond, noise="rademacher", gen=gen)

        fns = dict(numpy_step=numpy_step, numba_em=numba_em, numba_baoab=numba_baoab)
        for _ in range(2 * (FUSE_TRIALS + 1)):  # let fuse="auto" settle first
            numba_em()
            numba_baoab()
        rss0 = resident_bytes()
        for _ in range(reps):
            numba_em()
        rec["rss_growth_bytes"] = resident_bytes() - rss0
        if kind == "sparse":
            rec["fuse_choice"] = {scheme: numba_be.sparse_plan(op).info["fuse"].get(
                (scheme, b, np.dtype(dtype).name)) for scheme in ("em", "baoab")}
            for fuse, field in ((True, "numba_em_fused"), (False, "numba_em_two_pass")):
                forced = NumbaBackend(reorder=False, fuse=fuse)
                forced_state = [theta0.copy()]

                def forced_em(forced=forced, forced_state=forced_state):
                    forced_state[0], _, _ = forced.em_step(op, forced_state[0], gen=gen, **kw)

                fns[field] = forced_em

        X = theta0.copy()
        Y = np.empty_like(X)
        if kind == "sparse":
            fns["scipy_product"] = lambda: M @ X
            fns["numba_product"] = lambda: numba_be.matmat(op, X, out=Y)
            rec["bytes_fused_step"] = _sparse_bytes(M, b, np.dtype(dtype).itemsize)
        elif kind == "dense":
            fns["blas_product"] = lambda: np.matmul(op.matrix, X, out=Y)
        else:
            fns["operator_product"] = lambda: op.matrix.matmat(X)
        for fn in fns.values():  # warm-up (compilation, first touch of buffers)
            fn()
            fn()
        rec.update(interleaved_medians(fns, reps))
        records.append(rec)
    return records


def time_reorder(A, widths, reps, log):
    """Numba product with and without reverse Cuthill–McKee reordering."""
    out = []
    op = as_operator(A, check_symmetry=False)
    for reorder in (False, True):
        be = NumbaBackend(reorder=reorder)
        start = time.perf_counter()
        info = dict(be.sparse_plan(op).info)
        info["plan_seconds"] = time.perf_counter() - start
        for b in widths:
            log(f"  reorder={reorder} b={b}")
            X = np.random.default_rng(b).standard_normal((op.n, b))
            Y = np.empty_like(X)
            t, _ = median_time(lambda: be.matmat(op, X, out=Y), reps)
            out.append(dict(info, reorder=reorder, b=b, numba_product=t))
    return out


# ------------------------------------------------------------------ subprocess parts
_COMPILE_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numpy as np, scipy.sparse as sp
from lmatrank.backends import get_backend
from lmatrank.operators import as_operator, as_preconditioner
t_import = time.perf_counter() - t0
A = sp.csr_array(sp.eye_array(100) * 2.0)
out = {"import_s": t_import}
for dtype in ("float64", "float32"):
    op = as_operator(A, dtype=dtype, check_symmetry=False)
    be = get_backend("numba")
    gen = np.random.default_rng(0)
    P = as_preconditioner(None, 100)
    t = time.perf_counter()
    be.matmat(op, np.ones((100, 1), dtype=dtype)); be.matmat(op, np.ones((100, 4), dtype=dtype))
    out[dtype + "_products_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(2):  # fuse="auto" runs the fused, then the two-pass variant
        be.em_step(op, np.zeros((100, 4), dtype=dtype), eta=0.1, noise_std=0.1, precond=P,
                   noise="rademacher", gen=gen)
    out[dtype + "_em_step_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(2):
        be.baoab_step(op, np.zeros((100, 4), dtype=dtype), np.zeros((100, 4), dtype=dtype),
                      h=0.1, friction=0.5, temperature=0.5, precond=P, noise="rademacher",
                      gen=gen)
    out[dtype + "_baoab_step_s"] = time.perf_counter() - t
print(json.dumps(out))
"""

_E2E_SCRIPT = r"""
import json, os, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from bench.speed import grid_laplacian, resident_bytes
import lmatrank
A = grid_laplacian({side})
WARM = 50
rss = []
def progress(matvecs, budget, estimate, stderr):
    rss.append(resident_bytes())
t = time.perf_counter()
est = lmatrank.estimate_rank(A, method="langevin", backend={backend!r}, rng=5,
                             target_rse=0.01, progress=progress)
wall = time.perf_counter() - t
print(json.dumps(dict(backend={backend!r}, n=A.shape[0], wall_s=wall, estimate=est.estimate,
                      stderr=est.stderr, rank=est.rank, matvecs=est.matvecs,
                      scheme=est.info.get("scheme"), converged=est.converged,
                      peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      rss_first_step=rss[0] if rss else None, rss_last_step=rss[-1] if rss else None,
                      rss_max_over_steps=max(rss) if rss else None, steps_seen=len(rss),
                      # after the first WARM steps (buffers allocated, fuse="auto" settled)
                      rss_after_warmup=rss[WARM] if len(rss) > WARM else None,
                      rss_max_after_warmup=max(rss[WARM:]) if len(rss) > WARM else None)))
"""


def _run_json(script, env=None, timeout=3600):
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd=C.REPO_ROOT)
    if out.returncode != 0:
        return dict(error=out.stderr.strip().splitlines()[-1:] or ["failed"])
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_times():
    """First-call times in fresh interpreters: empty Numba cache, then cache hit."""
    env = dict(os.environ, PYTHONPATH=str(C.REPO_ROOT))
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        fresh = _run_json(_COMPILE_SCRIPT, env)
        cached = _run_json(_COMPILE_SCRIPT, env)
    return dict(fresh_cache=fresh, cache_hit=cached)


def end_to_end(side, backends):
    env = dict(os.environ, PYTHONPATH=str(C.REPO_ROOT))
    return [_run_json(_E2E_SCRIPT.format(root=str(C.REPO_ROOT), side=side, backend=name), env)
            for name in backends]


# ------------------------------------------------------------------ report
def _ms(x):
    return C.fmt(1e3 * x, 1) if x is not None else "-"


def _ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def acceptance(records, bandwidth):
    """The issue's acceptance ratios, from the records of this run."""
    out = {}
    for rec in records:
        if rec["kind"] != "sparse":
            continue
        key = f"{rec['family']}/{rec['dtype']}/b={rec['b']}"
        out.setdefault("step_speedup", {})[key] = _ratio(rec["numpy_step"], rec["numba_em"])
        out.setdefault("baoab_step_speedup", {})[key] = _ratio(rec["numpy_step"],
                                                               rec["numba_baoab"])
        out.setdefault("product_speedup", {})[key] = _ratio(rec["scipy_product"],
                                                            rec["numba_product"])
        out.setdefault("fused_overhead", {})[key] = _ratio(rec["numba_em"],
                                                           rec["numba_product"]) - 1
        out.setdefault("bandwidth_fraction", {})[key] = (
            rec["bytes_fused_step"] / rec["numba_em"] / bandwidth["numba"])
    return out


def markdown(result):
    lines = ["# Speed: numpy reference vs Numba backend\n",
             f"Machine: {C.machine_line(result['machine'])}.\n",
             f"Command: `{result['command']}`; medians of {result['config']['reps']} "
             "repetitions, milliseconds per step (one step = one block product with b chains "
             "+ update). On a shared machine single numbers carry "
             "run-to-run noise (tens of percent); the ratios are measured in the same run, "
             "with all timings of one operator, dtype and b taken round-robin (each "
             "repetition runs every variant once).\n",
             "What is timed: `numpy step` = scipy/BLAS product + `NumpyBackend.em_update` "
             "(the reference); `numba EM` / `numba BAOAB` = `NumbaBackend.em_step` / "
             "`baoab_step` as the estimator calls them (sparse: `fuse=\"auto\"`, the faster "
             "of the two variants below by the backend's own timing, shown in `auto chose`; "
             "dense and structured operators: their BLAS product + the Numba update kernel); "
             "`EM fused` = one kernel doing product, counter-based Rademacher noise, update "
             "and float64 observables; `EM two-pass` = the product kernel, then the update "
             "kernel (bit-identical results). `overhead` = numba EM / numba product - 1. "
             "Bytes of a sparse step = matrix once + block read + block written.\n",
             f"Copy bandwidth (read + write): numpy 1 thread "
             f"{result['bandwidth']['numpy'] / 1e9:.1f} GB/s, Numba all threads "
             f"{result['bandwidth']['numba'] / 1e9:.1f} GB/s.\n"]
    head = ["family", "dtype", "b", "numpy step", "numba EM", "numba BAOAB", "EM fused",
            "EM two-pass", "auto chose (EM/BAOAB)", "scipy/BLAS product", "numba product",
            "step speed-up", "product speed-up", "overhead"]
    rows = []
    for r in result["records"]:
        prod_ref = r.get("scipy_product", r.get("blas_product", r.get("operator_product")))
        choice = r.get("fuse_choice")
        chose = "/".join({True: "fused", False: "two-pass", None: "?"}[choice[s]]
                         for s in ("em", "baoab")) if choice else "-"
        rows.append([f"{r['family']} (n={r['n']:,})", r["dtype"], r["b"], _ms(r["numpy_step"]),
                     _ms(r["numba_em"]), _ms(r["numba_baoab"]), _ms(r.get("numba_em_fused")),
                     _ms(r.get("numba_em_two_pass")), chose,
                     _ms(prod_ref), _ms(r.get("numba_product")),
                     C.fmt(_ratio(r["numpy_step"], r["numba_em"]), 2),
                     C.fmt(_ratio(r.get("scipy_product"), r.get("numba_product")), 2),
                     C.fmt(_ratio(r["numba_em"], r["numba_product"]) - 1, 2)
                     if r.get("numba_product") else "-"])
    lines.append(C.markdown_table(head, rows))
    if result.get("reorder"):
        lines.append("\nReverse Cuthill–McKee on the random-graph Laplacian (float64, Numba "
                     "product):\n")
        lines.append(C.markdown_table(
            ["reorder", "b", "product ms", "mean |i-j| before", "after", "plan s"],
            [[r["reorder"], r["b"], _ms(r["numba_product"]),
              C.fmt(r.get("mean_distance_before"), 0), C.fmt(r.get("mean_distance_after"), 0),
              C.fmt(r["plan_seconds"], 2)] for r in result["reorder"]]))
    acc = result["acceptance"]
    lines.append("\nAcceptance ratios at the largest size of this run:\n")
    acc_rows = []
    for key in sorted(acc.get("step_speedup", {})):
        acc_rows.append([key, C.fmt(acc["step_speedup"][key], 2),
                         C.fmt(acc["baoab_step_speedup"][key], 2),
                         C.fmt(acc["product_speedup"][key], 2),
                         C.fmt(100 * acc["fused_overhead"][key], 0) + "%",
                         C.fmt(100 * acc["bandwidth_fraction"][key], 0) + "%"])
    lines.append(C.markdown_table(
        ["case", "numpy / numba EM step (>= 4)", "numpy / numba BAOAB step",
         "scipy / numba product (>= 1.8 at b >= 8)",
         "update overhead on the product (<= 35%)",
         "step bytes / copy bandwidth (>= 20%, f32 b=32)"],
        acc_rows))
    if "end_to_end" in acc:
        growth = acc["end_to_end"].get("rss_growth_after_warmup_mb", {})
        lines.append(f"\nEnd to end (below): numba backend {acc['end_to_end']['speedup']:.2f}x "
                     f"faster than numpy; estimates differ by {acc['end_to_end']['z']:.2f} "
                     "combined standard errors; resident memory grew by "
                     + ", ".join(f"{v:.0f} MB ({k})" for k, v in growth.items())
                     + " after the first 50 steps.\n")
    comp = result.get("compile")
    if comp:
        lines.append("\nFirst call in a fresh interpreter (seconds; includes compilation when "
                     "the cache is empty):\n")
        keys = [k for k in comp["fresh_cache"] if k.endswith("_s")]
        lines.append(C.markdown_table(["", *keys],
                                      [[name, *[C.fmt(comp[name].get(k), 2) for k in keys]]
                                       for name in ("fresh_cache", "cache_hit")
                                       if "error" not in comp[name]]))
    if result.get("end_to_end"):
        lines.append("\nEnd to end: `estimate_rank` on the grid Laplacian to 1% relative "
                     "standard error (`target_rse=0.01`), each backend in its own process. "
                     "Peak RSS is the whole process's (it includes building the matrix); the "
                     "resident memory is sampled at every recorded step: the work buffers are "
                     "allocated in the first steps (the Numba backend's `fuse=\"auto\"` tries "
                     "both step variants there), after which it must stay flat.\n")
        lines.append(C.markdown_table(
            ["backend", "n", "scheme", "wall s", "estimate", "stderr", "products",
             "peak RSS MB", "RSS first / last step MB",
             "RSS after 50 steps / max after MB"],
            [[r.get("backend"), C.fmt(r.get("n")), r.get("scheme"), C.fmt(r.get("wall_s"), 1),
              C.fmt(r.get("estimate"), 1), C.fmt(r.get("stderr"), 1), C.fmt(r.get("matvecs")),
              C.fmt((r.get("peak_rss_bytes") or math.nan) / 1e6, 0),
              f"{C.fmt((r.get('rss_first_step') or math.nan) / 1e6, 0)} / "
              f"{C.fmt((r.get('rss_last_step') or math.nan) / 1e6, 0)}",
              f"{C.fmt((r.get('rss_after_warmup') or math.nan) / 1e6, 0)} / "
              f"{C.fmt((r.get('rss_max_after_warmup') or math.nan) / 1e6, 0)}"]
             for r in result["end_to_end"] if "error" not in r]))
        errors = [r for r in result["end_to_end"] if "error" in r]
        for r in errors:
            lines.append(f"\nEnd-to-end run failed: {r['error']}\n")
    return "\n".join(lines)


def figure(result, path):
    plt = C.pyplot()
    sparse = [r for r in result["records"] if r["kind"] == "sparse"]
    keys = sorted({(r["family"], r["dtype"]) for r in sparse})
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.6),
                             squeeze=False)
    series = [("numpy_step", "numpy step"), ("numba_em", "numba EM (auto)"),
              ("numba_em_fused", "numba EM fused"), ("numba_em_two_pass", "numba EM two-pass"),
              ("scipy_product", "scipy product"),
              ("numba_product", "numba product")]
    for ax, (family, dtype) in zip(axes[0], keys):
        recs = sorted((r for r in sparse if r["family"] == family and r["dtype"] == dtype),
                      key=lambda r: r["b"])
        bs = [r["b"] for r in recs]
        for field, label in series:
            ax.plot(bs, [1e3 * r[field] for r in recs], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("chains b")
        ax.set_title(f"{family}, {dtype}", fontsize=9)
    axes[0][0].set_ylabel("ms per step (median)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Per-step time, n = {:,}".format(sparse[0]["n"]) if sparse else "", fontsize=10)
    return C.save_figure(fig, path)


# ------------------------------------------------------------------ main
def main(argv=None):
    parser = C.base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5; quick 3)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write benchmarks_speed.md/png here (default: docs/ unless "
                             "--quick)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end runs")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the compile-time subprocesses")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    cfg["reps"] = args.reps or (3 if args.quick else 5)
    if cfg["reps"] < 1:
        parser.error("--reps must be >= 1")
    docs = args.docs if args.docs is not None else (None if args.quick else C.REPO_ROOT / "docs")
    log = C.progress
    rng = np.random.default_rng(args.seed)
    machine = C.machine_description()
    numba_be = NumbaBackend()

    log("copy bandwidth")
    bandwidth = copy_bandwidth(cfg["copy_mb"], cfg["reps"], numba_be)
    records = []
    log("building operators")
    grid = grid_laplacian(cfg["grid_side"])
    random_graph = random_graph_laplacian(cfg["random_n"], cfg["random_degree"], rng)
    for dtype in cfg["dtypes"]:
        records += time_family("grid", grid.astype(dtype), "sparse", dtype, cfg["widths"],
                               cfg["reps"], rng, log)
        records += time_family("random graph", random_graph.astype(dtype), "sparse", dtype,
                               cfg["widths"], cfg["reps"], rng, log)
    dense = dense_psd(cfg["dense_n"], rng)
    linnet = linear_network(cfg["linnet_d"], rng)
    for dtype in cfg["dtypes"]:
        records += time_family("dense", dense.astype(dtype), "dense", dtype, cfg["widths"],
                               cfg["reps"], rng, log)
        net = linnet if dtype == "float64" else linear_network(cfg["linnet_d"],
                                                               np.random.default_rng(1), dtype)
        records += time_family(f"linear net d={cfg['linnet_d']}", net, "generic", dtype,
                               cfg["widths"], cfg["reps"], rng, log)
    log("reordering")
    reorder = time_reorder(random_graph, [b for b in cfg["widths"] if b > 1] or cfg["widths"],
                           cfg["reps"], log)
    del grid, random_graph, dense
    result = dict(machine=machine, command=C.command_line(NAME, argv or []), config=cfg,
                  bandwidth=bandwidth, records=records, reorder=reorder,
                  acceptance=acceptance(records, bandwidth))
    if not args.no_compile:
        log("compile times")
        result["compile"] = compile_times()
    if not args.no_e2e:
        log("end to end")
        result["end_to_end"] = end_to_end(cfg["e2e_side"], ["numpy", "numba"])
    e2e = {r.get("backend"): r for r in result.get("end_to_end", []) if "error" not in r}
    if {"numpy", "numba"} <= set(e2e):
        a, b = e2e["numpy"], e2e["numba"]
        growth = {name: (r["rss_max_after_warmup"] - r["rss_after_warmup"]) / 1e6
                  for name, r in e2e.items() if r.get("rss_after_warmup") is not None}
        result["acceptance"]["end_to_end"] = dict(
            speedup=a["wall_s"] / b["wall_s"], rss_growth_after_warmup_mb=growth,
            z=abs(a["estimate"] - b["estimate"]) / max(math.hypot(a["stderr"], b["stderr"]),
                                                       1e-300))
    md = markdown(result)
    print(md)
    out = Path(args.out)
    C.write_json(out / "speed.json", result)
    C.write_text(out / "speed.md", md)
    figure(result, out / "speed.png")
    if docs is not None:
        C.write_text(Path(docs) / "benchmarks_speed.md",
                     md.replace("](speed.png)", "](benchmarks_speed.png)")
                     + "\n![Per-step time](benchmarks_speed.png)\n")
        figure(result, Path(docs) / "benchmarks_speed.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
