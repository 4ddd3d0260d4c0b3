"""Command line: ``python -m lmatrank [FILE] [--method M] [--seed S]``.

Without FILE, estimates the rank of the built-in default problem: the Hessian of
a depth-5 linear network at a random global minimum (paper protocol, d = 32,
true rank 1024). FILE may be ``.npy`` (loaded with ``allow_pickle=False``),
``.npz`` (``scipy.sparse.save_npz``) or ``.mtx``/``.mtx.gz`` (Matrix Market).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ._api import available_methods, estimate_rank
from ._errors import DivergenceError

__all__ = ["load_matrix", "main"]


def load_matrix(path):
    """Load a square matrix from ``.npy``, ``.npz`` (scipy.sparse) or Matrix Market.

    Raises
    ------
    ValueError
        Unknown extension, unreadable file, or a ``.npy`` holding pickled objects.
    FileNotFoundError
        Missing file.
    """
    import scipy.io
    import scipy.sparse as sp

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if name.endswith(".npz"):
            return sp.load_npz(path)
        if name.endswith(".mtx") or name.endswith(".mtx.gz"):
            return scipy.io.mmread(path)
    except ValueError as exc:  # numpy refuses pickles with a ValueError
        raise ValueError(f"cannot read {path}: {exc}") from None
    except (OSError, KeyError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    raise ValueError(f"unsupported file type {path.name!r}: expected .npy, .npz, .mtx or .mtx.gz")


def default_problem(seed=0):
    """The paper-protocol linear-network Hessian, d = 32, depth 5 (true rank 1024)."""
    from .operators import LinearNetworkHessian

    return LinearNetworkHessian.random_minimum(32, depth=5, rng=seed)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lmatrank", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help=".npy, .npz (scipy.sparse) or .mtx matrix file")
    parser.add_argument("--method", default=None, choices=available_methods())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rtol", type=float, default=None)
    parser.add_argument("--atol", type=float, default=None)
    args = parser.parse_args(argv)

    true_rank = None
    try:
        if args.file is None:
            A = default_problem(args.seed)
            true_rank = A.theoretical_rank
            label = f"default problem: linear-network Hessian (d=32, depth 5, n={A.shape[0]})"
        else:
            A = load_matrix(args.file)
            label = f"{args.file} ({A.shape[0]}x{A.shape[1]})"
        kwargs = {} if args.method is None else {"method": args.method}
        start = time.perf_counter()
        est = estimate_rank(A, rng=args.seed, rtol=args.rtol, atol=args.atol, **kwargs)
        elapsed = time.perf_counter() - start
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DivergenceError as exc:
        print(f"estimation failed: {exc}", file=sys.stderr)
        return 1
    print(label)
    print(f"method     {est.method}")
    print(f"estimate   {est.estimate:.2f} +- {est.stderr:.2f}  (rank {est.rank})")
    if true_rank is not None:
        err = 100.0 * (est.estimate - true_rank) / true_rank
        print(f"true rank  {true_rank}  (error {err:+.2f}%)")
    print(f"threshold  {est.threshold:.3g}")
    print(f"products   {est.matvecs}")
    print(f"time       {elapsed:.2f} s")
    if not est.converged:
        print("warning    budget exhausted before the stopping rule was met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
