"""CuPy backend orchestration with numpy standing in for cupy, dispatch, and GPU checks.

``CupyBackend(xp=numpy)`` runs the backend's own Python logic (buffers,
preconditioners, operator dispatch, noise keys, the device-resident driver)
with the numpy reference kernels; driven by a CounterStream it must reproduce
the numpy backend bit for bit. GPU tests are marked ``gpu`` and skip without a
device.
"""

import math
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from lmatrank import estimate_rank
from lmatrank.backends import (CounterStream, CupyBackend, NumpyBackend, device_namespace,
                               get_backend)
from lmatrank.backends import _FACTORIES
from lmatrank.backends._cupy import load_cupy, operator_device_namespace, torch_dlpack_apply
from lmatrank._errors import DivergedRun
from lmatrank.langevin._dynamics import BaoabChains, run_euler_maruyama
from lmatrank.operators import (KroneckerProduct, LinearNetworkHessian, SquaredOperator,
                                as_operator, as_preconditioner)
from tests._matrices import psd_with_rank

STAND_IN = "cupy-numpy-stand-in"


@pytest.fixture
def stand_in_backend():
    _FACTORIES[STAND_IN] = lambda: CupyBackend(xp=np)
    yield STAND_IN
    _FACTORIES.pop(STAND_IN, None)


def _preconditioner(kind, n, dtype, rng):
    if kind is None:
        return as_preconditioner(None, n, dtype)
    if kind == "diagonal":
        return as_preconditioner(rng.uniform(0.5, 2.0, n), n, dtype)
    M = rng.standard_normal((n, n))
    return as_preconditioner(M @ M.T + n * np.eye(n), n, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
@pytest.mark.parametrize("pre", [None, "diagonal", "dense"])
def test_em_update_equals_numpy_backend_bit_for_bit(dtype, noise, pre):
    rng = np.random.default_rng(0)
    n, c = 37, 5
    precond = _preconditioner(pre, n, dtype, rng)
    theta0 = rng.standard_normal((n, c)).astype(dtype)
    s = rng.standard_normal((n, c)).astype(dtype)
    a, b = theta0.copy(), theta0.copy()
    ga, gb = CounterStream(5), CounterStream(5)
    for _ in range(3):
        qa, na = NumpyBackend().em_update(a, s, eta=0.07, noise_std=0.3, precond=precond,
                                          noise=noise, gen=ga)
        qb, nb = CupyBackend(xp=np).em_update(b, s, eta=0.07, noise_std=0.3, precond=precond,
                                              noise=noise, gen=gb)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(qa, qb)
        np.testing.assert_array_equal(na, nb)
    assert ga.calls == gb.calls == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pre", [None, "diagonal", "dense"])
def test_baoab_update_equals_numpy_backend_bit_for_bit(dtype, pre):
    rng = np.random.default_rng(1)
    n, c = 29, 4
    precond = _preconditioner(pre, n, dtype, rng)
    q0 = rng.standard_normal((n, c)).astype(dtype)
    p0 = rng.standard_normal((n, c)).astype(dtype)
    s = rng.standard_normal((n, c)).astype(dtype)
    qa, pa, qb, pb = q0.copy(), p0.copy(), q0.copy(), p0.copy()
    ga, gb = CounterStream(8), CounterStream(8)
    kwargs = dict(h=0.3, friction=math.exp(-0.6), temperature=1.7, precond=precond,
                  noise="gaussian")
    ra = NumpyBackend().baoab_update(qa, pa, s, gen=ga, **kwargs)
    rb = CupyBackend(xp=np).baoab_update(qb, pb, s, gen=gb, **kwargs)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(qa, qb)
    np.testing.assert_array_equal(pa, pb)


def test_noise_follows_the_stream():
    backend = CupyBackend(xp=np)
    gen = CounterStream(4)
    block = backend.noise(gen, (6, 3), "rademacher", np.float32)
    np.testing.assert_array_equal(block, NumpyBackend().noise(CounterStream(4), (6, 3),
                                                              "rademacher", np.float32))
    # a plain Generator gives a fresh key per block, reproducibly
    one = backend.noise(np.random.default_rng(3), (6, 3), "gaussian", np.float64)
    two = backend.noise(np.random.default_rng(3), (6, 3), "gaussian", np.float64)
    np.testing.assert_array_equal(one, two)
    with pytest.raises(TypeError, match="numpy Generator or CounterStream"):
        backend.noise(3, (2, 2), "gaussian", np.float64)


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")
@pytest.mark.parametrize("scheme", ["em", "baoab"])
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
@pytest.mark.parametrize("make", ["dense", "sparse"])
def test_estimates_equal_numpy_backend_with_the_shared_stream(stand_in_backend, noise, make,
                                                              scheme):
    A, _ = psd_with_rank(np.random.default_rng(2), 80, 30, cond=20.0)
    M = A if make == "dense" else sp.csr_array(A)
    runs = [estimate_rank(M, method="langevin", rng=CounterStream(17), backend=name, noise=noise, scheme=scheme,
                          max_matvecs=3000, n_chains=8)
            for name in ("numpy", stand_in_backend)]
    assert runs[0].estimate == runs[1].estimate
    assert runs[0].stderr == runs[1].stderr
    assert runs[0].matvecs == runs[1].matvecs
    np.testing.assert_array_equal(runs[0].info["rank_curve"], runs[1].info["rank_curve"])
    assert runs[0].info["backend"] == "numpy" and runs[1].info["backend"] == "cupy"
    assert abs(runs[0].estimate - 30) < 5 * runs[0].stderr + 0.5


def test_device_driver_trace_equals_host_dynamics():
    A, _ = psd_with_rank(np.random.default_rng(5), 50, 20, cond=10.0)
    precond = as_preconditioner(np.linspace(0.5, 1.5, 50), 50)
    traces = []
    for backend in (NumpyBackend(), CupyBackend(xp=np)):
        op = as_operator(A, check_symmetry=False)
        kwargs = dict(n_chains=6, n_steps=150, eta=0.15, sigma2=1.0, precond=precond,
                      noise="rademacher", gen=CounterStream(2))
        if isinstance(backend, CupyBackend):
            trace = backend.run_euler_maruyama(op, check_every=7, **kwargs)
        else:
            trace = run_euler_maruyama(op, backend, **kwargs)
        traces.append((trace, op.matvecs))
    np.testing.assert_array_equal(traces[0][0], traces[1][0])
    assert traces[0][1] == traces[1][1] == 150 * 6


def test_device_driver_reports_the_first_diverged_step():
    A = np.diag([1.0, 10.0, 0.0])
    steps = []
    for backend in (NumpyBackend(), CupyBackend(xp=np)):
        op = as_operator(A, check_symmetry=False)
        # uncorrected observable: it grows positive when eta * lambda_max > 2
        kwargs = dict(n_chains=2, n_steps=400, eta=0.25, sigma2=1.0,
                      precond=as_preconditioner(None, 3), noise="rademacher",
                      gen=CounterStream(0), corrected=False)
        with pytest.raises(DivergedRun) as info:
            if isinstance(backend, CupyBackend):
                backend.run_euler_maruyama(op, check_every=64, **kwargs)
            else:
                run_euler_maruyama(op, backend, **kwargs)
        steps.append(info.value.step)
    assert steps[0] == steps[1]


def _baoab_chains(backend, A, precond, h, check_every):
    op = as_operator(A, check_symmetry=False)
    chains = BaoabChains(op, backend, n_chains=5, h=h, friction=0.7, temperature=0.5,
                         precond=precond, noise="rademacher", gen=CounterStream(4),
                         check_every=check_every)
    return op, chains


def test_device_baoab_chains_equal_host_chains():
    # the device layout (rows written where the chains live, copied to the host every
    # check_every rows, preconditioner factor applied by the backend) changes nothing
    A, _ = psd_with_rank(np.random.default_rng(6), 40, 15, cond=10.0)
    precond = as_preconditioner(np.linspace(0.5, 1.5, 40), 40)
    runs = []
    for backend, check_every in ((NumpyBackend(), None), (CupyBackend(xp=np), 7)):
        op, chains = _baoab_chains(backend, A, precond, 0.5, check_every)
        trace = np.concatenate([chains.advance(k) for k in (5, 13, 20)])
        runs.append((trace, chains.q.copy(), chains.p.copy(), op.matvecs))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    assert runs[0][3] == runs[1][3] == 38 * 5
    assert runs[0][0][-1].min() > 0


def test_device_baoab_chains_report_the_first_diverged_step():
    A = np.diag([1.0, 30.0, 0.0])  # h^2 lambda_max = 30 > 4: unstable
    steps = []
    for backend, check_every in ((NumpyBackend(), None), (CupyBackend(xp=np), 16)):
        _, chains = _baoab_chains(backend, A, as_preconditioner(None, 3), 1.0, check_every)
        with pytest.raises(DivergedRun) as info:
            chains.advance(400)
        steps.append(info.value.step)
    assert steps[0] == steps[1] < 400


# ---------------------------------------------------------------- products
def _check_product(M, *, n_chains=3):
    op = as_operator(M, check_symmetry=False)
    ref_op = as_operator(M, check_symmetry=False)
    X = np.random.default_rng(0).standard_normal((op.n, n_chains)).astype(op.dtype)
    Y = CupyBackend(xp=np).matmat(op, X)
    np.testing.assert_allclose(Y, ref_op.matmat(X), rtol=1e-12, atol=1e-12)
    assert op.matvecs == n_chains
    assert Y.dtype == op.dtype


def test_dense_and_sparse_products():
    A, _ = psd_with_rank(np.random.default_rng(1), 30, 10)
    _check_product(A)
    _check_product(sp.csr_array(A))


def test_kronecker_products_including_nested_and_sparse_factors():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((4, 4))
    B = rng.standard_normal((3, 3))
    C = sp.random(5, 5, density=0.5, random_state=1)
    _check_product(KroneckerProduct(A + A.T, B + B.T))
    _check_product(KroneckerProduct(A + A.T, (C + C.T).tocsr()))
    _check_product(KroneckerProduct(KroneckerProduct(A, B), A))


@pytest.mark.parametrize("with_sigma", [False, True])
def test_linear_network_hessian_product(with_sigma):
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal((4, 3)), rng.standard_normal((5, 4)),
               rng.standard_normal((2, 5))]
    sigma = None
    if with_sigma:
        M = rng.standard_normal((3, 3))
        sigma = M @ M.T + 3 * np.eye(3)
    _check_product(LinearNetworkHessian(weights, sigma))


def test_squared_operator_counts_on_its_base():
    A, _ = psd_with_rank(np.random.default_rng(4), 20, 5)
    base = as_operator(A, check_symmetry=False)
    op = SquaredOperator(base)
    X = np.ones((20, 2))
    np.testing.assert_allclose(CupyBackend(xp=np).matmat(op, X), A @ (A @ X))
    assert base.matvecs == 4


def test_host_only_operator_is_refused_on_a_device():
    from scipy.sparse.linalg import aslinearoperator
    op = as_operator(aslinearoperator(np.eye(4)), check_symmetry=False)
    stand_in = CupyBackend(xp=np)
    np.testing.assert_array_equal(stand_in.matmat(op, np.ones((4, 2))), np.ones((4, 2)))
    stand_in.on_device = True   # pretend: the same decision a real device backend takes
    stand_in._operators.clear()
    with pytest.raises(TypeError, match="works on host arrays"):
        stand_in.matmat(op, np.ones((4, 2)))


# ---------------------------------------------------------- namespace dispatch
class _FakeCupyArray:
    __module__ = "cupy._core.core"
    shape = (3, 3)
    dtype = np.dtype(np.float64)

    def __matmul__(self, X):
        return X


class _FakeDevice:
    __module__ = "torch"

    def __init__(self, kind):
        self.type = kind


class _FakeTorchTensor:
    """Wraps a numpy array like a torch tensor; exposes DLPack through numpy."""
    __module__ = "torch"

    def __init__(self, array, kind="cuda"):
        self.array = np.asarray(array)
        self.device = _FakeDevice(kind)
        self.shape = self.array.shape
        self.dtype = self.array.dtype

    def __matmul__(self, other):
        return _FakeTorchTensor(self.array @ other.array)

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


class _FakeDlpackCuda:
    shape = (2, 2)

    def __dlpack_device__(self):
        return (2, 0)


class _FakeNamespaced:
    shape = (2, 2)

    def __array_namespace__(self):
        return types.SimpleNamespace(__name__="cupy")


def test_device_namespace_detection():
    assert device_namespace(np.eye(2)) is None
    assert device_namespace(sp.eye(2).tocsr()) is None
    assert device_namespace(_FakeCupyArray()) == "cupy"
    assert device_namespace(_FakeNamespaced()) == "cupy"
    assert device_namespace(_FakeDlpackCuda()) == "cupy"
    assert device_namespace(_FakeTorchTensor(np.eye(2))) == "torch"
    assert device_namespace(_FakeTorchTensor(np.eye(2), kind="cpu")) is None


def test_operator_namespace_follows_wrappers():
    op = as_operator(_FakeCupyArray(), check_symmetry=False)
    assert operator_device_namespace(op) == "cupy"
    assert operator_device_namespace(SquaredOperator(op)) == "cupy"
    assert operator_device_namespace(as_operator(np.eye(3), check_symmetry=False)) is None


def test_host_inputs_never_select_cupy():
    op = as_operator(np.eye(3), check_symmetry=False)
    assert get_backend(None, op).name in ("numba", "numpy")


def test_device_input_selects_cupy_or_says_why_not():
    op = as_operator(_FakeCupyArray(), check_symmetry=False)
    try:
        load_cupy()
    except ImportError:
        with pytest.raises(ValueError, match="lives on a CUDA device"):
            get_backend(None, op)
        with pytest.raises(ValueError, match="'cupy' is not available"):
            get_backend("cupy")
    else:  # pragma: no cover - machines with a GPU
        assert get_backend(None, op).name == "cupy"


def test_torch_operators_go_through_dlpack(monkeypatch):
    calls = []
    fake_torch = types.ModuleType("torch")

    def from_dlpack(x):
        calls.append("torch.from_dlpack")
        return _FakeTorchTensor(np.from_dlpack(x))

    fake_torch.from_dlpack = from_dlpack
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    A = np.diag([1.0, 2.0, 3.0])
    tensor = _FakeTorchTensor(A)
    X = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(torch_dlpack_apply(tensor, np)(X), A @ X)
    assert calls == ["torch.from_dlpack"]
    # through the backend: a generic operator whose matrix is a torch CUDA tensor
    op = as_operator(tensor, check_symmetry=False)
    Y = CupyBackend(xp=np).matmat(op, X)
    np.testing.assert_array_equal(Y, A @ X)
    assert op.matvecs == 2


# -------------------------------------------------------------------- GPU
def _cupy_or_skip():
    try:
        return load_cupy()
    except ImportError as exc:
        pytest.skip(f"no usable GPU: {exc}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_gpu_kernels_match_the_reference(dtype, noise):
    cp = _cupy_or_skip()
    rng = np.random.default_rng(0)
    n, c = 1000, 7
    precond = as_preconditioner(rng.uniform(0.5, 2.0, n), n, dtype)
    theta = rng.standard_normal((n, c)).astype(dtype)
    s = rng.standard_normal((n, c)).astype(dtype)
    host = theta.copy()
    qh, gh = CupyBackend(xp=np).em_update(host, s, eta=0.1, noise_std=0.2, precond=precond,
                                          noise=noise, gen=CounterStream(1))
    dev = cp.asarray(theta)
    qd, gd = CupyBackend().em_update(dev, cp.asarray(s), eta=0.1, noise_std=0.2,
                                     precond=precond, noise=noise, gen=CounterStream(1))
    if noise == "rademacher":
        np.testing.assert_array_equal(cp.asnumpy(dev), host)
    else:  # libdevice vs libm transcendental rounding
        np.testing.assert_allclose(cp.asnumpy(dev), host, rtol=8 * np.finfo(dtype).eps)
    np.testing.assert_allclose(cp.asnumpy(qd), qh, rtol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(gd), gh, rtol=1e-12)


@pytest.mark.gpu
def test_gpu_estimate_matches_numpy_backend():
    cp = _cupy_or_skip()
    A, _ = psd_with_rank(np.random.default_rng(2), 200, 60, cond=20.0)
    host = estimate_rank(A, method="langevin", rng=CounterStream(3), backend="numpy",
                         max_matvecs=4000)
    op = as_operator(A, check_symmetry=False)
    backend = CupyBackend()
    trace = backend.run_euler_maruyama(
        op, n_chains=8, n_steps=400, eta=host.info["eta"], sigma2=1.0,
        precond=as_preconditioner(None, 200), noise="rademacher", gen=CounterStream(3))
    ref = run_euler_maruyama(as_operator(A, check_symmetry=False), NumpyBackend(), n_chains=8,
                             n_steps=400, eta=host.info["eta"], sigma2=1.0,
                             precond=as_preconditioner(None, 200), noise="rademacher",
                             gen=CounterStream(3))
    np.testing.assert_allclose(trace, ref, rtol=1e-9, atol=1e-9)
    assert cp.cuda.runtime.getDeviceCount() >= 1


def test_device_input_without_cupy_fails_on_first_product_with_a_clear_error():
    try:
        load_cupy()
    except ImportError:
        pass
    else:  # pragma: no cover - machines with a GPU
        pytest.skip("cupy is usable here")
    from lmatrank import estimate_rank

    with pytest.raises(ValueError, match="lives on a CUDA device but cupy is not usable"):
        estimate_rank(_FakeCupyArray(), rng=0)


def test_device_host_apply_moves_torch_blocks_through_the_tensor_device(monkeypatch):
    from lmatrank.backends import device_host_apply

    fake_torch = types.ModuleType("torch")

    class Block(_FakeTorchTensor):
        def to(self, device):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.array

    fake_torch.from_numpy = lambda X: Block(X)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    A = np.diag([1.0, 2.0, 3.0])
    tensor = _FakeTorchTensor(A)
    tensor.__matmul__ = None  # the operator's own @ must be used, through matmat below
    op = types.SimpleNamespace(shape=(3, 3), dtype=np.dtype(np.float64), device=tensor.device,
                               matmat=lambda T: Block(A @ T.array))
    X = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(device_host_apply(op)(X), A @ X)


@pytest.mark.parametrize("diagonal", [False, True])
def test_langevin_setup_lanczos_stays_on_a_device_backend(diagonal, monkeypatch):
    # with a device backend the step-size Lanczos takes the backend's products (no host
    # round trip per vector) and finds the same bounds as the host path
    from lmatrank.langevin._estimator import _spectrum_bounds

    A, _ = psd_with_rank(np.random.default_rng(8), 60, 25, cond=30.0)
    precond = as_preconditioner(np.linspace(0.5, 2.0, 60) if diagonal else None, 60)
    host = _spectrum_bounds(as_operator(A, check_symmetry=False), precond,
                            np.random.default_rng(1), 30)
    device = CupyBackend(xp=np)
    monkeypatch.setattr(device, "on_device", True)  # only the Lanczos path looks at it
    op = as_operator(A, check_symmetry=False)

    def host_product(X):
        raise AssertionError("the host product of a device input was used")

    monkeypatch.setattr(op, "matmat", host_product)
    bounds = _spectrum_bounds(op, precond, np.random.default_rng(1), 30, device)
    for key in ("ritz_min", "ritz_max", "lambda_min", "lambda_max"):
        assert bounds[key] == pytest.approx(host[key], rel=1e-10, abs=1e-12)
    assert bounds["steps"] == host["steps"] and op.matvecs == bounds["steps"]
