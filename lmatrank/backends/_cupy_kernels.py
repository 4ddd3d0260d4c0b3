"""CUDA C kernels of the CuPy backend and their numpy reference implementations.

Every kernel exists twice with the same call signature:

- :class:`CudaKernels` compiles the CUDA C sources below with
  ``cupy.RawModule`` (NVRTC) and launches them on CuPy arrays;
- :class:`ReferenceKernels` does the same arithmetic with numpy. It is the
  readable definition of each kernel and lets the tests run the backend's whole
  Python orchestration with numpy standing in for cupy (``CupyBackend(xp=numpy,
  kernels=ReferenceKernels())``).

Kernels
-------
``lmr_counter_noise_<T>``
    Fill a block with counter-based Rademacher or Gaussian noise
    (:mod:`lmatrank.backends._counter_rng`; the generator's C source is included
    verbatim).
``lmr_em_step_<T>``
    One fused Euler–Maruyama step on an ``(n, c)`` C-contiguous block: reads
    ``theta`` and ``S theta``, forms ``G S theta`` (identity or diagonal ``G``,
    or a precomputed block), draws the noise in registers, writes the new
    ``theta`` in place and reduces the per-chain observables ``theta^T S theta``
    and ``(S theta)^T G (S theta)`` in float64 into per-block partial sums.
    The update uses explicitly rounded operations (``__fmul_rn`` ...) in the
    order of the numpy backend, ``theta - eta*gs + noise_std*xi``, so no fused
    multiply-add changes the rounding.
``lmr_baoab_step_<T>``
    One fused preconditioned BAOAB step (Leimkuhler–Matthews; docs/numerics.md, "Kinetic Langevin") as
    defined by ``NumpyBackend.baoab_update`` (merged half kicks), same layout;
    reduces ``q^T S q`` of the incoming state.
``lmr_reduce_partials``
    Sum the per-block partials over blocks in a fixed order.

Reductions are deterministic: thread ``t`` of a block owns row
``t // col_tile`` and column ``t % col_tile`` of a tile of ``rows_per_block``
rows (a power of two), the tile is summed over its rows by a fixed shared-memory
tree and the tiles by :func:`lmr_reduce_partials` in a fixed order, with no
atomics, so the same input gives bit-identical observables on every run.
Their summation order differs from numpy's, so device observables agree with
the numpy backend to rounding (about 1e-16 relative), not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from ._counter_rng import PHILOX_C_SOURCE, counter_gaussian, counter_rademacher

__all__ = ["CudaKernels", "ReferenceKernels", "kernel_sources", "launch_geometry",
           "RADEMACHER", "GAUSSIAN"]

RADEMACHER = 0
GAUSSIAN = 1
#: threads per block of the fused step kernels
BLOCK_THREADS = 256

_TYPE_MACROS = {
    "float": "#define LMR_MUL __fmul_rn\n#define LMR_ADD __fadd_rn\n#define LMR_SUB __fsub_rn\n",
    "double": "#define LMR_MUL __dmul_rn\n#define LMR_ADD __dadd_rn\n#define LMR_SUB __dsub_rn\n",
}

_NOISE_KERNEL = r"""
extern "C" __global__ void lmr_counter_noise_TYPE(
    TYPE* __restrict__ out, long long size, lmr_u64 key, lmr_u32 call, lmr_u32 stream,
    int kind)
{
    long long step = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size; i += step) {
        out[i] = kind == 0 ? (TYPE)lmr_counter_sign(key, call, stream, (lmr_u64)i)
                           : (TYPE)lmr_counter_gaussian(key, call, stream, (lmr_u64)i);
    }
}
"""

# block-tile reduction shared by the two step kernels: sums shm[t] (and
# shm[blockDim.x + t]) over the tile's rows and writes one partial per column
_TILE_REDUCE = r"""
LMR_FN void lmr_tile_reduce(double* shm, int n_obs, int t, int local_row, int col_tile,
                            int rows_per_block, int col, int c, double* partial)
{
    __syncthreads();
    for (int stride = rows_per_block >> 1; stride > 0; stride >>= 1) {
        if (local_row < stride) {
            for (int k = 0; k < n_obs; ++k)
                shm[k * blockDim.x + t] += shm[k * blockDim.x + t + stride * col_tile];
        }
        __syncthreads();
    }
    if (local_row == 0 && col < c) {
        for (int k = 0; k < n_obs; ++k)
            partial[((long long)blockIdx.x * n_obs + k) * c + col] = shm[k * blockDim.x + t];
    }
}
"""

_EM_KERNEL = r"""
extern "C" __global__ void lmr_em_step_TYPE(
    TYPE* __restrict__ theta, const TYPE* __restrict__ s_theta,
    const TYPE* __restrict__ gs_given, const TYPE* __restrict__ xi_given,
    const TYPE* __restrict__ gdiag, const TYPE* __restrict__ groot,
    TYPE eta, TYPE noise_std, lmr_u64 key, lmr_u32 call, lmr_u32 stream, int kind,
    long long n, int c, int col_tile, int rows_per_block, double* __restrict__ partial)
{
    extern __shared__ double shm[];
    int t = threadIdx.x;
    int local_row = t / col_tile;
    int col = blockIdx.y * col_tile + t % col_tile;
    long long row = (long long)blockIdx.x * rows_per_block + local_row;
    double quad = 0.0, gnorm = 0.0;
    if (row < n && col < c) {
        long long i = row * c + col;
        TYPE th = theta[i], s = s_theta[i];
        TYPE gs = gs_given ? gs_given[i] : (gdiag ? LMR_MUL(gdiag[row], s) : s);
        quad = (double)th * (double)s;
        gnorm = (double)s * (double)gs;
        TYPE xi;
        if (xi_given) {
            xi = xi_given[i];
        } else {
            TYPE raw = kind == 0 ? (TYPE)lmr_counter_sign(key, call, stream, (lmr_u64)i)
                                 : (TYPE)lmr_counter_gaussian(key, call, stream, (lmr_u64)i);
            xi = groot ? LMR_MUL(groot[row], raw) : raw;
        }
        theta[i] = LMR_ADD(LMR_SUB(th, LMR_MUL(eta, gs)), LMR_MUL(noise_std, xi));
    }
    shm[t] = quad;
    shm[blockDim.x + t] = gnorm;
    lmr_tile_reduce(shm, 2, t, local_row, col_tile, rows_per_block, col, c, partial);
}
"""

_BAOAB_KERNEL = r"""
/* One preconditioned BAOAB step (NumpyBackend.baoab_update), given s_q = S q:
 *   quad = q^T s_q (incoming state)
 *   p -= h G s_q;  q += (h/2) p;  p = friction p + noise_b L xi;  q += (h/2) p
 * The O-step noise term is formed in double (the numpy backend's scalar
 * sqrt(T (1 - c^2)) is a float64) and rounded once to TYPE.
 */
extern "C" __global__ void lmr_baoab_step_TYPE(
    TYPE* __restrict__ q, TYPE* __restrict__ p, const TYPE* __restrict__ s_q,
    const TYPE* __restrict__ gdiag, const TYPE* __restrict__ groot,
    TYPE h, TYPE half_h, TYPE friction, double noise_b,
    lmr_u64 key, lmr_u32 call, lmr_u32 stream, int kind,
    long long n, int c, int col_tile, int rows_per_block, double* __restrict__ partial)
{
    extern __shared__ double shm[];
    int t = threadIdx.x;
    int local_row = t / col_tile;
    int col = blockIdx.y * col_tile + t % col_tile;
    long long row = (long long)blockIdx.x * rows_per_block + local_row;
    double quad = 0.0;
    if (row < n && col < c) {
        long long i = row * c + col;
        TYPE qi = q[i], pi = p[i], s = s_q[i];
        quad = (double)qi * (double)s;
        TYPE gs = gdiag ? LMR_MUL(gdiag[row], s) : s;
        pi = LMR_SUB(pi, LMR_MUL(h, gs));                        /* B (two merged halves) */
        qi = LMR_ADD(qi, LMR_MUL(half_h, pi));                   /* A */
        pi = LMR_MUL(pi, friction);                              /* O: friction */
        TYPE raw = kind == 0 ? (TYPE)lmr_counter_sign(key, call, stream, (lmr_u64)i)
                             : (TYPE)lmr_counter_gaussian(key, call, stream, (lmr_u64)i);
        TYPE xi = groot ? LMR_MUL(groot[row], raw) : raw;
        pi = (TYPE)__dadd_rn((double)pi, __dmul_rn(noise_b, (double)xi));   /* O: noise */
        qi = LMR_ADD(qi, LMR_MUL(half_h, pi));                   /* A */
        q[i] = qi;
        p[i] = pi;
    }
    shm[t] = quad;
    lmr_tile_reduce(shm, 1, t, local_row, col_tile, rows_per_block, col, c, partial);
}
"""

_REDUCE_KERNEL = r"""
extern "C" __global__ void lmr_reduce_partials(const double* __restrict__ partial,
                                               long long n_blocks, int m,
                                               double* __restrict__ out)
{
    extern __shared__ double shm[];
    int j = blockIdx.x, t = threadIdx.x;
    double acc = 0.0;
    for (long long b = t; b < n_blocks; b += blockDim.x)
        acc += partial[b * m + j];
    shm[t] = acc;
    __syncthreads();
    for (int stride = blockDim.x >> 1; stride > 0; stride >>= 1) {
        if (t < stride) shm[t] += shm[t + stride];
        __syncthreads();
    }
    if (t == 0) out[j] = shm[0];
}
"""

_PRELUDE = "#define LMR_FN __device__ __forceinline__\n"


def kernel_sources():
    """The CUDA C translation units, ``{name: source}`` (one per dtype, plus the reduction).

    Each is self-contained (no includes), so it compiles with NVRTC
    (``cupy.RawModule``) and with ``nvcc -ptx``.

    Examples
    --------
    >>> from lmatrank.backends._cupy_kernels import kernel_sources
    >>> sorted(kernel_sources())
    ['lmr_steps_double', 'lmr_steps_float']
    >>> "lmr_em_step_float" in kernel_sources()["lmr_steps_float"]
    True
    """
    sources = {}
    for ctype in ("float", "double"):
        body = (_NOISE_KERNEL + _TILE_REDUCE + _EM_KERNEL + _BAOAB_KERNEL).replace("TYPE", ctype)
        reduce = _REDUCE_KERNEL if ctype == "double" else ""
        sources[f"lmr_steps_{ctype}"] = (_PRELUDE + _TYPE_MACROS[ctype] + PHILOX_C_SOURCE
                                         + body + reduce)
    # the reduction is dtype independent; ship it in both units so either loads alone
    sources["lmr_steps_float"] += _REDUCE_KERNEL.replace("lmr_reduce_partials",
                                                         "lmr_reduce_partials_f")
    return sources


def launch_geometry(n, c):
    """Block tiling of an ``(n, c)`` block: ``(col_tile, rows_per_block, grid, block)``.

    A block holds ``rows_per_block`` (a power of two) rows of ``col_tile``
    columns; ``grid = (ceil(n / rows_per_block), ceil(c / col_tile))``.
    """
    col_tile = min(int(c), BLOCK_THREADS)
    rows = 1 << int(math.floor(math.log2(max(1, BLOCK_THREADS // col_tile))))
    grid = (-(-int(n) // rows), -(-int(c) // col_tile))
    return col_tile, rows, grid, (rows * col_tile,)


def _kind_code(kind):
    if kind == "rademacher":
        return RADEMACHER
    if kind == "gaussian":
        return GAUSSIAN
    raise ValueError(f"unknown noise kind {kind!r}; expected 'rademacher' or 'gaussian'")


class ReferenceKernels:
    """numpy implementation of every kernel (the definition the CUDA code follows).

    The arithmetic is that of :class:`lmatrank.backends.NumpyBackend`, in the
    same order, so a backend driven by these kernels reproduces the numpy
    backend bit for bit when both draw noise from the same
    :class:`~lmatrank.backends.CounterStream`.
    """

    name = "numpy-reference"

    def noise(self, out, key, call, stream, kind):
        """Fill `out` with the counter-based noise of one call."""
        code = _kind_code(kind)
        make = counter_rademacher if code == RADEMACHER else counter_gaussian
        out[...] = make(key, call, stream, out.shape, out.dtype)
        return out

    def em_step(self, theta, s_theta, *, gs_given, xi_given, gdiag, groot, eta, noise_std,
                key, call, stream, kind, observables):
        """Fused EM step in place on `theta`; ``observables[:] = (quad, gnorm)`` of the old state."""
        if gs_given is not None:
            gs = gs_given
        elif gdiag is not None:
            gs = gdiag[:, None] * s_theta
        else:
            gs = s_theta
        observables[0] = np.einsum("ij,ij->j", theta, s_theta, dtype=np.float64)
        observables[1] = np.einsum("ij,ij->j", s_theta, gs, dtype=np.float64)
        if xi_given is not None:
            xi = xi_given
        else:
            xi = np.empty_like(theta)
            self.noise(xi, key, call, stream, kind)
            if groot is not None:
                xi = groot[:, None] * xi
        theta -= eta * gs
        theta += noise_std * xi
        return observables

    def baoab_step(self, q, p, s_q, *, gdiag, groot, h, friction, temperature, key, call,
                   stream, kind, observables):
        """Fused BAOAB step in place on ``(q, p)``; ``observables[:] = q^T s_q`` (old state)."""
        observables[...] = np.einsum("ij,ij->j", q, s_q, dtype=np.float64)
        p -= h * (s_q if gdiag is None else gdiag[:, None] * s_q)
        q += (0.5 * h) * p
        p *= friction
        xi = np.empty_like(q)
        self.noise(xi, key, call, stream, kind)
        if groot is not None:
            xi = groot[:, None] * xi
        p += np.sqrt(temperature * (1.0 - friction * friction)) * xi
        q += (0.5 * h) * p
        return observables


class CudaKernels:
    """The CUDA kernels compiled with ``cupy.RawModule`` (lazily, once per dtype).

    Parameters
    ----------
    cupy : module
        The imported ``cupy`` module.
    """

    name = "cuda"

    def __init__(self, cupy):
        self._cp = cupy
        self._modules = {}
        self._sources = kernel_sources()

    def _function(self, dtype, name):
        ctype = "float" if np.dtype(dtype) == np.float32 else "double"
        unit = f"lmr_steps_{ctype}"
        if unit not in self._modules:
            self._modules[unit] = self._cp.RawModule(code=self._sources[unit],
                                                      options=("--std=c++11",))
        return self._modules[unit].get_function(f"{name}_{ctype}" if name != "reduce" else
                                                ("lmr_reduce_partials" if ctype == "double"
                                                 else "lmr_reduce_partials_f"))

    def _scalar(self, dtype, value):
        return np.dtype(dtype).type(value)

    def noise(self, out, key, call, stream, kind):
        size = out.size
        threads = 256
        blocks = max(1, min(-(-size // threads), 65535))
        self._function(out.dtype, "lmr_counter_noise")(
            (blocks,), (threads,),
            (out, np.int64(size), np.uint64(key), np.uint32(call), np.uint32(stream),
             np.int32(_kind_code(kind))))
        return out

    def _reduce(self, partial, n_blocks, observables, dtype):
        m = observables.size
        self._function(dtype, "reduce")((m,), (256,),
                                        (partial, np.int64(n_blocks), np.int32(m), observables),
                                        shared_mem=256 * 8)

    def em_step(self, theta, s_theta, *, gs_given, xi_given, gdiag, groot, eta, noise_std,
                key, call, stream, kind, observables, partial):
        n, c = theta.shape
        col_tile, rows, grid, block = launch_geometry(n, c)
        null = 0  # a NULL device pointer
        self._function(theta.dtype, "lmr_em_step")(
            grid, block,
            (theta, s_theta, null if gs_given is None else gs_given,
             null if xi_given is None else xi_given, null if gdiag is None else gdiag,
             null if groot is None else groot, self._scalar(theta.dtype, eta),
             self._scalar(theta.dtype, noise_std), np.uint64(key), np.uint32(call),
             np.uint32(stream), np.int32(_kind_code(kind)), np.int64(n), np.int32(c),
             np.int32(col_tile), np.int32(rows), partial),
            shared_mem=2 * block[0] * 8)
        self._reduce(partial, grid[0], observables, theta.dtype)
        return observables

    def baoab_step(self, q, p, s_q, *, gdiag, groot, h, friction, temperature, key, call,
                   stream, kind, observables, partial):
        n, c = q.shape
        col_tile, rows, grid, block = launch_geometry(n, c)
        null = 0
        sc = lambda v: self._scalar(q.dtype, v)  # noqa: E731
        noise_b = np.float64(np.sqrt(temperature * (1.0 - friction * friction)))
        self._function(q.dtype, "lmr_baoab_step")(
            grid, block,
            (q, p, s_q, null if gdiag is None else gdiag, null if groot is None else groot,
             sc(h), sc(0.5 * h), sc(friction), noise_b, np.uint64(key), np.uint32(call),
             np.uint32(stream), np.int32(_kind_code(kind)), np.int64(n), np.int32(c),
             np.int32(col_tile), np.int32(rows), partial),
            shared_mem=block[0] * 8)
        self._reduce(partial, grid[0], observables, q.dtype)
        return observables
