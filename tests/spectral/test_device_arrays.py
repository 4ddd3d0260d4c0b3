"""The spectral methods on device arrays, with numpy standing in for cupy.

Two stand-ins:

- ``CupyBackend(xp=numpy)``: the CuPy backend's own product logic on the host.
  Every spectral method must give *exactly* the host result through it (the
  same arithmetic, products through ``backend.matmat``), for dense, sparse and
  fake device inputs.
- ``StrictBackend``: an array namespace whose arrays refuse implicit conversion
  to numpy (as CuPy arrays do) and which records every array that crosses to
  the host. It proves that the length-``n`` work stays in ``xp`` and that only
  small results (coefficients, moments, Gram and Rayleigh–Ritz matrices) come
  back, and that probes are moved once per block.
"""

import types

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.lib.mixins import NDArrayOperatorsMixin

import lmatrank
from lmatrank.backends import _FACTORIES, CupyBackend, NumpyBackend
from lmatrank.operators import as_operator
from lmatrank.spectral import (batched_lanczos, chebyshev_moments, chebyshev_rank, kpm_rank,
                               lanczos, lanczos_extremes, sketch_rank, slq_rank)
from lmatrank.spectral._arrays import spectral_arrays
from tests._matrices import symmetric_with_spectrum

# these tests compare device and host paths bit for bit; runs at the default threshold say
# that they cannot resolve it (ConvergenceWarning), which is not what is tested here
pytestmark = pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")

N = 257   # no small result (moments, Gram matrices, coefficients) has a dimension this large
METHODS = ["chebyshev", "kpm", "slq", "sketch"]
FUNCTIONS = {"chebyshev": chebyshev_rank, "kpm": kpm_rank, "slq": slq_rank,
             "sketch": sketch_rank}
# small runs: the point is the arithmetic path, not the statistics
OPTIONS = {"chebyshev": dict(n_probes=24, degree=30, block_size=10),
           "kpm": dict(n_probes=24, degree=30, block_size=10),
           "slq": dict(n_probes=12, n_steps=25, block_size=5),
           "sketch": dict(block_size=16)}
# info entries that must agree between the host and the device path
KEY_INFO = {"chebyshev": ["lambda_min", "lambda_max", "per_probe", "n_positive", "n_negative",
                          "count_half_threshold", "count_double_threshold", "n_probes"],
            "kpm": ["lambda_min", "lambda_max", "per_probe", "n_positive", "n_negative",
                    "count_half_threshold", "n_probes"],
            "slq": ["ritz_values", "weights", "per_probe", "n_positive", "n_negative",
                    "count_half_threshold"],
            "sketch": ["eigenvalues", "sketch_width", "sketch_rank", "n_positive",
                       "n_negative", "rayleigh_ritz_noise"]}


def _matrix(seed=0):
    lam = np.r_[np.linspace(1.0, 10.0, 40), -np.linspace(2.0, 5.0, 15), np.zeros(N - 55)]
    A, _ = symmetric_with_spectrum(np.random.default_rng(seed), lam)
    return A


def _inputs():
    A = _matrix()
    # the sparse form keeps the rank (55 of 257): the sketch stays narrower than n
    return {"dense": A, "sparse": sp.csr_array(A)}


def _assert_same(host, dev, method, *, exact=True):
    check = np.testing.assert_array_equal if exact else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9))
    assert dev.rank == host.rank
    assert dev.matvecs == host.matvecs
    assert dev.converged == host.converged
    check(dev.estimate, host.estimate)
    check(dev.stderr, host.stderr)
    check(dev.threshold, host.threshold)
    assert type(dev.estimate) is float and type(dev.stderr) is float
    for key in KEY_INFO[method]:
        a, b = host.info[key], dev.info[key]
        assert type(a) is type(b), key
        check(b, a)


# ------------------------------------------------------- CupyBackend(xp=numpy)
@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("form", ["dense", "sparse"])
@pytest.mark.parametrize("method", METHODS)
def test_stand_in_backend_gives_the_host_result(method, form, seed):
    M = _inputs()[form]
    host = lmatrank.estimate_rank(M, method=method, rng=seed, **OPTIONS[method])
    dev = lmatrank.estimate_rank(M, method=method, rng=seed, backend=CupyBackend(xp=np),
                                 **OPTIONS[method])
    _assert_same(host, dev, method)


@pytest.mark.parametrize("method", ["chebyshev", "sketch"])
def test_backend_by_name_is_accepted_and_numpy_is_the_host_path(method):
    A = _matrix()
    host = lmatrank.estimate_rank(A, method=method, rng=3, **OPTIONS[method])
    named = lmatrank.estimate_rank(A, method=method, rng=3, backend="numpy", **OPTIONS[method])
    _assert_same(host, named, method)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_lanczos_extremes_through_the_stand_in(form, seed):
    M = _inputs()[form]
    op = as_operator(M, check_symmetry=False)
    host = lanczos_extremes(op.matmat, N, rng=seed, n_steps=40)
    arrays = spectral_arrays(op, CupyBackend(xp=np))
    dev = lanczos_extremes(arrays.apply, N, rng=seed, n_steps=40, xp=arrays.xp)
    assert dev == host
    assert op.matvecs == 2 * host["steps"]


@pytest.mark.parametrize("method", METHODS)
def test_device_path_never_calls_the_host_product(method, monkeypatch):
    A = _matrix()
    host = FUNCTIONS[method](as_operator(A, check_symmetry=False), rng=1, **OPTIONS[method])
    op = as_operator(A, check_symmetry=False)

    def refuse(X):
        raise AssertionError("the host product op.matmat was called")

    monkeypatch.setattr(op, "matmat", refuse)
    with pytest.raises(AssertionError, match="host product"):   # the trap is armed
        op.matmat(np.ones((N, 1)))
    dev = FUNCTIONS[method](op, rng=1, backend=CupyBackend(xp=np), **OPTIONS[method])
    _assert_same(host, dev, method)


class FakeCupyMatrix:
    """Looks like a CuPy array to lmatrank (module ``cupy``); computes with numpy."""

    __module__ = "cupy"

    def __init__(self, array):
        self.array = np.asarray(array)
        self.shape = self.array.shape
        self.dtype = self.array.dtype

    def __matmul__(self, X):
        return self.array @ X


@pytest.mark.parametrize("method", METHODS)
def test_fake_device_input_with_the_stand_in_backend_equals_host(method):
    A = _matrix()
    host = lmatrank.estimate_rank(A, method=method, rng=2, check_symmetry=False,
                                  **OPTIONS[method])
    dev = lmatrank.estimate_rank(FakeCupyMatrix(A), method=method, rng=2, check_symmetry=False,
                                 backend=CupyBackend(xp=np), **OPTIONS[method])
    _assert_same(host, dev, method)


@pytest.mark.parametrize("method", METHODS)
def test_device_input_picks_the_cupy_backend_by_itself(method, monkeypatch):
    monkeypatch.setitem(_FACTORIES, "cupy", lambda: CupyBackend(xp=np))
    A = _matrix()
    host = lmatrank.estimate_rank(A, method=method, rng=4, check_symmetry=False,
                                  **OPTIONS[method])
    dev = lmatrank.estimate_rank(FakeCupyMatrix(A), method=method, rng=4, check_symmetry=False,
                                 **OPTIONS[method])
    _assert_same(host, dev, method)


# ---------------------------------------------------------------- bad input
def _no_cupy():
    raise ImportError("no CUDA device is usable (test)")


@pytest.mark.parametrize("method", METHODS)
def test_device_input_without_a_cupy_backend_says_why(method, monkeypatch):
    monkeypatch.setitem(_FACTORIES, "cupy", _no_cupy)
    with pytest.raises(ValueError, match="lives on a CUDA device but the cupy backend"):
        lmatrank.estimate_rank(FakeCupyMatrix(_matrix()), method=method, rng=0,
                               check_symmetry=False, **OPTIONS[method])


@pytest.mark.parametrize("method", METHODS)
def test_unknown_backend_name_is_refused(method):
    with pytest.raises(ValueError, match="unknown backend 'no-such-backend'"):
        lmatrank.estimate_rank(_matrix(), method=method, rng=0, backend="no-such-backend")


@pytest.mark.parametrize("method", METHODS)
def test_backend_that_is_not_a_backend_is_refused(method):
    with pytest.raises(TypeError, match="backend must be a name or a backend object"):
        lmatrank.estimate_rank(_matrix(), method=method, rng=0, backend=object())


def test_unavailable_backend_is_refused(monkeypatch):
    monkeypatch.setitem(_FACTORIES, "cupy", _no_cupy)
    with pytest.raises(ValueError, match="backend 'cupy' is not available here"):
        lmatrank.estimate_rank(_matrix(), method="slq", rng=0, backend="cupy")


# ----------------------------------------------- strict namespace: what crosses
class StrictArray(NDArrayOperatorsMixin):
    """A 'device' array: arithmetic works, implicit conversion to numpy does not (like CuPy)."""

    def __init__(self, data):
        self.data = data

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (strict stand-in)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = [_raw(x) for x in inputs]
        out = kwargs.pop("out", None)
        if out is not None:
            kwargs["out"] = tuple(_raw(o) for o in out)
            getattr(ufunc, method)(*inputs, **kwargs)
            return out[0] if len(out) == 1 else out
        return _wrap(getattr(ufunc, method)(*inputs, **kwargs))

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    nbytes = property(lambda self: self.data.nbytes)
    T = property(lambda self: StrictArray(self.data.T))

    def __getitem__(self, key):
        return _wrap(self.data[_raw_key(key)])

    def __setitem__(self, key, value):
        self.data[_raw_key(key)] = _raw(value)

    def __float__(self):
        return float(self.data)

    def __bool__(self):
        return bool(self.data)

    def __len__(self):
        return len(self.data)

    def astype(self, dtype, copy=True):
        return StrictArray(self.data.astype(dtype, copy=copy))

    def copy(self):
        return StrictArray(self.data.copy())

    def transpose(self, *axes):
        return StrictArray(self.data.transpose(*axes))


def _raw(x):
    if isinstance(x, StrictArray):
        return x.data
    if isinstance(x, np.ndarray) and x.ndim > 0:
        raise TypeError("a host array met a device array: move it with xp.asarray")
    return x


def _raw_key(key):
    if isinstance(key, tuple):
        return tuple(_raw(k) for k in key)
    return _raw(key)


def _wrap(x):
    return StrictArray(x) if isinstance(x, np.ndarray) else x


def strict_namespace():
    """An array namespace over StrictArray that records host<->'device' traffic."""
    log = types.SimpleNamespace(to_device=[], to_host=[])

    def asarray(x, dtype=None):
        if not isinstance(x, StrictArray):
            x = np.asarray(x)
            log.to_device.append(x.shape)
            return StrictArray(np.array(x, dtype=dtype))
        return StrictArray(np.asarray(x.data, dtype=dtype))

    def asnumpy(x):
        data = x.data if isinstance(x, StrictArray) else np.asarray(x)
        log.to_host.append(data.shape)
        return np.array(data)

    def lifted(func):
        return lambda *args, **kwargs: _wrap(func(*[_raw(a) for a in args], **kwargs))

    linalg = types.SimpleNamespace(norm=lifted(np.linalg.norm), qr=lifted(np.linalg.qr))

    def qr(x, mode="reduced"):
        q, r = np.linalg.qr(_raw(x), mode=mode)
        return StrictArray(q), StrictArray(r)

    linalg.qr = qr
    xp = types.SimpleNamespace(
        __name__="strict_xp", asarray=asarray, asnumpy=asnumpy, linalg=linalg,
        empty=lifted(np.empty), zeros=lifted(np.zeros), zeros_like=lifted(np.zeros_like),
        einsum=lifted(np.einsum), where=lifted(np.where), all=lifted(np.all),
        isfinite=lifted(np.isfinite),
        concatenate=lambda arrays, axis=0: StrictArray(
            np.concatenate([_raw(a) for a in arrays], axis=axis)))
    return xp, log


class StrictBackend(NumpyBackend):
    """Products on StrictArray blocks, counted on the operator (like CupyBackend.matmat)."""

    name = "strict"

    def __init__(self):
        self.xp, self.log = strict_namespace()

    def matmat(self, op, X):
        assert isinstance(X, StrictArray), f"a host block reached the product: {type(X)}"
        M = op.matrix.array if isinstance(op.matrix, FakeCupyMatrix) else op.matrix
        op.count(X.shape[1])
        return StrictArray(np.asarray(M @ X.data, dtype=op.dtype))


@pytest.mark.parametrize("form", ["dense", "sparse"])
@pytest.mark.parametrize("method", METHODS)
def test_only_small_results_cross_to_the_host(method, form):
    M = _inputs()[form]
    host = lmatrank.estimate_rank(M, method=method, rng=5, check_symmetry=False,
                                  **OPTIONS[method])
    be = StrictBackend()
    dev = lmatrank.estimate_rank(M, method=method, rng=5, check_symmetry=False, backend=be,
                                 **OPTIONS[method])
    # only the sketch's tall QR is a different (numpy instead of scipy) LAPACK call
    _assert_same(host, dev, method, exact=method != "sketch")
    assert be.log.to_host, "nothing came back to the host"
    assert all(N not in shape for shape in be.log.to_host), be.log.to_host
    big_moves = [shape for shape in be.log.to_device if N in shape]
    opts = OPTIONS[method]
    if method in ("chebyshev", "kpm"):
        n_blocks = -(-opts["n_probes"] // opts["block_size"])
        assert big_moves == [(N,)] + [(N, opts["block_size"])] * (n_blocks - 1) \
            + [(N, opts["n_probes"] - (n_blocks - 1) * opts["block_size"])]
    elif method == "slq":
        n_blocks = -(-opts["n_probes"] // opts["block_size"])
        assert len(big_moves) == n_blocks and all(s[0] == N for s in big_moves)
    else:   # each Omega block moved once (kept in memory: never regenerated), and the
        # fresh probes of the Rayleigh-Ritz check's tail bound
        probes = dev.info["rayleigh_ritz_products"] - dev.info["sketch_rank"]
        assert sum(s[1] for s in big_moves) == dev.info["sketch_width"] + probes


def test_strict_arrays_refuse_implicit_conversion():
    xp, _ = strict_namespace()
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(xp.asarray(np.ones(3)))
    with pytest.raises(TypeError, match="host array met a device array"):
        xp.asarray(np.ones(3)) + np.ones(3)


def test_building_blocks_in_the_strict_namespace():
    A = _matrix(1)
    V = np.random.default_rng(0).standard_normal((N, 4))
    xp, log = strict_namespace()

    def apply(X):
        assert isinstance(X, StrictArray)
        return StrictArray(A @ X.data)

    ref = lanczos(lambda X: A @ X, V[:, 0], 20, keep_basis=True)
    res = lanczos(apply, V[:, 0], 20, keep_basis=True, xp=xp)
    np.testing.assert_array_equal(res.alpha, ref.alpha)
    np.testing.assert_array_equal(res.beta, ref.beta)
    assert isinstance(res.basis, StrictArray)
    np.testing.assert_array_equal(res.basis.data, ref.basis)

    ref = batched_lanczos(lambda X: A @ X, V, 20)
    res = batched_lanczos(apply, V, 20, xp=xp)
    np.testing.assert_array_equal(res.alpha, ref.alpha)
    np.testing.assert_array_equal(res.steps, ref.steps)
    assert isinstance(res.basis, StrictArray)

    ref = chebyshev_moments(lambda X: A @ X, V, 10, center=0.0, half_width=12.0, doubling=True)
    res = chebyshev_moments(apply, V, 10, center=0.0, half_width=12.0, doubling=True, xp=xp)
    assert isinstance(res, np.ndarray)
    np.testing.assert_array_equal(res, ref)
    assert all(N not in shape for shape in log.to_host)


def test_zero_start_vectors_are_refused_in_any_namespace():
    xp, _ = strict_namespace()
    with pytest.raises(ValueError, match="Lanczos start vector is zero"):
        lanczos(lambda X: X, np.zeros(5), 3, xp=xp)
    with pytest.raises(ValueError, match="a Lanczos start vector is zero"):
        batched_lanczos(lambda X: X, np.zeros((5, 2)), 3, xp=xp)
