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
- :class:`~lmatrank.operators.KroneckerProduct`: identity (26) as one GEMM and
  one strided-batched GEMM (:class:`DeviceKronecker`);
- :class:`~lmatrank.operators.LinearNetworkHessian`: ``U = sum_k L_k V_k R_k``,
  ``(H V)_k = 2 L_k^T U Sigma_x R_k^T`` with batched GEMMs over the block
  (:class:`DeviceLinearNetworkHessian`);
- CuPy arrays, cupyx sparse matrices and cupyx LinearOperators: their own ``@``;
- PyTorch CUDA tensors and operators: zero-copy through DLPack
  (:func:`torch_dlpack_apply`).

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

from ._counter_rng import CounterStream
from ._cupy_kernels import CudaKernels, ReferenceKernels, launch_geometry

__all__ = ["CupyBackend", "DeviceKronecker", "DeviceLinearNetworkHessian", "device_host_apply",
           "device_namespace",
           "load_cupy", "operator_device_namespace", "torch_dlpack_apply"]

# DLPack device types that are CUDA memory (kDLCUDA, kDLCUDAManaged)
_DLPACK_CUDA = (2, 13)


def load_cupy():
    """Import cupy and check that a CUDA device is usable.

    Raises
    ------
    ImportError
        When cupy is not installed, or installed without a usable device or
        driver (the message says which).
    """
    try:
        cp = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        raise ImportError(f"cupy is not importable ({type(exc).__name__}: {exc}); install the "
                          "extra lmatrank[gpu] (see docs/gpu.md)") from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy_backends.cuda.api.runtime.CUDARuntimeError
        raise ImportError(f"cupy is installed but no CUDA device is usable ({exc})") from None
    if count < 1:
        raise ImportError("cupy is installed but no CUDA device is present")
    return cp


def _root_module(obj):
    return type(obj).__module__.split(".", 1)[0]


def device_namespace(A):
    """Name of the device namespace `A` lives in: ``"cupy"``, ``"torch"`` or None (host).

    Decided from the object alone, without importing cupy or torch: CuPy arrays,
    cupyx sparse matrices and cupyx LinearOperators (module ``cupy``/``cupyx``),
    objects whose ``__array_namespace__()`` is cupy, PyTorch tensors or
    operators on a CUDA device (``.device.type == "cuda"``), and any object
    whose ``__dlpack_device__()`` is CUDA memory.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.backends import device_namespace
    >>> device_namespace(np.eye(3)) is None
    True
    """
    root = _root_module(A)
    if root in ("cupy", "cupyx"):
        return "cupy"
    namespace = getattr(A, "__array_namespace__", None)
    if callable(namespace):
        try:
            name = getattr(namespace(), "__name__", "")
        except Exception:
            name = ""
        if name.split(".", 1)[0] in ("cupy", "cupyx"):
            return "cupy"
    device = getattr(A, "device", None)
    if device is not None and _root_module(device) == "torch" and getattr(device, "type", None) == "cuda":
        return "torch"
    dlpack_device = getattr(A, "__dlpack_device__", None)
    if callable(dlpack_device):
        try:
            kind = int(dlpack_device()[0])
        except Exception:
            kind = None
        if kind in _DLPACK_CUDA:
            return "torch" if root == "torch" else "cupy"
    return None


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


def device_host_apply(A):
    """``X -> A @ X`` for a device matrix `A`, taking and returning *host* blocks.

    Serves only the set-up products of an estimate (symmetry probes, Lanczos
    bounds): each call moves one block to the device and back. The Langevin
    dynamics on the CuPy backend never use it. cupy/torch are imported on first
    use, so wrapping a device object is free; a device input on a machine
    without a usable cupy fails on its first product with a ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.backends import device_host_apply
    >>> class FakeCupyMatrix:          # anything from the cupy namespace counts as a device input
    ...     __module__ = "cupy"
    ...     shape = (2, 2)
    >>> apply = device_host_apply(FakeCupyMatrix())   # lazy: nothing imported or moved yet
    >>> callable(apply)
    True
    """
    space = device_namespace(A)
    apply = A.matmat if hasattr(A, "matmat") else (lambda X: A @ X)

    def host_matmat(X):
        if space == "torch":
            torch = sys.modules.get("torch") or importlib.import_module("torch")
            block = torch.from_numpy(np.ascontiguousarray(X)).to(A.device)
            return apply(block).cpu().numpy()
        try:
            cp = load_cupy()
        except ImportError as exc:
            raise ValueError(f"the input lives on a CUDA device but cupy is not usable here: "
                             f"{exc}") from None
        return cp.asnumpy(apply(cp.asarray(X)))

    return host_matmat


class DeviceKronecker:
    """:class:`~lmatrank.operators.KroneckerProduct` with its factors on the device.

    ``kron(A, B) @ X`` is computed as in the host class (row-major identity (26)):
    one ``(ma, ma) x (ma, mb*b)`` GEMM with ``A`` and one strided-batched GEMM
    with ``B`` over the ``ma`` slices, no Python loop over columns.
    """

    def __init__(self, kron, backend):
        A, B = kron.factors
        self._A = backend._device_factor(A)
        self._B = backend._device_factor(B)
        self._B_dense = not (isinstance(self._B, DeviceKronecker) or backend._is_sparse(self._B))
        self.ma, self.mb = int(kron.ma), int(kron.mb)
        self.dtype = kron.dtype
        self._xp = backend.xp

    def matmat(self, X):
        xp = self._xp
        ma, mb, b = self.ma, self.mb, X.shape[1]
        Z = _apply_factor(self._A, xp.ascontiguousarray(X).reshape(ma, mb * b))
        Z = Z.reshape(ma, mb, b)
        if self._B_dense:
            Y = xp.matmul(self._B, Z)                      # batched GEMM over the ma slices
        else:
            Zt = xp.ascontiguousarray(Z.transpose(1, 0, 2)).reshape(mb, ma * b)
            Y = _apply_factor(self._B, Zt).reshape(mb, ma, b).transpose(1, 0, 2)
        return xp.ascontiguousarray(Y.reshape(ma * mb, b))


def _apply_factor(F, X2):
    return F.matmat(X2) if isinstance(F, DeviceKronecker) else F @ X2


class DeviceLinearNetworkHessian:
    """:class:`~lmatrank.operators.LinearNetworkHessian` applied on the device.

    Rebuilt from the operator's public ``weights`` and ``sigma_x``: the prefix
    and suffix products ``L_k``, ``R_k`` are formed once on the host in the
    working dtype and copied to the device; a block product is
    ``U = sum_k L_k V_k R_k`` and ``(H V)_k = 2 L_k^T U Sigma_x R_k^T``, each a
    batched GEMM over the ``b`` columns (paper eqs. 24-26).
    """

    def __init__(self, hessian, backend):
        xp = backend.xp
        dtype = hessian.dtype
        Ws = [np.asarray(W, dtype=dtype) for W in hessian.weights]
        sigma = np.asarray(hessian.sigma_x, dtype=dtype)
        sigma_identity = np.array_equal(sigma, np.eye(sigma.shape[0], dtype=dtype))
        depth = len(Ws)
        right = [None]
        for W in Ws[:-1]:
            right.append(W if right[-1] is None else W @ right[-1])
        left = [None]
        for W in reversed(Ws[1:]):
            left.append(W if left[-1] is None else left[-1] @ W)
        left.reverse()
        dev = lambda M: None if M is None else xp.asarray(np.ascontiguousarray(M))  # noqa: E731
        self._left = [dev(Lk) for Lk in left]
        self._right = [dev(Rk) for Rk in right]
        self._left_t = [None if Lk is None else dev(Lk.T) for Lk in left]
        if sigma_identity:
            sig_right_t = [None if Rk is None else Rk.T for Rk in right]
        else:
            sig_right_t = [sigma if Rk is None else sigma @ Rk.T for Rk in right]
        self._sigma_right_t = [dev(M) for M in sig_right_t]
        self._shapes = [W.shape for W in Ws]
        sizes = [W.size for W in Ws]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_params = int(self._offsets[-1])
        self.depth = depth
        self.dtype = dtype
        self._xp = xp

    def _unpack(self, X):
        c = X.shape[1]
        # column-major vec of each (rows, cols) layer, as LinearNetworkHessian.unpack
        return [X[a:b].T.reshape(c, cols, rows).swapaxes(1, 2)
                for (rows, cols), a, b in zip(self._shapes, self._offsets[:-1],
                                              self._offsets[1:])]

    def _pack(self, stacks):
        xp = self._xp
        c = stacks[0].shape[0]
        cols = [xp.swapaxes(S, 1, 2).reshape(c, -1) for S in stacks]
        return xp.ascontiguousarray(xp.concatenate(cols, axis=1).T)

    def _chain(self, left, X, right):
        from ..operators._linear_network import _matmul3

        return _matmul3(left, X, right, matmul=self._xp.matmul)

    def matmat(self, X):
        V = self._unpack(X)
        U = None
        for Lk, Vk, Rk in zip(self._left, V, self._right):
            term = self._chain(Lk, Vk, Rk)
            U = term.copy() if U is None else U + term
        U *= 2
        out = [self._chain(Lt, U, SRt) for Lt, SRt in zip(self._left_t, self._sigma_right_t)]
        return self._pack(out).astype(self.dtype, copy=False)


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

    def _is_sparse(self, M):
        return bool(self._sparse.issparse(M))

    def _device_factor(self, F):
        from ..operators import KroneckerProduct
        if isinstance(F, KroneckerProduct):
            return DeviceKronecker(F, self)
        if _is_host_sparse(F):
            return F if not self.on_device else self._sparse.csr_matrix(F)
        return self.xp.asarray(F)

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
        from ..operators import KroneckerProduct, LinearNetworkHessian
        xp = self.xp
        if op.kind == "squared":
            inner = self._device_apply(op.matrix)
            return None if inner is None else (lambda X: inner(inner(X)))
        M = op.matrix
        if op.kind == "dense":
            D = xp.asarray(M)
            return lambda X: D @ X
        if op.kind == "sparse":
            S = self._device_factor(M)
            return lambda X: S @ X
        if isinstance(M, KroneckerProduct):
            return DeviceKronecker(M, self).matmat
        if isinstance(M, LinearNetworkHessian):
            return DeviceLinearNetworkHessian(M, self).matmat
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
        lmatrank.langevin._dynamics.DivergedRun
            At the first step whose observable is non-finite or exceeds `blowup`.
        """
        from ..langevin._dynamics import DivergedRun
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
            from .._progress import RunningChainMean
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


def _is_host_sparse(M):
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a hard dependency
        return False
    return sp.issparse(M)
