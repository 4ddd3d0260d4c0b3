"""GPU benchmark: CuPy backend vs the numpy backend, and the paper's d = 128 / 256 rows.

Usage::

    python bench/gpu.py [--quick] [--out bench/results]

Without cupy or a CUDA device it prints "no GPU available: <reason>" and exits
with status 0 (CI has no GPU). Otherwise it prints and writes (JSON):

1. a speed table: seconds per Euler–Maruyama step (product + fused update) of
   the numpy backend and the CuPy backend on dense, sparse, Kronecker and
   linear-network operators, and their ratio (measured in this run);
2. the paper's linear-network rows d = 128 and d = 256 (depth 5, Hessian rank
   d^2, Algorithm 1 settings sigma^2 = 2e-5, eta = 1e-4, K_tot = 15000,
   K_avg = 10000, Gaussian noise, uncorrected loss, one chain) run entirely on
   the device with :meth:`CupyBackend.run_euler_maruyama`, and the same with
   the corrected observable and 8 chains; normalised error |r_hat - d^2| / d^2.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from lmatrank.backends import CounterStream, CupyBackend, NumpyBackend  # noqa: E402
from lmatrank.backends._cupy import load_cupy  # noqa: E402
from lmatrank.langevin._dynamics import run_euler_maruyama  # noqa: E402
from lmatrank.operators import (KroneckerProduct, LinearNetworkHessian, as_operator,  # noqa: E402
                                as_preconditioner)


def _time_steps(backend, op, n_chains, n_steps, sync, eta):
    kwargs = dict(n_chains=n_chains, n_steps=n_steps, eta=eta, sigma2=1.0,
                  precond=as_preconditioner(None, op.n, op.dtype), noise="rademacher",
                  gen=CounterStream(0))
    if isinstance(backend, CupyBackend):
        backend.run_euler_maruyama(op, **kwargs)          # warm-up: compile, allocate
        sync()
        start = time.perf_counter()
        backend.run_euler_maruyama(op, **kwargs)
        sync()
    else:
        start = time.perf_counter()
        run_euler_maruyama(op, backend, **kwargs)
    return (time.perf_counter() - start) / n_steps


def speed_table(cp, quick):
    rng = np.random.default_rng(0)
    sizes = [2000] if quick else [2000, 8000]
    cases = []
    # PSD test operators (a stable step for every mode), step 1 / lambda_max-ish
    for n in sizes:
        M = rng.standard_normal((n, n)).astype(np.float32)
        cases.append((f"dense n={n} f32", (M @ M.T) / n, 0.2))
        S = sp.random(n * 10, n * 10, density=10 / (n * 10), random_state=1, dtype=np.float64)
        B = S + S.T
        B = B + sp.diags(np.asarray(abs(B).sum(axis=1)).ravel())   # Gershgorin: PSD
        cases.append((f"sparse n={n * 10} nnz/row~21", B.tocsr(), 0.9 / abs(B).sum(axis=1).max()))
    A = rng.standard_normal((200, 200))
    G = A @ A.T / 200
    cases.append(("kronecker 200x200 (n=40000)", KroneckerProduct(G, G), 0.05))
    cases.append(("linear net d=32 (n=5120)", LinearNetworkHessian.random_minimum(32, rng=1),
                  1e-4))
    rows = []
    sync = cp.cuda.Device().synchronize
    for name, matrix, eta in cases:
        for chains in (8, 64):
            steps = 20 if quick else 50
            host = _time_steps(NumpyBackend(), as_operator(matrix, check_symmetry=False), chains,
                               steps, sync, eta)
            dev = _time_steps(CupyBackend(), as_operator(matrix, check_symmetry=False), chains,
                              steps, sync, eta)
            rows.append(dict(case=name, chains=chains, numpy_s_per_step=host,
                             cupy_s_per_step=dev, speedup=host / dev))
            print(f"{name:32s} c={chains:3d}  numpy {host * 1e3:9.3f} ms/step  "
                  f"cupy {dev * 1e3:8.3f} ms/step  speed-up {host / dev:7.1f}x", flush=True)
    return rows


def paper_rows(cp, quick):
    rows = []
    for d in ([128] if quick else [128, 256]):
        H = LinearNetworkHessian.random_minimum(d, depth=5, rng=d, dtype=np.float32)
        truth = d * d
        for label, chains, corrected in (("paper (1 chain, uncorrected)", 1, False),
                                         ("8 chains, corrected", 8, True)):
            op = as_operator(H, check_symmetry=False)
            backend = CupyBackend()
            n_steps, n_avg = (3000, 2000) if quick else (15000, 10000)
            start = time.perf_counter()
            trace = backend.run_euler_maruyama(
                op, n_chains=chains, n_steps=n_steps, eta=1e-4, sigma2=2e-5,
                precond=as_preconditioner(None, op.n, op.dtype), noise="gaussian",
                gen=CounterStream(d), corrected=corrected)
            cp.cuda.Device().synchronize()
            seconds = time.perf_counter() - start
            estimate = float(trace[n_steps - n_avg:].mean())
            rows.append(dict(d=d, n_params=op.n, setting=label, estimate=estimate, truth=truth,
                             normalised_error=abs(estimate - truth) / truth, seconds=seconds,
                             matvecs=op.matvecs, n_steps=n_steps, n_avg=n_avg))
            print(f"d={d:4d} n={op.n:7d} {label:30s} estimate {estimate:10.1f} (d^2={truth}) "
                  f"error {abs(estimate - truth) / truth:6.2%}  {seconds:7.1f} s", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("--out", default="bench/results", help="folder for gpu.json")
    args = parser.parse_args(argv)
    try:
        cp = load_cupy()
    except ImportError as exc:
        print(f"no GPU available: {exc}")
        return 0
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"device: {device}, cupy {cp.__version__}")
    result = dict(device=device, cupy=cp.__version__, speed=speed_table(cp, args.quick),
                  paper=paper_rows(cp, args.quick))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'gpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
