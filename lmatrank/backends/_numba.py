"""Numba CPU backend: parallel CSR block products and fused Langevin steps.

The backend implements the interface documented on
:class:`~lmatrank.backends.NumpyBackend` (``matmat``, ``noise``,
``em_update``) and adds a fused step, ``em_step``, that does the sparse
product, the noise, the update and the observables in one pass over memory.

What is faster than the numpy reference, and why
------------------------------------------------
- CSR @ block: rows in parallel (``prange``); each block row in explicit SIMD
  chunks of 8 columns (:mod:`._simd`) with four running sums in registers and
  masked loads for the last ``b % 8`` columns; a separate single-column kernel
  for ``b == 1``. scipy's product is single-threaded and does not vectorise
  across the block. (Numba's own loop vectoriser left the common widths 8 and
  32 scalar: its unrolled vector loop needs more iterations than that.)
- Noise: counter-based (SplitMix64 of a per-step key and the entry's position,
  see :mod:`._numba_kernels`), generated inside the update loop; Rademacher
  signs cost one 64-bit hash per 64 entries.
- ``em_step`` / ``baoab_step`` for sparse operators run either one fused
  kernel (product, noise, update and float64 observables: the state is read
  once and the next state written once, into a second buffer since
  neighbouring rows still need the old values) or two passes (the product
  kernel, then the update kernel). Which is faster depends on the matrix:
  measured on this project's 2-core machine (``python -m bench speed``), the
  fused kernel wins on banded matrices, whose gathers hit the cache, and the
  two passes win by a few percent on random sparsity, where the product waits
  on scattered loads and the longer fused loop body keeps fewer of them in
  flight. The two variants perform the same floating-point operations in the
  same order (bit-identical results), so ``fuse="auto"`` (the default) simply
  times each on the first calls for a given matrix and block and keeps the
  faster. Blocks with fewer than ``FUSE_RACE_MIN_ENTRIES`` entries (state and
  matrix fit in cache, where the fused pass saves little) take the two passes
  without timing, which spares compiling the fused kernel. The options of a step
  (reordering, preconditioner, Gaussian noise, float32 rounding check) are
  compiled into separate kernels rather than tested in the loop, so the first
  call of each combination compiles (a few seconds; cached on disk afterwards).
- Blocks with fewer than ``PARALLEL_MIN_ENTRIES`` entries run the serial
  driver of each kernel, larger ones the parallel one; both call the same
  compiled chunk function (see :mod:`._numba_kernels`), so the results agree
  bit for bit.
- Dense operators use BLAS (``numpy.matmul`` into a preallocated buffer);
  structured operators (Kronecker, linear-network Hessian) use their own
  stacked BLAS products, which have no Python loops over chains.
- Optional reverse Cuthill–McKee reordering of sparse inputs (``reorder``),
  applied once; rank is permutation-invariant, and the noise stays attached to
  the original row index, so a reordered run follows the same trajectory up
  to rounding.

Reproducibility
---------------
For a given ``rng`` state every result is bit-identical across runs *and
across thread counts*: the noise of entry ``(i, c)`` depends only on a 64-bit
key drawn from ``rng`` once per call and on ``(i, c)``; each output row is
computed by one thread in a fixed order; per-chain reductions are summed over
fixed chunks of rows in a fixed order. The kernels use fused multiply-adds where
the CPU has them, so bit-identity holds on one machine (or CPU family), not
across machines. Results differ from the numpy backend's
(different noise numbers, different summation order) but agree in
distribution; with the same noise numbers (see :meth:`NumbaBackend.counter_noise`)
a step agrees with the reference to rounding. Changing ``reorder`` changes
the summation order inside each row, i.e. the results to rounding only.

Float32
-------
With a float32 operator the matrix and the state are stored (and moved) in
float32 (products too, as scipy does); the updates and all observables are
computed in float64. Null-space components of the state random-walk (their size grows
like ``sqrt(k)`` noise steps) and are invisible to the observable in exact
arithmetic; storing such a large state in float32 adds rounding noise of
variance about ``eps^2 |theta|^2 / 12`` per entry and step, which inflates
the estimate by that fraction of the injected noise. The backend tracks this
ratio every fused step (``rounding_ratio``) and warns (RuntimeWarning) when it
exceeds ``ROUNDING_RATIO_WARN``; it grows like ``eps^2 k / 12`` (about 5e-11
after 1e4 steps), so re-centring is not needed at any practical run length.
"""

from __future__ import annotations

import time
import warnings

import numba  # noqa: F401  (the kernels' compiler: a missing numba is an ImportError here)
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from . import _numba_kernels as _k
from ._numpy import NumpyBackend

__all__ = ["NumbaBackend", "FUSE_RACE_MIN_ENTRIES", "FUSE_TRIALS", "PARALLEL_MIN_ENTRIES",
           "ROUNDING_RATIO_WARN", "REORDER_MIN_NNZ", "REORDER_MIN_GAIN"]

#: Warn when float32 rounding of the state adds this fraction of the Langevin noise.
ROUNDING_RATIO_WARN = 1e-4
#: ``reorder="auto"`` considers only matrices with at least this many nonzeros
#: (smaller ones fit in cache, where locality does not matter).
REORDER_MIN_NNZ = 200_000
#: ``reorder="auto"`` applies the permutation when it shrinks the mean column
#: distance ``mean |i - j|`` over the nonzeros by at least this factor.
REORDER_MIN_GAIN = 4.0

#: ``fuse="auto"`` times each sparse step variant this many times before choosing.
FUSE_TRIALS = 4

#: ``fuse="auto"`` times the two variants only for blocks (``max(n b, nnz)``) with at
#: least this many entries; smaller ones take the two passes at once.
FUSE_RACE_MIN_ENTRIES = 1 << 18

#: Blocks with fewer entries run the serial kernels: waking a thread pool costs
#: more than the work, and two spinning pools (Numba's OpenMP and OpenBLAS's,
#: alternating with dense products) slow each other down by 20x.
PARALLEL_MIN_ENTRIES = 1 << 18

_NOISE_KINDS = {"rademacher": _k.RADEMACHER, "gaussian": _k.GAUSSIAN}
_GENERAL = object()  # a preconditioner the kernels do not handle (see NumbaBackend._diagonal)


def _noise_kind(kind):
    try:
        return _NOISE_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown noise kind {kind!r}; expected 'rademacher' or 'gaussian'") \
            from None


def _driver(kernel, entries):
    """`kernel` (a parallel driver of :mod:`._numba_kernels`) for a block of `entries`
    entries, or its serial twin when the block is too small to share out."""
    if entries >= PARALLEL_MIN_ENTRIES:
        return kernel
    return getattr(_k, kernel.py_func.__name__ + "_serial")


def draw_key(gen) -> np.uint64:
    """The 64-bit noise key of one step, drawn from `gen` (advances `gen`)."""
    return np.uint64(gen.integers(0, 2**64, dtype=np.uint64))


def mean_column_distance(M) -> float:
    """``mean |i - j|`` over the stored entries of a CSR matrix (a locality measure)."""
    rows = np.repeat(np.arange(M.shape[0], dtype=np.int64), np.diff(M.indptr))
    if rows.size == 0:
        return 0.0
    return float(np.abs(rows - M.indices).mean())


class _SparsePlan:
    """CSR arrays as the kernels use them, possibly reordered by RCM."""

    def __init__(self, M, reorder):
        self.source = M
        # "fuse": (scheme, b, dtype) -> fused step chosen by timing (NumbaBackend fuse="auto")
        self.info = dict(reorder=reorder, permuted=False, fuse={})
        self.variant_times = {}
        perm = None
        if reorder is not False and M.nnz > 0:
            if reorder is True or M.nnz >= REORDER_MIN_NNZ:
                start = time.perf_counter()
                candidate = reverse_cuthill_mckee(sp.csr_matrix(M), symmetric_mode=True)
                candidate = np.asarray(candidate, dtype=np.int64)
                permuted = sp.csr_array(M[candidate][:, candidate])
                permuted.sort_indices()
                before, after = mean_column_distance(M), mean_column_distance(permuted)
                self.info.update(mean_distance_before=before, mean_distance_after=after,
                                 rcm_seconds=time.perf_counter() - start)
                if reorder is True or after * REORDER_MIN_GAIN <= before:
                    perm, M = candidate, permuted
                    self.info["permuted"] = True
        # one index layout for every matrix (int64 row pointers, int32 column indices
        # while n allows): half the index bytes of int64, and one compiled kernel each
        self.perm = None if perm is None else np.ascontiguousarray(perm, dtype=np.int64)
        self.indptr = np.ascontiguousarray(M.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(
            M.indices, dtype=np.int32 if M.shape[1] <= np.iinfo(np.int32).max else np.int64)
        self.data = np.ascontiguousarray(M.data)


class NumbaBackend:
    """Numba-compiled CPU backend (see the module docstring).

    Parameters
    ----------
    reorder : {"auto", True, False}
        Reverse Cuthill–McKee reordering of sparse operators, computed once per
        matrix. ``"auto"`` applies it when the matrix has at least
        ``REORDER_MIN_NNZ`` nonzeros and the permutation shrinks the mean
        column distance by ``REORDER_MIN_GAIN`` or more.
    fuse : {"auto", True, False}
        Sparse Langevin steps as one fused kernel (True) or as the product
        kernel followed by the update kernel (False). Both give bit-identical
        results; ``"auto"`` times each on the first ``2 * (FUSE_TRIALS + 1)`` steps of
        a given matrix, block width, dtype and scheme and keeps the faster
        (recorded in ``sparse_plan(op).info["fuse"]``); blocks and matrices with
        fewer than ``FUSE_RACE_MIN_ENTRIES`` entries take the two passes untimed.

    Attributes
    ----------
    rounding_ratio : float
        Float32 rounding noise of the state relative to the Langevin noise,
        measured in the last fused step (0 for float64).
    last_key : numpy.uint64 or None
        Noise key of the last call that drew noise (a test hook: pass it to
        :meth:`counter_noise` to get the exact numbers that were used).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from lmatrank.backends import get_backend
    >>> from lmatrank.operators import as_operator
    >>> op = as_operator(sp.diags([1.0, 2.0, 0.0]), check_symmetry=False)
    >>> be = get_backend("numba")
    >>> be.matmat(op, np.ones((3, 2)))
    array([[1., 1.],
           [2., 2.],
           [0., 0.]])
    """

    name = "numba"

    def __init__(self, *, reorder="auto", fuse="auto"):
        if reorder not in ("auto", True, False):
            raise ValueError(f"reorder must be 'auto', True or False, got {reorder!r}")
        if fuse not in ("auto", True, False):
            raise ValueError(f"fuse must be 'auto', True or False, got {fuse!r}")
        self.reorder = reorder
        self.fuse = fuse
        self.rounding_ratio = 0.0
        self.last_key = None
        self._plans = {}
        self._buffers = {}

    # ------------------------------------------------------------ helpers
    def sparse_plan(self, op):
        """The (cached) kernel view of a sparse operator's CSR matrix; ``.info`` says
        whether it was reordered."""
        M = op.matrix
        entry = self._plans.get(id(M))
        if entry is None or entry.source is not M:
            if len(self._plans) > 8:
                self._plans.clear()
            entry = _SparsePlan(M, self.reorder)
            self._plans[id(M)] = entry
        return entry

    def _buffer(self, tag, shape, dtype):
        key = (tag, tuple(shape), np.dtype(dtype))
        buf = self._buffers.get(key)
        if buf is None:
            if len(self._buffers) > 32:
                self._buffers.clear()
            buf = np.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf

    def _scratch(self, n, b):
        """Per-chunk float64 work rows: Gaussian noise, then the three running sums."""
        n_chunks = max(1, -(-n // _k.CHUNK))
        return tuple(self._buffer(tag, (n_chunks, b), np.float64)
                     for tag in ("xi", "quad", "gnorm", "sq"))

    @staticmethod
    def _diagonal(precond):
        """The kernels' preconditioner: None (identity), the diagonal (float64 array), or
        ``_GENERAL`` (neither: the reference update runs instead)."""
        if precond is None or precond.is_identity:
            return None
        if precond.diagonal is not None:
            return np.ascontiguousarray(precond.diagonal, dtype=np.float64)
        return _GENERAL

    # ------------------------------------------------------------ products
    def matmat(self, op, X, out=None):
        """``S @ X``; sparse operators use the parallel CSR kernel, dense ones BLAS.

        `out`, when given, receives the product (shape and dtype of the result).
        """
        if op.kind == "sparse":
            X = np.ascontiguousarray(X, dtype=op.dtype)
            if X.ndim != 2 or X.shape[0] != op.n:
                raise ValueError(f"expected a block of shape ({op.n}, b), got {X.shape}")
            Y = np.empty(X.shape, dtype=op.dtype) if out is None else out
            self._csr_product(self.sparse_plan(op), X, Y)
            op.count(X.shape[1])
            return Y
        if op.kind == "dense" and out is not None:
            X = np.asarray(X, dtype=op.dtype)
            if X.ndim != 2 or X.shape[0] != op.n:
                raise ValueError(f"expected a block of shape ({op.n}, b), got {X.shape}")
            np.matmul(op.matrix, X, out=out)
            op.count(X.shape[1])
            return out
        if op.kind == "squared":
            return self.matmat(op.matrix, self.matmat(op.matrix, X), out=out)
        Y = op.matmat(X)
        if out is not None:
            out[...] = Y
            return out
        return Y

    def _csr_product(self, plan, X, Y):
        entries = max(X.size, plan.data.size)
        if plan.perm is not None:
            src = self._buffer("gather", X.shape, X.dtype)
            _driver(_k.gather_rows, entries)(X, plan.perm, src)
            self._csr_kernels(plan, src, Y, plan.perm)
        else:
            self._csr_kernels(plan, X, Y, None)

    @staticmethod
    def _csr_kernels(plan, X, Y, perm):
        """``Y[perm] = A X`` (``Y = A X`` if `perm` is None) with the plan's CSR arrays."""
        entries = max(X.size, plan.data.size)
        if X.shape[1] == 1:
            _driver(_k.csr_matvec, entries)(plan.indptr, plan.indices, plan.data, X[:, 0],
                                            Y[:, 0], perm)
        else:
            _driver(_k.csr_matmat, entries)(plan.indptr, plan.indices, plan.data, X, Y, perm)

    @staticmethod
    def parallel_copy(src, dst):
        """``dst[...] = src`` on all threads (contiguous arrays): the copy bandwidth the
        kernels can reach, for benchmarks."""
        _k.parallel_copy(src.reshape(-1), dst.reshape(-1))

    # ------------------------------------------------------------ noise
    def counter_noise(self, key, shape, kind, dtype=np.float64):
        """The noise block the kernels use for `key` (test hook and ``noise``)."""
        code = _noise_kind(kind)
        n, b = shape
        out = np.empty((n, b), dtype=dtype)
        xi = self._scratch(n, b)[0]
        _driver(_k.noise_block, n * b)(np.uint64(key), code, out, xi)
        return out

    def noise(self, gen, shape, kind, dtype):
        """A block of iid zero-mean unit-variance noise (counter-based, one key from `gen`)."""
        _noise_kind(kind)
        shape = tuple(shape)
        if len(shape) != 2:
            return self.noise(gen, (int(np.prod(shape)), 1), kind, dtype).reshape(shape)
        self.last_key = draw_key(gen)
        return self.counter_noise(self.last_key, shape, kind, dtype)

    # ------------------------------------------------------------ Langevin steps
    def em_update(self, theta, s_theta, *, eta, noise_std, precond, noise, gen):
        """In-place EM update; returns ``(theta^T S theta, (S theta)^T G (S theta))``
        of the current state per chain, in float64 (the interface of
        :meth:`NumpyBackend.em_update`)."""
        code = _noise_kind(noise)
        n, b = theta.shape
        diag = self._diagonal(precond)
        if diag is _GENERAL or not theta.flags.c_contiguous:
            return self._em_update_general(theta, s_theta, eta=eta, noise_std=noise_std,
                                           precond=precond, noise=noise, gen=gen)
        return self._em_kernel(theta, np.ascontiguousarray(s_theta), theta, None, diag,
                               eta, noise_std, code, gen)

    def _em_kernel(self, src, s_theta, dst, perm, diag, eta, noise_std, code, gen, plan=None):
        """Run :func:`_numba_kernels.em_kernel`: fused with the CSR product of `plan` when
        one is given (`s_theta` is then None), else from the product `s_theta`; returns the
        summed observables."""
        n, b = src.shape
        self.last_key = draw_key(gen)
        xi, quad, gnorm, sq = self._scratch(n, b)
        track_sq = src.dtype == np.float32
        _driver(_k.em_kernel, n * b)(*self._product_args(plan, s_theta, src), src, dst, perm,
                                     diag, float(eta), float(noise_std), self.last_key,
                                     xi if code == _k.GAUSSIAN else None, quad, gnorm,
                                     sq if track_sq else None)
        self._check_rounding(dst, sq if track_sq else None, noise_std, diag)
        return quad.sum(axis=0), gnorm.sum(axis=0)

    @staticmethod
    def _product_args(plan, given, src):
        """The kernels' product arguments ``(indptr, indices, data, s_given)``: the CSR
        arrays of `plan` (fused step; ``s_given`` is not read), or None and the product
        `given` (two-pass)."""
        if plan is None:
            return None, None, None, given
        return plan.indptr, plan.indices, plan.data, src

    # general preconditioners: the reference update, with this backend's noise (self.noise)
    _em_update_general = NumpyBackend.em_update

    def em_step(self, op, theta, *, eta, noise_std, precond, noise, gen):
        """One full EM step: ``S theta``, noise, update and observables.

        Returns ``(theta_next, quad, gnorm)`` with the observables of the
        *current* state (as :meth:`em_update`). For sparse operators with an
        identity or diagonal preconditioner, a fused step (see `fuse`) writes
        ``theta_next`` into one of two buffers owned by the backend (pass it
        back in the next call; it is overwritten two steps later); otherwise
        the update is done in place and ``theta_next is theta``. Counts ``b``
        products on `op`.
        """
        code = _noise_kind(noise)
        n, b = theta.shape
        diag = self._diagonal(precond)
        sparse = op.kind == "sparse" and diag is not _GENERAL and theta.dtype == op.dtype
        variant = self._variant("em", op, theta) if sparse else False
        start = time.perf_counter()
        if not sparse:
            s_theta = self.matmat(op, theta, out=self._buffer("s_theta", theta.shape,
                                                              theta.dtype))
            quad, gnorm = self.em_update(theta, s_theta, eta=eta, noise_std=noise_std,
                                         precond=precond, noise=noise, gen=gen)
            result = theta, quad, gnorm
        elif not variant:  # product kernel, then the update kernel in the same row order
            theta = np.ascontiguousarray(theta)
            src, s_theta, perm = self._two_pass_product(op, theta)
            quad, gnorm = self._em_kernel(src, s_theta, theta, perm, diag, eta, noise_std,
                                          code, gen)
            result = theta, quad, gnorm
        else:
            plan = self.sparse_plan(op)
            dst, src, perm = self._fused_buffers(plan, theta, "em")
            quad, gnorm = self._em_kernel(src, None, dst, perm, diag, eta, noise_std, code, gen,
                                          plan)
            op.count(b)
            result = dst, quad, gnorm
        if sparse:
            self._record_variant("em", op, theta, variant, time.perf_counter() - start)
        return result

    def baoab_update(self, q, p, s_q, *, h, friction, temperature, precond, noise, gen):
        """In-place BAOAB step given ``S q``; returns ``q^T S q`` of the incoming state per
        chain in float64 (the interface of :meth:`NumpyBackend.baoab_update`)."""
        code = _noise_kind(noise)
        n, b = q.shape
        diag = self._diagonal(precond)
        if diag is _GENERAL or not (q.flags.c_contiguous and p.flags.c_contiguous):
            quad = np.einsum("ij,ij->j", q, s_q, dtype=np.float64)
            p -= h * precond.apply(s_q)
            q += (0.5 * h) * p
            p *= friction
            p += np.sqrt(temperature * (1.0 - friction * friction)) * precond.apply_factor(
                self.noise(gen, p.shape, noise, p.dtype))
            q += (0.5 * h) * p
            return quad
        return self._baoab_kernel(q, np.ascontiguousarray(s_q), q, p, None, diag, h, friction,
                                  temperature, code, gen)

    def _baoab_kernel(self, q_src, s_q, q_dst, p, perm, diag, h, friction, temperature, code,
                      gen, plan=None):
        """Run :func:`_numba_kernels.baoab_kernel`: fused with the CSR product of `plan`
        when one is given (`s_q` is then None), else from the product `s_q`; returns the
        summed observable."""
        n, b = q_src.shape
        kick = float(np.sqrt(temperature * (1.0 - friction * friction)))
        self.last_key = draw_key(gen)
        xi, quad = self._scratch(n, b)[:2]
        _driver(_k.baoab_kernel, n * b)(*self._product_args(plan, s_q, q_src), q_src, q_dst, p,
                                        perm, diag, float(h), float(friction), kick,
                                        self.last_key, xi if code == _k.GAUSSIAN else None,
                                        quad)
        return quad.sum(axis=0)

    def _two_pass_product(self, op, theta):
        """``(src, S src, perm)`` in the kernel's row order: ``src`` is `theta`, or its
        rows gathered by the reordering ``perm`` (then ``S`` is the permuted matrix)."""
        plan = self.sparse_plan(op)
        src = theta
        if plan.perm is not None:
            src = self._buffer("gather", theta.shape, theta.dtype)
            _driver(_k.gather_rows, theta.size)(theta, plan.perm, src)
        product = self._buffer("s_theta", theta.shape, theta.dtype)
        self._csr_kernels(plan, src, product, None)
        op.count(theta.shape[1])
        return src, product, plan.perm

    def baoab_step(self, op, q, p, *, h, friction, temperature, precond, noise, gen):
        """One full BAOAB step including the product ``S q``.

        Same step as ``baoab_update(q, p, S q, ...)``; returns ``(q_next, quad)``
        with ``quad = q^T S q`` of the incoming positions; ``p`` is updated in
        place. Sparse operators with an identity or diagonal preconditioner
        may use the fused kernel (see `fuse`), which writes ``q_next`` into a
        backend-owned buffer (pass it back next time); otherwise
        ``q_next is q``. Counts ``b`` products.
        """
        code = _noise_kind(noise)
        n, b = q.shape
        diag = self._diagonal(precond)
        sparse = (op.kind == "sparse" and diag is not _GENERAL and q.dtype == op.dtype
                  and p.flags.c_contiguous)
        variant = self._variant("baoab", op, q) if sparse else False
        start = time.perf_counter()
        if not sparse:
            s_q = self.matmat(op, q, out=self._buffer("s_theta", q.shape, q.dtype))
            quad = self.baoab_update(q, p, s_q, h=h, friction=friction, temperature=temperature,
                                     precond=precond, noise=noise, gen=gen)
            result = q, quad
        elif not variant:  # product kernel, then the update kernel in the same row order
            q = np.ascontiguousarray(q)
            src, s_q, perm = self._two_pass_product(op, q)
            result = q, self._baoab_kernel(src, s_q, q, p, perm, diag, h, friction,
                                           temperature, code, gen)
        else:
            plan = self.sparse_plan(op)
            dst, src, perm = self._fused_buffers(plan, q, "baoab")
            result = dst, self._baoab_kernel(src, None, dst, p, perm, diag, h, friction,
                                             temperature, code, gen, plan)
            op.count(b)
        if sparse:
            self._record_variant("baoab", op, q, variant, time.perf_counter() - start)
        return result

    def _variant(self, scheme, op, theta):
        """Fused (True) or two-pass (False) for this sparse step (see `fuse`)."""
        if self.fuse != "auto":
            return self.fuse
        plan = self.sparse_plan(op)
        key = (scheme, theta.shape[1], np.dtype(theta.dtype).name)
        choice = plan.info["fuse"].get(key)
        if choice is not None:
            return choice
        if max(theta.size, plan.data.size) < FUSE_RACE_MIN_ENTRIES:
            plan.info["fuse"][key] = False  # small: two passes, the fused kernel never compiled
            return False
        # alternate the two until each has 1 + FUSE_TRIALS timings; the first of each is
        # dropped (compilation, page faults of fresh buffers) and the fastest of the rest
        # compared, since noise only ever adds time
        times = plan.variant_times.setdefault(key, {True: [], False: []})
        return len(times[True]) <= len(times[False])

    def _record_variant(self, scheme, op, theta, variant, seconds):
        if self.fuse != "auto":
            return
        plan = self.sparse_plan(op)
        key = (scheme, theta.shape[1], np.dtype(theta.dtype).name)
        times = plan.variant_times.get(key)
        if times is None:
            return
        times[variant].append(seconds)
        if min(len(times[True]), len(times[False])) > FUSE_TRIALS:
            plan.info["fuse"][key] = bool(min(times[True][1:]) <= min(times[False][1:]))
            del plan.variant_times[key]

    def _fused_buffers(self, plan, theta, tag):
        """(dst, src, perm) for a double-buffered fused step (``perm`` None: not reordered)."""
        first = self._buffer(tag + "0", theta.shape, theta.dtype)
        second = self._buffer(tag + "1", theta.shape, theta.dtype)
        dst = second if theta is first else first
        if plan.perm is not None:
            src = self._buffer("gather", theta.shape, theta.dtype)
            _driver(_k.gather_rows, theta.size)(np.ascontiguousarray(theta), plan.perm, src)
            return dst, src, plan.perm
        return dst, np.ascontiguousarray(theta), None

    def _check_rounding(self, theta, sq, noise_std, gdiag):
        if sq is None or noise_std <= 0:
            self.rounding_ratio = 0.0
            return
        n = theta.shape[0]
        mean_square = float(sq.sum(axis=0).max()) / n
        g_min = 1.0 if gdiag is None else float(gdiag.min())
        eps = float(np.finfo(np.float32).eps)
        self.rounding_ratio = eps * eps * mean_square / 12.0 / (noise_std * noise_std * g_min)
        if self.rounding_ratio > ROUNDING_RATIO_WARN:
            warnings.warn(
                f"float32 state has grown so large (mean square {mean_square:.3g}) that its "
                f"rounding adds {self.rounding_ratio:.2g} of the Langevin noise per step; "
                "the estimate is inflated by about that fraction (use float64)",
                RuntimeWarning, stacklevel=3)
