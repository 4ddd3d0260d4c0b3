"""CuPy GPU backend: fused Langevin step kernels and device-side products.

All array logic here is written against an array namespace ``xp`` and a kernel
object, so the very same orchestration runs

- on a GPU: ``CupyBackend()`` (``xp = cupy``, :class:`CudaKernels`), and
- on the host for tests: ``CupyBackend(xp=numpy)`` (the numpy reference
  kernels :class:`ReferenceKernels`, scipy.sparse in place of cupyx).

Nothing is copied between host and device behind the user's back: the backend
is chosen automatically only for inputs that already live on a CUDA device
(see :func:`device_namespace`), and every product of a device input runs on the
device. With an explicit ``backend="cupy"`` a host matrix is copied to the
device once (the user asked for it), never per step.

Products
--------
- dense arrays: ``M @ X`` (cuBLAS GEMM);
- scipy/cupyx CSR matrices: cuSPARSE SpMM on a ``cupyx.scipy.sparse.csr_matrix``;
- structured operators that provide ``to_device(xp, move)`` (the operator
  protocol below), e.g. :class:`~lmatrank.operators.KroneckerProduct` and
  :class:`~lmatrank.operators.LinearNetworkHessian`: their own product, run
  on device arrays (batched GEMMs, no Python loop over the block);
- CuPy arrays, cupyx sparse matrices and cupyx LinearOperators: their own ``@``;
- PyTorch CUDA tensors and operators: zero-copy through DLPack
  (:func:`torch_dlpack_apply`).

Operator protocol
-----------------
The backend never imports operator classes. It sees a
:class:`~lmatrank.operators.CountingOperator` through ``n``, ``dtype``,
``kind`` (``"dense"``, ``"sparse"``, ``"squared"``, ``"generic"``), ``matrix``,
``count(b)`` and ``matmat``; a structured ``matrix`` may offer
``to_device(xp, move)`` returning an object whose ``matmat`` takes and returns
``xp`` arrays, where ``move(M)`` copies a host ndarray or scipy sparse matrix to
the device (see :meth:`CupyBackend.move`).

Noise
-----
A :class:`~lmatrank.backends.CounterStream` passed as ``rng`` drives the
kernels with its own ``(key, call, stream)``, so the noise is the one the numpy
backend draws from the same stream. Any other numpy Generator gives one 64-bit
key per step (``gen.integers``), from which the kernels generate the block.
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import numpy as np
import scipy.sparse as sp

from .._errors import DivergedRun
from .._progress import RunningChainMean
from .._xp import device_host_apply, device_namespace, load_cupy
from ._counter_rng import CounterStream
from ._cupy_kernels import CudaKernels, ReferenceKernels, launch_geometry

__all__ = ["CupyBackend", "device_host_apply", "device_namespace", "load_cupy",
           "operator_device_namespace", "torch_dlpack_apply"]


def operator_device_namespace(op):
    """:func:`device_namespace` of the matrix behind a CountingOperator (None: host).

    Follows ``op.matrix`` through wrapping CountingOperators (e.g. the base of a
    :class:`~lmatrank.operators.SquaredOperator`).
    """
    seen = 0
    matrix = op
    while hasattr(matrix, "matmat") and hasattr(matrix, "kind") and hasattr(matrix, "matrix") \
            and seen < 16:
        matrix = matrix.matrix
        seen += 1
    return None if matrix is None else device_namespace(matrix)


def torch_dlpack_apply(A, xp):
    """``X -> A @ X`` for a torch CUDA tensor/operator `A`, exchanging blocks through DLPack.

    The block ``X`` (an `xp` array) is viewed as a torch tensor with
    ``torch.from_dlpack`` and the result viewed back with ``xp.from_dlpack``:
    no copy, no host round trip.
    """
    torch = sys.modules.get("torch") or importlib.import_module("torch")
    apply = A.matmat if hasattr(A, "matmat") else (lambda T: A @ T)

    def matmat(X):
        return xp.from_dlpack(apply(torch.from_dlpack(X)))

    return matmat


class CupyBackend:
    """Backend running the Langevin steps and products on a CUDA device with CuPy.

    Implements the interface documented on :class:`~lmatrank.backends.NumpyBackend`
    (``matmat``, ``noise``, ``em_update``) plus ``baoab_update``, the
    device-resident driver :meth:`run_euler_maruyama` and the array helpers
    ``zeros``/``asnumpy``/``apply_precond_factor``; the BAOAB chains
    (:class:`lmatrank.langevin._dynamics.BaoabChains`) stay on the device too.

    Parameters
    ----------
    xp : module, optional
        Array namespace. Default: cupy (raises ImportError without cupy or a
        device). ``numpy`` runs the same orchestration on the host with the
        numpy reference kernels (used by the tests).
    kernels : object, optional
        Kernel implementation (:class:`CudaKernels` for cupy,
        :class:`ReferenceKernels` for numpy).

    Examples
    --------
    The host stand-in, driven by a counter-based stream, reproduces the numpy
    backend exactly:

    >>> import numpy as np
    >>> from lmatrank.backends import CounterStream, CupyBackend, NumpyBackend
    >>> from lmatrank.operators import as_preconditioner
    >>> theta = np.zeros((5, 3)); s = np.ones((5, 3)); pre = as_preconditioner(None, 5)
    >>> a, b = theta.copy(), theta.copy()
    >>> _ = NumpyBackend().em_update(a, s, eta=0.1, noise_std=0.3, precond=pre,
    ...                              noise="rademacher", gen=CounterStream(1))
    >>> _ = CupyBackend(xp=np).em_update(b, s, eta=0.1, noise_std=0.3, precond=pre,
    ...                                  noise="rademacher", gen=CounterStream(1))
    >>> bool(np.array_equal(a, b))
    True
    """

    name = "cupy"

    def __init__(self, *, xp=None, kernels=None):
        if xp is None:
            xp = load_cupy()
        self.xp = xp
        self.on_device = xp.__name__.split(".", 1)[0] == "cupy"
        if kernels is None:
            kernels = CudaKernels(xp) if self.on_device else ReferenceKernels()
        self.kernels = kernels
        if self.on_device:
            self._sparse = importlib.import_module("cupyx.scipy.sparse")
        else:
            self._sparse = importlib.import_module("scipy.sparse")
        self._workspace = {}
        self._operators = {}
        self._preconditioners = {}

    # ------------------------------------------------------------ array helpers
    def zeros(self, shape, dtype):
        """A zero block on the backend's device."""
        return self.xp.zeros(shape, dtype=dtype)

    def asnumpy(self, x):
        """Host copy of a backend array (explicit, for results)."""
        return x.get() if hasattr(x, "get") and self.on_device else np.asarray(x)

    def _buffer(self, tag, shape, dtype):
        """A work buffer reused across steps (allocated once per shape and dtype)."""
        key = (tag, tuple(shape), np.dtype(dtype).str)
        buf = self._workspace.get(key)
        if buf is None:
            buf = self.xp.empty(shape, dtype=dtype)
            self._workspace[key] = buf
        return buf

    def _partials(self, n, c):
        _, _, grid, _ = launch_geometry(n, c)
        return self._buffer("partials", (grid[0] * 2 * c,), np.float64)

    def _contiguous(self, tag, X):
        if X.flags.c_contiguous:
            return X
        buf = self._buffer(tag, X.shape, X.dtype)
        buf[...] = X
        return buf

    def move(self, M):
        """Copy a host ndarray or scipy sparse matrix to the backend's device (CSR for sparse).

        The ``move`` of the operator protocol: structured operators call it on
        their host factors in ``to_device(xp, move)``. The numpy stand-in keeps
        sparse matrices as they are.
        """
        if sp.issparse(M):
            return self._sparse.csr_matrix(M) if self.on_device else M
        return self.xp.asarray(M)

    # ----------------------------------------------------------------- products
    def _device_apply(self, op):
        """``X -> S @ X`` on the device for a CountingOperator, or None (host-only operator)."""
        cached = self._operators.get(id(op))
        if cached is not None and cached[0] is op:
            return cached[1]
        apply = self._build_apply(op)
        self._operators[id(op)] = (op, apply)
        return apply

    def _build_apply(self, op):
        xp = self.xp
        if op.kind == "squared":
            inner = self._device_apply(op.matrix)
            return None if inner is None else (lambda X: inner(inner(X)))
        M = op.matrix
        if op.kind == "dense":
            D = xp.asarray(M)
            return lambda X: D @ X
        if op.kind == "sparse":
            S = self.move(M)
            return lambda X: S @ X
        to_device = getattr(M, "to_device", None)
        if callable(to_device):   # structured operator: its own product on device arrays
            return to_device(xp, self.move).matmat
        space = device_namespace(M)
        if space == "torch":
            return torch_dlpack_apply(M, xp)
        if space == "cupy":
            apply = M.matmat if hasattr(M, "matmat") else (lambda X: M @ X)
            return apply
        return None

    def matmat(self, op, X):
        """``S @ X`` for a CountingOperator `op`, computed where `X` lives; counts ``b``."""
        apply = self._device_apply(op)
        if apply is None:
            if self.on_device:
                raise TypeError(
                    f"operator {op.name!r} works on host arrays; the cupy backend keeps the "
                    "chains on the device and will not copy a block to the host every step. "
                    "Pass a CuPy array, cupyx sparse matrix or LinearOperator, or a torch CUDA "
                    "operator, or use backend='numpy'/'numba'")
            return op.matmat(X)   # host stand-in: the operator counts itself
        if X.ndim != 2 or X.shape[0] != op.n:
            raise ValueError(f"expected a block of shape ({op.n}, b), got {X.shape}")
        Y = apply(X)
        if Y.shape != X.shape:
            raise ValueError(f"operator returned shape {Y.shape} for a block of shape {X.shape}")
        op.count(X.shape[1])
        return Y if Y.dtype == op.dtype else Y.astype(op.dtype)

    # -------------------------------------------------------------------- noise
    @staticmethod
    def noise_source(gen):
        """``(key, call, stream)`` of the next noise block drawn from `gen`.

        A :class:`CounterStream` gives its own key and next call number; any
        other numpy Generator gives a fresh 64-bit key (call 0, stream 0).
        """
        if isinstance(gen, CounterStream):
            return gen.key, gen.take_call(), gen.stream
        if isinstance(gen, np.random.Generator):
            key = int(gen.integers(0, 2 ** 64, dtype=np.uint64))
            return key, 0, 0
        raise TypeError(f"gen must be a numpy Generator or CounterStream, got {type(gen).__name__}")

    def noise(self, gen, shape, kind, dtype):
        """A block of counter-based noise on the backend's device."""
        out = self.xp.empty(shape, dtype=dtype)
        key, call, stream = self.noise_source(gen)
        return self.kernels.noise(out, key, call, stream, kind)

    # ------------------------------------------------------------ preconditioner
    def _device_preconditioner(self, precond, dtype):
        """``(gdiag, groot, apply, apply_factor)``: diagonal arrays or product callables."""
        key = (id(precond), np.dtype(dtype).str)
        cached = self._preconditioners.get(key)
        if cached is not None and cached[0] is precond:
            return cached[1]
        xp = self.xp
        if precond.is_identity:
            entry = (None, None, None, None)
        elif precond.diagonal is not None:
            g = np.asarray(precond.diagonal, dtype=dtype)
            gdiag = xp.asarray(g)
            entry = (gdiag, xp.sqrt(gdiag), None, None)
        elif precond.name == "dense" and self.on_device:
            # the dense preconditioner closes over host arrays: materialise G and L once
            eye = np.eye(precond.n, dtype=dtype)
            G = xp.asarray(precond.apply(eye))
            L = xp.asarray(precond.apply_factor(eye))
            entry = (None, None, (lambda Y: G @ Y), (lambda Z: L @ Z))
        else:
            entry = (None, None, precond.apply, precond.apply_factor)
        self._preconditioners[key] = (precond, entry)
        return entry

    def apply_precond_factor(self, precond, X):
        """``L X`` with ``L L^T = G`` for a block `X` on the backend's device."""
        gdiag, groot, _, apply_factor = self._device_preconditioner(precond, X.dtype)
        if groot is not None:
            return groot[:, None] * X
        return X if apply_factor is None else apply_factor(X)

    # --------------------------------------------------------------------- steps
    def _em_into(self, theta, s_theta, observables, *, eta, noise_std, precond, noise, gen):
        n, c = theta.shape
        if not theta.flags.c_contiguous:
            raise ValueError("the fused EM kernel needs a C-contiguous theta block")
        s = self._contiguous("s_theta", s_theta)
        gdiag, groot, apply, apply_factor = self._device_preconditioner(precond, theta.dtype)
        key, call, stream = self.noise_source(gen)
        gs = xi = None
        if apply is not None:
            gs = self._contiguous("gs", apply(s))
            raw = self.kernels.noise(self._buffer("xi", theta.shape, theta.dtype),
                                     key, call, stream, noise)
            xi = self._contiguous("xi_coloured", apply_factor(raw))
        extra = {} if not self.on_device else {"partial": self._partials(n, c)}
        self.kernels.em_step(theta, s, gs_given=gs, xi_given=xi, gdiag=gdiag, groot=groot,
                             eta=eta, noise_std=noise_std, key=key, call=call, stream=stream,
                             kind=noise, observables=observables, **extra)
        return observables

    def em_update(self, theta, s_theta, *, eta, noise_std, precond, noise, gen):
        """One fused EM step in place on `theta`; returns ``(quad, gnorm)`` of the old state."""
        with self._device_of(theta):
            observables = self.xp.empty((2, theta.shape[1]), dtype=np.float64)
            self._em_into(theta, s_theta, observables, eta=eta, noise_std=noise_std,
                          precond=precond, noise=noise, gen=gen)
            return observables[0], observables[1]

    def baoab_update(self, q, p, s_q, *, h, friction, temperature, precond, noise, gen):
        """One BAOAB step in place on ``(q, p)``; returns ``q^T s_q`` of the incoming state.

        The step of :meth:`lmatrank.backends.NumpyBackend.baoab_update` (merged
        half kicks), fused into one kernel for identity and diagonal
        preconditioners; other preconditioners run it as separate array
        operations with their own ``apply``/``apply_factor``.
        """
        gdiag, groot, apply, apply_factor = self._device_preconditioner(precond, q.dtype)
        n, c = q.shape
        with self._device_of(q):
            if apply is not None:
                quad = self.xp.einsum("ij,ij->j", q, s_q, dtype=np.float64)
                p -= h * apply(s_q)
                q += (0.5 * h) * p
                p *= friction
                p += np.sqrt(temperature * (1.0 - friction * friction)) * apply_factor(
                    self.noise(gen, p.shape, noise, p.dtype))
                q += (0.5 * h) * p
                return quad
            if not (q.flags.c_contiguous and p.flags.c_contiguous):
                raise ValueError("the fused BAOAB kernel needs C-contiguous q and p blocks")
            s = self._contiguous("s_q", s_q)
            key, call, stream = self.noise_source(gen)
            observables = self.xp.empty((c,), dtype=np.float64)
            extra = {} if not self.on_device else {"partial": self._partials(n, c)}
            self.kernels.baoab_step(q, p, s, gdiag=gdiag, groot=groot, h=h, friction=friction,
                                    temperature=temperature, key=key, call=call, stream=stream,
                                    kind=noise, observables=observables, **extra)
            return observables

    def _device_of(self, arr):
        device = getattr(arr, "device", None) if self.on_device else None
        return device if device is not None and hasattr(device, "__enter__") \
            else contextlib.nullcontext()

    def run_euler_maruyama(self, op, *, n_chains, n_steps, eta, sigma2, precond, noise, gen,
                           corrected=True, blowup=None, progress=None, burn_in=0, budget=None,
                           check_every=64):
        """Device-resident version of :func:`lmatrank.langevin._dynamics.run_euler_maruyama`.

        Same arguments and result (a host ``(n_steps, n_chains)`` float64 trace,
        the same arithmetic per step); the chains, the observables and the trace
        stay on the device, which is synchronised only every `check_every`
        steps to test for divergence (and to report progress). With the numpy
        stand-in and a :class:`CounterStream` the trace equals the numpy
        backend's bit for bit.

        Raises
        ------
        lmatrank._errors.DivergedRun
            At the first step whose observable is non-finite or exceeds `blowup`.
        """
        xp = self.xp
        n = op.n
        if blowup is None:
            blowup = 100.0 * n + 1000.0
        check_every = max(1, int(check_every))
        theta = xp.zeros((n, n_chains), dtype=op.dtype)
        trace = xp.empty((n_steps, n_chains), dtype=np.float64)
        observables = self._buffer("observables", (2, n_chains), np.float64)
        scratch = self._buffer("gnorm_term", (n_chains,), np.float64)
        noise_std = float(np.sqrt(eta * sigma2))
        inv_sigma2 = 1.0 / sigma2
        tracker = None
        if progress is not None:
            tracker = RunningChainMean(burn_in)
        host = np.empty((n_steps, n_chains), dtype=np.float64)
        checked = 0
        for k in range(n_steps):
            s_theta = self.matmat(op, theta)
            self._em_into(theta, s_theta, observables, eta=eta, noise_std=noise_std,
                          precond=precond, noise=noise, gen=gen)
            row = trace[k]
            xp.multiply(observables[0], 2.0, out=row)
            if corrected:
                xp.multiply(observables[1], eta, out=scratch)
                xp.subtract(row, scratch, out=row)
            xp.multiply(row, inv_sigma2, out=row)
            if k + 1 - checked >= check_every or k == n_steps - 1:
                chunk = self.asnumpy(trace[checked:k + 1])
                host[checked:k + 1] = chunk
                bad = ~((chunk.max(axis=1) < blowup) & (chunk.min(axis=1) > -blowup))
                if bad.any():
                    first = int(np.argmax(bad))
                    raise DivergedRun(checked + first, float(chunk[first].max()))
                if tracker is not None:
                    for r in chunk:
                        progress(op.matvecs, budget, *tracker.push(r))
                checked = k + 1
        return host

