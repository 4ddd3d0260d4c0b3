"""Small real symmetric matrices for the tests (shared by the test modules).

The matrices come from the benchmark suite's loaders (:mod:`bench._realworld_matrices`):
graphs bundled with networkx, a kernel matrix of a scikit-learn dataset, a committed
SuiteSparse MatrixMarket file and the exact Hessian of a tiny MLP trained on digits.
``real_matrix(name)`` returns ``(A, eigenvalues)`` (cached per process); ``contract_rule``
computes the threshold every method must report, from the true eigenvalues and the
product noise ``estimate_rank`` measured for the same `rng`.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from bench import _realworld_matrices as M

#: name -> builder; every one builds in well under a few seconds
SMALL = {
    "karate_laplacian": lambda: M.graph_matrix("karate", "laplacian"),
    "davis_adjacency": lambda: M.graph_matrix("davis", "adjacency"),
    "iris_rbf": lambda: M.data_matrix("iris", "rbf"),
    "path100_laplacian": lambda: M.path_laplacian(100),
    "ss_bcsstk01": lambda: M.read_mtx("bcsstk01"),
    "mlp4_digits200_hessian": lambda: M.mlp_digits_hessian(4, n_samples=200)[0],
}


@functools.lru_cache(maxsize=None)
def real_matrix(name):
    """``(A, eigenvalues)`` of a small real matrix (eigenvalues by dense ``eigvalsh``)."""
    A = SMALL[name]()
    return A, np.linalg.eigvalsh(M.as_dense(A))


def count_above(lam, threshold):
    """``#{|lambda| > threshold}``."""
    return M.count_above(lam, threshold)


def case_seed(*parts):
    """A stable seed from names (same case, same seed, every run)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def noise_floor(A, rng):
    """The product noise ``estimate_rank(A, rng=rng)`` measures in its symmetry probe."""
    from lmatrank.operators import as_operator

    check_gen, _ = np.random.default_rng(rng).spawn(2)
    return as_operator(A, check_symmetry=True, rng=check_gen, fresh=True).noise_floor


def contract_rule(A, lam, rng, *, rtol=None, atol=None):
    """The threshold the contract prescribes, from the true |lambda|max."""
    from lmatrank._result import count_threshold

    floor = None if (rtol is not None or atol is not None) else noise_floor(A, rng)
    return count_threshold(float(np.max(np.abs(lam))), A.shape[0], np.float64, rtol=rtol,
                           atol=atol, noise_floor=floor)[0]
