"""Real symmetric matrices for ``python -m bench realworld`` (and the real-matrix tests).

Four sources, all available offline:

- ``networkx``: graphs bundled with networkx (Zachary's karate club, Davis' southern
  women, Les Miserables co-appearances, Florentine families) as adjacency matrices,
  graph Laplacians ``D - A`` and normalised Laplacians ``I - D^-1/2 A D^-1/2``;
  plus a path-graph Laplacian (rank ``n - 1``, no spectral gap at the bottom).
- ``sklearn``: datasets bundled with scikit-learn (iris, breast cancer, digits, wine,
  diabetes) as Gram matrices ``X X^T``, centred Gram matrices ``(HX)(HX)^T`` and RBF
  kernels ``exp(-gamma |x_i - x_j|^2)`` at two bandwidths (``gamma = 1 / (d var(X))``,
  scikit-learn's ``"scale"``, and ten times that).
- ``suitesparse``: matrices of the SuiteSparse Matrix Collection committed as
  MatrixMarket files under ``bench/data/`` (origin, n and nnz in
  ``bench/data/MANIFEST.md``); pattern matrices are read with unit entries.
- ``hessian``: exact float64 Hessians of small tanh MLPs (softmax cross-entropy) trained
  full-batch with L-BFGS on ``load_digits()`` to zero training error, and the Hessian of a
  deep linear network (:class:`lmatrank.operators.LinearNetworkHessian`) whose layers
  factor the least-squares map of the digits; built at first use (seeded, deterministic)
  and cached in a temporary folder.

``suite()`` lists the matrices (lazily built), ``eigenvalues()`` gives dense ``eigvalsh``
truth (cached), ``count_above()`` the true count at a threshold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.io
import scipy.sparse as sp

__all__ = ["RealMatrix", "DATA_DIR", "suite", "eigenvalues", "count_above", "as_dense",
           "mlp_digits_hessian", "linear_network_digits", "read_mtx", "cache_dir"]

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclasses.dataclass(frozen=True)
class RealMatrix:
    """One matrix of the suite: ``build()`` returns an ndarray, a scipy sparse array or an
    lmatrank operator (float64, symmetric)."""

    name: str
    source: str          # "networkx", "sklearn", "suitesparse", "hessian"
    kind: str            # "adjacency", "laplacian", "gram", "rbf", "stiffness", ...
    description: str
    build: Callable[[], object] = dataclasses.field(repr=False, compare=False)
    quick: bool = False  # part of the --quick configuration


def cache_dir():
    """Folder for cached Hessians and eigenvalues (``LMATRANK_BENCH_CACHE`` or a temp dir)."""
    path = Path(os.environ.get("LMATRANK_BENCH_CACHE",
                               Path(tempfile.gettempdir()) / "lmatrank-realworld-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------- networkx
def _graph(name):
    import networkx as nx

    return {"karate": nx.karate_club_graph, "davis": nx.davis_southern_women_graph,
            "lesmis": nx.les_miserables_graph, "florentine": nx.florentine_families_graph,
            }[name]()


def graph_matrix(graph, kind, weight=None):
    """Adjacency, Laplacian or normalised Laplacian of a bundled networkx graph (CSR, float64)."""
    import networkx as nx

    G = _graph(graph) if isinstance(graph, str) else graph
    nodes = sorted(G.nodes(), key=str)
    A = sp.csr_array(nx.to_scipy_sparse_array(G, nodelist=nodes, weight=weight, dtype=float))
    if kind == "adjacency":
        return A
    deg = np.asarray(A.sum(axis=1)).ravel()
    if kind == "laplacian":
        return sp.csr_array(sp.diags_array(deg) - A)
    if kind == "normalized_laplacian":
        inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
        D = sp.diags_array(inv)
        return sp.csr_array(sp.diags_array((deg > 0).astype(float)) - D @ A @ D)
    raise ValueError(f"unknown graph matrix kind {kind!r}")


def path_laplacian(n=100):
    """Laplacian of the path graph on n nodes (rank n - 1, smallest nonzero ~ pi^2/n^2)."""
    main = np.full(n, 2.0)
    main[[0, -1]] = 1.0
    return sp.csr_array(sp.diags_array([main, -np.ones(n - 1), -np.ones(n - 1)],
                                       offsets=[0, 1, -1]))


# ------------------------------------------------------------------------------ sklearn
def _dataset(name, standardise):
    import sklearn.datasets as ds

    X = {"iris": ds.load_iris, "breast_cancer": ds.load_breast_cancer, "digits": ds.load_digits,
         "wine": ds.load_wine, "diabetes": ds.load_diabetes}[name]().data.astype(np.float64)
    if standardise:
        std = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return X


def data_matrix(dataset, kind, *, standardise=False, gamma_factor=1.0):
    """Gram, centred Gram or RBF kernel (dense float64) of a bundled scikit-learn dataset."""
    X = _dataset(dataset, standardise)
    if kind == "gram":
        G = X @ X.T
    elif kind == "centred_gram":
        Xc = X - X.mean(axis=0)
        G = Xc @ Xc.T
    elif kind == "rbf":
        gamma = gamma_factor / (X.shape[1] * X.var())
        sq = np.sum(X * X, axis=1)
        D2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (X @ X.T), 0.0)
        G = np.exp(-gamma * D2)
    else:
        raise ValueError(f"unknown data matrix kind {kind!r}")
    return (G + G.T) / 2


# -------------------------------------------------------------------------- SuiteSparse
def read_mtx(name):
    """A committed MatrixMarket file of ``bench/data`` as float64 CSR (pattern -> ones)."""
    A = scipy.io.mmread(DATA_DIR / f"{name}.mtx")
    A = sp.csr_array(A, dtype=np.float64)
    A.sum_duplicates()
    return A


# ---------------------------------------------------------------------------- Hessians
def mlp_digits_hessian(hidden=16, *, n_samples=None, seed=0, max_iter=500):
    """Exact Hessian (float64) of a tanh MLP ``64-hidden-10`` with softmax cross-entropy,
    trained full batch with L-BFGS on ``load_digits()`` (inputs scaled to [0, 1]).

    Returns ``(H, info)`` with ``info`` holding the training accuracy and loss. Cached on
    disk by configuration; deterministic (seeded initialisation, single-threaded torch).
    """
    key = f"mlp_h{hidden}_n{n_samples}_s{seed}_it{max_iter}"
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        data = np.load(path)
        return data["H"], {k: float(data[k]) for k in ("train_accuracy", "train_loss")}
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float64)
    y = torch.tensor(digits.target, dtype=torch.long)
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    d_in, d_out = X.shape[1], 10
    gen = torch.Generator().manual_seed(seed)
    shapes = [(hidden, d_in), (hidden,), (d_out, hidden), (d_out,)]
    sizes = [int(np.prod(s)) for s in shapes]
    bound = [1 / np.sqrt(d_in), 1 / np.sqrt(d_in), 1 / np.sqrt(hidden), 1 / np.sqrt(hidden)]
    theta0 = torch.cat([(2 * torch.rand(s, generator=gen, dtype=torch.float64) - 1).ravel() * b
                        for s, b in zip(shapes, bound)])

    def loss(theta):
        parts = torch.split(theta, sizes)
        W1, b1, W2, b2 = (p.reshape(s) for p, s in zip(parts, shapes))
        logits = torch.tanh(X @ W1.T + b1) @ W2.T + b2
        return torch.nn.functional.cross_entropy(logits, y)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        theta = theta0.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, history_size=20,
                                tolerance_grad=1e-9, tolerance_change=1e-12,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = loss(theta)
            value.backward()
            return value

        opt.step(closure)
        theta = theta.detach()
        with torch.no_grad():
            parts = torch.split(theta, sizes)
            W1, b1, W2, b2 = (p.reshape(s) for p, s in zip(parts, shapes))
            pred = (torch.tanh(X @ W1.T + b1) @ W2.T + b2).argmax(dim=1)
            acc = float((pred == y).double().mean())
            final = float(loss(theta))
        H = torch.func.jacrev(torch.func.grad(loss), chunk_size=256)(theta).numpy()
    finally:
        torch.set_num_threads(threads)
    H = (H + H.T) / 2
    np.savez(path, H=H, train_accuracy=acc, train_loss=final)
    return H, dict(train_accuracy=acc, train_loss=final)


def linear_network_digits(widths=(16, 16), ridge=1e-3):
    """:class:`lmatrank.operators.LinearNetworkHessian` of a deep linear network
    ``64 -> widths -> 10`` whose layers factor (balanced SVD split) the rank-``min(widths)``
    truncation of the least-squares map from standardised digits pixels to one-hot labels;
    input covariance = pixel covariance + ``ridge`` (mean variance) I."""
    from sklearn.datasets import load_digits

    from lmatrank.operators import LinearNetworkHessian

    digits = load_digits()
    X = _dataset("digits", standardise=True)
    Y = np.eye(10)[digits.target]
    Y = Y - Y.mean(axis=0)
    cov = X.T @ X / X.shape[0]
    cov = cov + ridge * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    T = np.linalg.solve(cov, X.T @ Y / X.shape[0]).T            # (10, 64)
    U, s, Vt = np.linalg.svd(T, full_matrices=False)
    k = min(min(widths), s.size)
    depth = len(widths) + 1
    root = s[:k] ** (1.0 / depth)
    dims = [64, *widths, 10]
    weights = []
    for layer in range(depth):
        W = np.zeros((dims[layer + 1], dims[layer]))
        if layer == 0:
            W[:k, :] = root[:, None] * Vt[:k]
        elif layer == depth - 1:
            W[:, :k] = U[:, :k] * root[None, :]
        else:
            W[:k, :k] = np.diag(root)
        weights.append(W)
    return LinearNetworkHessian(weights, sigma_x=cov)


def as_dense(A):
    """Dense float64 ndarray of a matrix or operator of the suite."""
    if isinstance(A, np.ndarray):
        return A
    if sp.issparse(A):
        return A.toarray()
    if hasattr(A, "todense"):
        return np.asarray(A.todense(), dtype=np.float64)
    return np.asarray(A @ np.eye(A.shape[0]), dtype=np.float64)


def _fingerprint(A):
    h = hashlib.sha1()
    if sp.issparse(A):
        A = sp.csr_array(A)
        for part in (A.indptr, A.indices, A.data):
            h.update(np.ascontiguousarray(part).tobytes())
    else:
        h.update(np.ascontiguousarray(as_dense(A)).tobytes())
    h.update(str(A.shape).encode())
    return h.hexdigest()[:20]


def eigenvalues(A, *, cache=True):
    """Eigenvalues (ascending, float64, dense ``eigvalsh``) of a suite matrix; cached on disk
    by a fingerprint of the matrix's data."""
    path = cache_dir() / f"eig_{_fingerprint(A)}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path)
    lam = np.linalg.eigvalsh(as_dense(A))
    if path is not None:
        np.save(path, lam)
    return lam


def count_above(lam, threshold):
    """``#{|lambda| > threshold}`` of an eigenvalue array."""
    return int(np.count_nonzero(np.abs(np.asarray(lam)) > threshold))


# -------------------------------------------------------------------------------- suite
def _mlp(hidden):
    return lambda: mlp_digits_hessian(hidden)[0]


def suite(quick=False):
    """The matrices of the benchmark (``quick``: the small subset of ``--quick``)."""
    G, D = graph_matrix, data_matrix
    items = [
        RealMatrix("karate_adjacency", "networkx", "adjacency",
                   "Zachary's karate club, unweighted adjacency (n=34)",
                   lambda: G("karate", "adjacency"), quick=True),
        RealMatrix("karate_laplacian", "networkx", "laplacian",
                   "karate club graph Laplacian D - A (connected: rank n-1)",
                   lambda: G("karate", "laplacian"), quick=True),
        RealMatrix("karate_normalized_laplacian", "networkx", "normalized_laplacian",
                   "karate club normalised Laplacian", lambda: G("karate", "normalized_laplacian")),
        RealMatrix("davis_adjacency", "networkx", "adjacency",
                   "Davis southern women bipartite adjacency (n=32, indefinite)",
                   lambda: G("davis", "adjacency"), quick=True),
        RealMatrix("davis_laplacian", "networkx", "laplacian", "Davis southern women Laplacian",
                   lambda: G("davis", "laplacian")),
        RealMatrix("lesmis_adjacency", "networkx", "adjacency",
                   "Les Miserables co-appearance counts (weighted adjacency, n=77)",
                   lambda: G("lesmis", "adjacency", weight="weight")),
        RealMatrix("lesmis_laplacian", "networkx", "laplacian",
                   "Les Miserables weighted Laplacian",
                   lambda: G("lesmis", "laplacian", weight="weight")),
        RealMatrix("florentine_adjacency", "networkx", "adjacency",
                   "Florentine families marriage graph adjacency (n=15)",
                   lambda: G("florentine", "adjacency")),
        RealMatrix("florentine_normalized_laplacian", "networkx", "normalized_laplacian",
                   "Florentine families normalised Laplacian",
                   lambda: G("florentine", "normalized_laplacian")),
        RealMatrix("path100_laplacian", "networkx", "laplacian",
                   "path-graph Laplacian, n=100 (rank 99, no gap above the null space)",
                   lambda: path_laplacian(100), quick=True),
        RealMatrix("iris_gram", "sklearn", "gram", "iris X X^T (n=150, rank 4)",
                   lambda: D("iris", "gram"), quick=True),
        RealMatrix("iris_centred_gram", "sklearn", "centred_gram", "iris centred Gram",
                   lambda: D("iris", "centred_gram")),
        RealMatrix("iris_rbf", "sklearn", "rbf", "iris RBF kernel, gamma = 1/(d var X)",
                   lambda: D("iris", "rbf"), quick=True),
        RealMatrix("iris_rbf_narrow", "sklearn", "rbf", "iris RBF kernel, gamma = 10/(d var X)",
                   lambda: D("iris", "rbf", gamma_factor=10.0)),
        RealMatrix("breast_cancer_gram", "sklearn", "gram",
                   "breast cancer standardised X X^T (n=569, rank <= 30)",
                   lambda: D("breast_cancer", "gram", standardise=True)),
        RealMatrix("breast_cancer_rbf", "sklearn", "rbf",
                   "breast cancer RBF kernel (standardised features)",
                   lambda: D("breast_cancer", "rbf", standardise=True)),
        RealMatrix("wine_rbf", "sklearn", "rbf", "wine RBF kernel (standardised, n=178)",
                   lambda: D("wine", "rbf", standardise=True)),
        RealMatrix("diabetes_gram", "sklearn", "gram", "diabetes X X^T (n=442, rank 10)",
                   lambda: D("diabetes", "gram")),
        RealMatrix("diabetes_centred_gram", "sklearn", "centred_gram",
                   "diabetes centred Gram", lambda: D("diabetes", "centred_gram")),
        RealMatrix("digits_gram", "sklearn", "gram", "digits X X^T (n=1797, rank 61)",
                   lambda: D("digits", "gram")),
        RealMatrix("digits_centred_gram", "sklearn", "centred_gram", "digits centred Gram",
                   lambda: D("digits", "centred_gram")),
        RealMatrix("digits_rbf", "sklearn", "rbf", "digits RBF kernel, gamma = 1/(d var X)",
                   lambda: D("digits", "rbf")),
    ]
    mtx = [("bcsstk01", "stiffness", "HB/bcsstk01 structural stiffness (n=48)", True),
           ("bcsstk02", "stiffness", "HB/bcsstk02 oil-rig stiffness, dense (n=66)", False),
           ("GD97_b", "graph", "Pajek/GD97_b weighted graph (n=47)", False),
           ("GD06_theory", "graph", "Pajek/GD06_theory pattern (n=101)", False),
           ("bcspwr03", "power network", "HB/bcspwr03 power network pattern (n=118)", False),
           ("bcspwr05", "power network", "HB/bcspwr05 power network pattern (n=443)", False),
           ("bcspwr06", "power network", "HB/bcspwr06 power network pattern (n=1454)", False),
           ("494_bus", "power network", "HB/494_bus admittance (n=494)", False),
           ("Erdos971", "graph", "Pajek/Erdos971 collaboration graph pattern (n=472)", False),
           ("dwt_878", "structural", "HB/dwt_878 structure pattern (n=878)", False),
           ("dwt_992", "structural", "HB/dwt_992 structure pattern (n=992)", False),
           ("jagmesh7", "mesh", "HB/jagmesh7 finite-element mesh pattern (n=1138)", False),
           ("tumorAntiAngiogenesis_2", "optimal control",
            "VDOL/tumorAntiAngiogenesis_2 KKT matrix (n=305)", False),
           ("reorientation_1", "optimal control", "VDOL/reorientation_1 KKT matrix (n=677)",
            False),
           ("hangGlider_2", "optimal control", "VDOL/hangGlider_2 KKT matrix (n=1647)", False),
           ("bcsstk13", "stiffness", "HB/bcsstk13 fluid-flow stiffness (n=2003)", False),
           ("zenios", "optimization", "HB/zenios air-traffic control model (n=2873)", False)]
    items += [RealMatrix(f"ss_{name}", "suitesparse", kind, desc,
                         (lambda name=name: read_mtx(name)), quick=q)
              for name, kind, desc, q in mtx]
    items += [
        RealMatrix("mlp16_digits_hessian", "hessian", "mlp_hessian",
                   "exact Hessian of a tanh MLP 64-16-10 trained on digits (1,210 parameters)",
                   _mlp(16)),
        RealMatrix("mlp32_digits_hessian", "hessian", "mlp_hessian",
                   "exact Hessian of a tanh MLP 64-32-10 trained on digits (2,410 parameters)",
                   _mlp(32)),
        RealMatrix("mlp4_digits200_hessian", "hessian", "mlp_hessian",
                   "exact Hessian of a tanh MLP 64-4-10 trained on 200 digits (310 parameters)",
                   lambda: mlp_digits_hessian(4, n_samples=200)[0], quick=True),
        RealMatrix("linear_network_digits", "hessian", "linear_network_hessian",
                   "deep linear network 64-16-16-10 Hessian at a factorisation of the "
                   "digits least-squares map (1,440 parameters)", linear_network_digits),
    ]
    return [m for m in items if m.quick] if quick else items
