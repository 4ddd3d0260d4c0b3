"""Numba kernels of the CPU backend (compiled with ``cache=True``).

Everything here is a plain function of arrays; :mod:`._numba` holds the
backend object that owns the work buffers and calls these kernels.

Serial and parallel kernels
---------------------------
The work of each kernel is written once, as a function of one chunk of
``CHUNK`` rows (``_em_rows``, ``_csr_rows``, ...), compiled on its own. Two thin
drivers call it: ``em_kernel`` runs the chunks on all threads (``prange``) and
``em_kernel_serial`` runs them in order on the calling thread, for blocks too
small to share out (:mod:`._numba` picks by size). Both drivers execute the same
compiled chunk function, so they agree bit for bit, and a process that uses both
compiles the heavy part once. Keeping the chunk function out of the ``prange``
body also halves the compile time of the parallel driver (Numba's parallel
lowering types and compiles the loop body a second time, which is then a single
call). The chunk index is passed as ``np.int64``: ``prange`` makes its index
unsigned, which would compile a second copy of the chunk function.

Counter-based noise
-------------------
Entry ``(row, column)`` of the noise block of one step is a pure function of a
64-bit ``key`` (drawn once per step from the user's generator) and of the
position: it is output number ``counter`` of the SplitMix64 generator seeded
with ``key`` (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014), i.e. ``mix(key + (counter + 1) * 0x9E3779B97F4A7C15)``
with the Stafford "Mix13" finaliser. Rademacher signs use one 64-bit output for
64 consecutive columns of a row (counter ``row * ceil(b / 64) + column // 64``,
bit ``column % 64``); Gaussian pairs use one output per two columns (counter
``row * ceil(b / 2) + column // 2``) split into two 32-bit uniforms and the
Box–Muller transform (cosine for even, sine for odd columns; 32-bit uniforms
truncate the tails at 6.7 standard deviations, which changes the fourth moment
by less than 1e-9). Because no generator state is carried between rows, the
noise — and with the fixed row chunking of the reductions below, every result —
does not depend on the number of threads.

Deterministic reductions
------------------------
Per-chain sums (the observables) are accumulated per chunk of ``CHUNK`` rows
into a ``(n_chunks, b)`` float64 array and the chunks are summed afterwards in
a fixed order, so the rounding does not depend on how the chunks are spread
over threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import _simd as simd


def _jit(**options):
    """``numba.njit`` with the on-disk cache (``cache=True``), or without it where no
    cache location can be written (a read-only install without a writable home or
    ``NUMBA_CACHE_DIR``): Numba refuses ``cache=True`` there with a RuntimeError when the
    function is decorated, which would make the backend unimportable; the kernels then
    compile in each process instead."""
    def decorate(fn):
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:
            return njit(**options)(fn)
    return decorate

#: Rows per reduction chunk (fixed, independent of the thread count).
CHUNK = 2048
#: Columns per vector chunk of a block row.
LANES = simd.LANES

RADEMACHER = 0
GAUSSIAN = 1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_INV32 = 1.0 / 4294967296.0
_TWO_PI = 2.0 * math.pi


@_jit(inline="always")
def splitmix64(key, counter):
    """Output number `counter` of SplitMix64 seeded with `key` (both uint64)."""
    z = key + (counter + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@_jit(inline="always")
def fill_noise_row(key, row, b, kind, out):
    """Write the `b` noise values of `row` into ``out[:b]`` (float64)."""
    r = np.uint64(row)
    if kind == RADEMACHER:
        words = (b + 63) // 64
        if words == 1:  # the common case; a loop from 0 vectorises, an offset one did not
            word = splitmix64(key, r)
            for c in range(b):
                out[c] = np.float64(1 - 2 * np.int64((word >> np.uint64(c)) & _ONE))
        else:
            for w in range(words):
                word = splitmix64(key, r * np.uint64(words) + np.uint64(w))
                lo = w * 64
                for c in range(min(64, b - lo)):
                    out[lo + c] = np.float64(1 - 2 * np.int64((word >> np.uint64(c)) & _ONE))
    else:
        gaussian_columns(key, row, b, 0, b, out)


@_jit(inline="always")
def gaussian_columns(key, row, b, lo, hi, out):
    """Write the Gaussian noise of columns ``lo .. hi - 1`` of `row` (of `b`) into
    ``out[lo:hi]``; `lo` is even (pairs share one hash)."""
    r = np.uint64(row)
    pairs = (b + 1) // 2
    for p in range(lo // 2, (hi + 1) // 2):
        word = splitmix64(key, r * np.uint64(pairs) + np.uint64(p))
        u1 = (np.float64(word >> _S32) + 0.5) * _INV32
        u2 = (np.float64(word & _LOW32) + 0.5) * _INV32
        radius = math.sqrt(-2.0 * math.log(u1))
        angle = _TWO_PI * u2
        out[2 * p] = radius * math.cos(angle)
        if 2 * p + 1 < hi:
            out[2 * p + 1] = radius * math.sin(angle)


@_jit(inline="always")
def _n_chunks(n):
    """The number of chunks of ``CHUNK`` rows covering `n` rows."""
    return (n + CHUNK - 1) // CHUNK


@_jit()
def _noise_rows(ch, key, kind, out, scratch):
    """Rows ``ch * CHUNK .. (ch + 1) * CHUNK`` of :func:`noise_block`."""
    n, b = out.shape
    xi = scratch[ch]
    for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
        fill_noise_row(key, i, b, kind, xi)
        for c in range(b):
            out[i, c] = xi[c]


@_jit(parallel=True)
def noise_block(key, kind, out, scratch):
    """Fill `out` (n, b) with the counter-based noise of `key` (`scratch`: one float64
    row of width b per chunk of ``CHUNK`` rows)."""
    for ch in prange(scratch.shape[0]):
        _noise_rows(np.int64(ch), key, kind, out, scratch)


@_jit()
def noise_block_serial(key, kind, out, scratch):
    """:func:`noise_block` on one thread."""
    for ch in range(scratch.shape[0]):
        _noise_rows(ch, key, kind, out, scratch)


@_jit()
def _csr_rows(ch, indptr, indices, data, X, Y, perm):
    """Rows ``ch * CHUNK .. (ch + 1) * CHUNK`` of :func:`csr_matmat`."""
    n = indptr.size - 1
    b = X.shape[1]
    for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
        dst = np.int64(i) if perm is None else np.int64(perm[i])
        c0 = 0
        while c0 + 4 * LANES <= b:
            s0, s1, s2, s3 = _product4(indptr, indices, data, X, i, c0)
            _store4(Y, dst, c0, s0, s1, s2, s3)
            c0 += 4 * LANES
        while c0 + LANES <= b:
            simd.store(Y, _product1(indptr, indices, data, X, i, c0, LANES), dst, c0)
            c0 += LANES
        if c0 < b:
            count = b - c0
            simd.store_first(Y, _product1(indptr, indices, data, X, i, c0, count), count, dst, c0)


@_jit(parallel=True)
def csr_matmat(indptr, indices, data, X, Y, perm):
    """``Y[p(i)] = row_i(A) @ X`` for a block ``X`` (n, b); ``p = perm``, or the identity
    if `perm` is None.

    Each row is computed in chunks of ``LANES`` columns whose running sums stay in
    vector registers (see :func:`_product4` and :mod:`._simd`).
    """
    for ch in prange(_n_chunks(indptr.size - 1)):
        _csr_rows(np.int64(ch), indptr, indices, data, X, Y, perm)


@_jit()
def csr_matmat_serial(indptr, indices, data, X, Y, perm):
    """:func:`csr_matmat` on one thread."""
    for ch in range(_n_chunks(indptr.size - 1)):
        _csr_rows(ch, indptr, indices, data, X, Y, perm)


@_jit()
def _csr_vec_rows(ch, indptr, indices, data, x, y, perm):
    """Rows ``ch * CHUNK .. (ch + 1) * CHUNK`` of :func:`csr_matvec`."""
    n = indptr.size - 1
    for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
        acc = data[0] * 0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[np.uint64(indices[k])]
        if perm is None:
            y[i] = acc
        else:
            y[np.int64(perm[i])] = acc


@_jit(parallel=True)
def csr_matvec(indptr, indices, data, x, y, perm):
    """Single-column path of :func:`csr_matmat` (x, y 1-D)."""
    for ch in prange(_n_chunks(indptr.size - 1)):
        _csr_vec_rows(np.int64(ch), indptr, indices, data, x, y, perm)


@_jit()
def csr_matvec_serial(indptr, indices, data, x, y, perm):
    """:func:`csr_matvec` on one thread."""
    for ch in range(_n_chunks(indptr.size - 1)):
        _csr_vec_rows(ch, indptr, indices, data, x, y, perm)


@_jit()
def _gather(ch, X, perm, out):
    """Rows ``ch * CHUNK .. (ch + 1) * CHUNK`` of :func:`gather_rows`."""
    b = X.shape[1]
    for i in range(ch * CHUNK, min(out.shape[0], (ch + 1) * CHUNK)):
        src = perm[i]
        for c in range(b):
            out[i, c] = X[src, c]


@_jit(parallel=True)
def gather_rows(X, perm, out):
    """``out[i] = X[perm[i]]``."""
    for ch in prange(_n_chunks(out.shape[0])):
        _gather(np.int64(ch), X, perm, out)


@_jit()
def gather_rows_serial(X, perm, out):
    """:func:`gather_rows` on one thread."""
    for ch in range(_n_chunks(out.shape[0])):
        _gather(ch, X, perm, out)


# ---------------------------------------------------------------- row chunks
# A block row is processed in chunks of LANES columns: full chunks with plain
# vector loads and stores, the last one (b % LANES columns) with masked ones.
# Lanes are independent (each chain is one lane), and the fused steps and the
# two-pass steps (product kernel, then update kernel) call the same chunk
# functions in the same order, so the two agree bit for bit.

@_jit(inline="always")
def _get(arr, i, c0, count):
    """``arr[i, c0:c0 + count]`` as a vector (lanes past `count` read as 0)."""
    if count == LANES:
        return simd.load(arr, i, c0)
    return simd.load_first(arr, count, i, c0)


@_jit(inline="always")
def _put(arr, value, i, c0, count):
    """``arr[i, c0:c0 + count] = value[:count]``."""
    if count == LANES:
        simd.store(arr, value, i, c0)
    else:
        simd.store_first(arr, value, count, i, c0)


@_jit(inline="always")
def _product4(indptr, indices, data, src, i, c0):
    """``row_i(A) @ src[:, c0:c0 + 4 LANES]`` as four vectors (operator dtype).

    Four independent running sums, and two nonzeros per pass, keep more loads and
    additions in flight than one sum per chunk: with them the products ran 1.1-2x
    faster than the scalar column loops they replaced (grid and random-graph
    Laplacians, n = 1e6 and 4e4, b = 8 and 32).
    """
    s0 = simd.zeros(src)
    s1 = simd.zeros(src)
    s2 = simd.zeros(src)
    s3 = simd.zeros(src)
    k = indptr[i]
    end = indptr[i + 1]
    while k + 1 < end:
        a = data[k]
        j = indices[k]
        a2 = data[k + 1]
        j2 = indices[k + 1]
        s0 += a * simd.load(src, j, c0) + a2 * simd.load(src, j2, c0)
        s1 += a * simd.load(src, j, c0 + LANES) + a2 * simd.load(src, j2, c0 + LANES)
        s2 += a * simd.load(src, j, c0 + 2 * LANES) + a2 * simd.load(src, j2, c0 + 2 * LANES)
        s3 += a * simd.load(src, j, c0 + 3 * LANES) + a2 * simd.load(src, j2, c0 + 3 * LANES)
        k += 2
    if k < end:
        a = data[k]
        j = indices[k]
        s0 += a * simd.load(src, j, c0)
        s1 += a * simd.load(src, j, c0 + LANES)
        s2 += a * simd.load(src, j, c0 + 2 * LANES)
        s3 += a * simd.load(src, j, c0 + 3 * LANES)
    return s0, s1, s2, s3


@_jit(inline="always")
def _product1(indptr, indices, data, src, i, c0, count):
    """``row_i(A) @ src[:, c0:c0 + count]`` as one vector (``count <= LANES``), with the
    operations of :func:`_product4` in the same order."""
    s = simd.zeros(src)
    k = indptr[i]
    end = indptr[i + 1]
    while k + 1 < end:
        s += data[k] * _get(src, indices[k], c0, count) + data[k + 1] * _get(
            src, indices[k + 1], c0, count)
        k += 2
    if k < end:
        s += data[k] * _get(src, indices[k], c0, count)
    return s


# Options are passed as None or an array: Numba prunes the branches of `arg is None` for
# an argument that is None at compile time (it does not prune them when the argument is an
# array, so the branch taken for None must also compile for an array), so each
# combination is compiled into its own branch-free loop (measured up to 2x
# faster than run-time flags, whose branches and live values crowded the registers).

@_jit(inline="always")
def _group_noise(key, d, b, xi_part, ch, c0, width):
    """Start the noise of columns ``c0 .. c0 + width`` of row `d` (``c0`` a multiple of
    ``LANES``, the group within one 64-column word): the Rademacher hash word holding
    their signs (`xi_part` None), or the Gaussian values, written to ``xi_part[ch]``."""
    if xi_part is None:
        return splitmix64(key, np.uint64(d) * np.uint64((b + 63) // 64) + np.uint64(c0 // 64))
    gaussian_columns(key, d, b, c0, min(b, c0 + width), xi_part[ch])
    return _ONE


@_jit(inline="always")
def _chunk_noise(word, xi_part, ch, c0, count, scale):
    """`scale` times the noise of columns ``c0 .. c0 + count`` (float64 vector), from the
    group's hash word or its Gaussian values (see :func:`_group_noise`)."""
    if xi_part is None:
        return simd.signs(word, c0 % 64, scale)
    return scale * _get(xi_part, ch, c0, count)


@_jit(inline="always")
def _em_chunk(src, i, s_vec, dst, d, c0, count, g, eta, noise, quad, gnorm, sq, track_sq):
    """EM update of one chunk, ``dst[d] = src[i] - eta g s + noise`` (`noise` scaled);
    returns the running per-chain float64 sums of ``theta^T S theta``,
    ``(S theta)^T G (S theta)`` and (if `track_sq`) ``|theta_next|^2`` with this chunk's
    terms added."""
    t = simd.astype(_get(src, i, c0, count), quad)
    sv = simd.astype(s_vec, quad)
    g_sv = g * sv
    new = simd.muladd(g_sv, -eta, t) + noise
    _put(dst, simd.astype(new, dst), d, c0, count)
    if track_sq:
        sq = simd.muladd(new, new, sq)
    return simd.muladd(t, sv, quad), simd.muladd(g_sv, sv, gnorm), sq


@_jit(inline="always")
def _baoab_chunk(q_src, i, s_vec, p, q_dst, d, c0, count, hg, half, friction, noise, quad):
    """Merged B kicks, A, O, A (the step of NumpyBackend.baoab_update) for one chunk
    (`noise` scaled); ``p`` is indexed by the original row ``d`` and updated in place.
    Returns the running sum of ``q^T S q`` with this chunk's terms added."""
    qv = simd.astype(_get(q_src, i, c0, count), quad)
    sv = simd.astype(s_vec, quad)
    pv = simd.muladd(sv, -hg, simd.astype(_get(p, d, c0, count), quad))
    q_half = simd.muladd(pv, half, qv)
    pv = simd.muladd(pv, friction, noise)
    _put(p, simd.astype(pv, p), d, c0, count)
    _put(q_dst, simd.astype(simd.muladd(pv, half, q_half), q_dst), d, c0, count)
    return simd.muladd(qv, sv, quad)


@_jit(inline="always")
def _row_start(perm, gdiag, i, key, b, xi_part, ch, c0, width):
    """``(d, g, word)`` of kernel row `i` for the column group ``c0 .. c0 + width``: its
    destination row, its preconditioner entry (`perm`, `gdiag`: None for no reordering,
    no preconditioner) and the start of its noise (:func:`_group_noise`)."""
    d = np.int64(i) if perm is None else np.int64(perm[i])
    g = 1.0 if gdiag is None else gdiag[d]
    return d, g, _group_noise(key, d, b, xi_part, ch, c0, width)


@_jit(inline="always")
def _group_product(indptr, indices, data, s_given, src, i, c0):
    """The four product vectors of columns ``c0 .. c0 + 4 LANES`` of row `i`: read from
    the two-pass product `s_given` (CSR arrays None) or computed from the CSR arrays."""
    if indptr is None:
        return (simd.load(s_given, i, c0), simd.load(s_given, i, c0 + LANES),
                simd.load(s_given, i, c0 + 2 * LANES), simd.load(s_given, i, c0 + 3 * LANES))
    return _product4(indptr, indices, data, src, i, c0)


@_jit(inline="always")
def _chunk_product(indptr, indices, data, s_given, src, i, c0, count):
    if indptr is None:
        return _get(s_given, i, c0, count)
    return _product1(indptr, indices, data, src, i, c0, count)


@_jit(inline="always")
def _store4(arr, i, c0, v0, v1, v2, v3):
    """``arr[i, c0:c0 + 4 LANES] = (v0, v1, v2, v3)``."""
    simd.store(arr, v0, i, c0)
    simd.store(arr, v1, i, c0 + LANES)
    simd.store(arr, v2, i, c0 + 2 * LANES)
    simd.store(arr, v3, i, c0 + 3 * LANES)


@_jit()
def _em_rows(ch, indptr, indices, data, s_given, theta_src, theta_dst, perm, gdiag, eta,
             noise_std, key, xi_part, quad_part, gnorm_part, sq_part):
    """Rows ``ch * CHUNK .. (ch + 1) * CHUNK`` of :func:`em_kernel`."""
    n, b = theta_src.shape
    track_sq = sq_part is not None
    lo, hi = ch * CHUNK, min(n, (ch + 1) * CHUNK)
    c0 = 0
    while c0 + 4 * LANES <= b:
        q0 = q1 = q2 = q3 = simd.zeros(quad_part)
        n0 = n1 = n2 = n3 = simd.zeros(quad_part)
        r0 = r1 = r2 = r3 = simd.zeros(quad_part)
        for i in range(lo, hi):
            d, g, word = _row_start(perm, gdiag, i, key, b, xi_part, ch, c0, 4 * LANES)
            kick = noise_std * math.sqrt(g)
            s0, s1, s2, s3 = _group_product(indptr, indices, data, s_given, theta_src, i, c0)
            c1, c2, c3 = c0 + LANES, c0 + 2 * LANES, c0 + 3 * LANES
            q0, n0, r0 = _em_chunk(theta_src, i, s0, theta_dst, d, c0, LANES, g, eta,
                                   _chunk_noise(word, xi_part, ch, c0, LANES, kick),
                                   q0, n0, r0, track_sq)
            q1, n1, r1 = _em_chunk(theta_src, i, s1, theta_dst, d, c1, LANES, g, eta,
                                   _chunk_noise(word, xi_part, ch, c1, LANES, kick),
                                   q1, n1, r1, track_sq)
            q2, n2, r2 = _em_chunk(theta_src, i, s2, theta_dst, d, c2, LANES, g, eta,
                                   _chunk_noise(word, xi_part, ch, c2, LANES, kick),
                                   q2, n2, r2, track_sq)
            q3, n3, r3 = _em_chunk(theta_src, i, s3, theta_dst, d, c3, LANES, g, eta,
                                   _chunk_noise(word, xi_part, ch, c3, LANES, kick),
                                   q3, n3, r3, track_sq)
        _store4(quad_part, ch, c0, q0, q1, q2, q3)
        _store4(gnorm_part, ch, c0, n0, n1, n2, n3)
        if sq_part is not None:
            _store4(sq_part, ch, c0, r0, r1, r2, r3)
        c0 += 4 * LANES
    while c0 < b:
        count = min(LANES, b - c0)
        q = simd.zeros(quad_part)
        gn = simd.zeros(quad_part)
        sq = simd.zeros(quad_part)
        for i in range(lo, hi):
            d, g, word = _row_start(perm, gdiag, i, key, b, xi_part, ch, c0, LANES)
            s_vec = _chunk_product(indptr, indices, data, s_given, theta_src, i, c0, count)
            noise = _chunk_noise(word, xi_part, ch, c0, count, noise_std * math.sqrt(g))
            q, gn, sq = _em_chunk(theta_src, i, s_vec, theta_dst, d, c0, count, g, eta,
                                  noise, q, gn, sq, track_sq)
        _put(quad_part, q, ch, c0, count)
        _put(gnorm_part, gn, ch, c0, count)
        if sq_part is not None:
            _put(sq_part, sq, ch, c0, count)
        c0 += LANES


@_jit(parallel=True)
def em_kernel(indptr, indices, data, s_given, theta_src, theta_dst, perm, gdiag, eta, noise_std,
              key, xi_part, quad_part, gnorm_part, sq_part):
    """One EM step, ``theta_next = theta - eta G S theta + noise_std G^(1/2) xi``, for a
    diagonal (or no) preconditioner, with the per-chain float64 sums of ``theta^T S theta``,
    ``(S theta)^T G (S theta)`` and ``|theta_next|^2`` per row chunk.

    Options, each None or an array:

    - `indptr`, `indices`, `data`: the CSR arrays of the operator (fused step: the
      product stays in registers and the state is read once; ``theta_dst`` must then
      differ from ``theta_src``, whose rows neighbouring rows still need; `s_given` is
      not read), or None with the product ``S theta`` given as `s_given` (two-pass).
      The arithmetic is the same either way, so the two agree bit for bit.
    - `perm`: the operator and ``theta_src`` are in the order ``perm`` (``P A P^T`` and
      ``theta[perm]``), and row ``i`` is written to row ``perm[i]`` of ``theta_dst`` with
      the noise of that original row: the trajectory is the unpermuted one up to rounding.
    - `gdiag`: the diagonal preconditioner (None: identity).
    - `xi_part`: per-chunk rows for Gaussian noise (None: Rademacher noise).
    - `sq_part`: receives ``|theta_next|^2`` (None: not computed).

    Loop order: for each chunk of ``CHUNK`` rows, the columns go in groups of four vectors,
    then single (possibly partial) vectors, and each group sweeps the chunk's rows with
    its running sums in registers.
    """
    for ch in prange(quad_part.shape[0]):
        _em_rows(np.int64(ch), indptr, indices, data, s_given, theta_src, theta_dst, perm,
                 gdiag, eta, noise_std, key, xi_part, quad_part, gnorm_part, sq_part)


@_jit()
def em_kernel_serial(indptr, indices, data, s_given, theta_src, theta_dst, perm, gdiag, eta,
                     noise_std, key, xi_part, quad_part, gnorm_part, sq_part):
    """:func:`em_kernel` on one thread."""
    for ch in range(quad_part.shape[0]):
        _em_rows(ch, indptr, indices, data, s_given, theta_src, theta_dst, perm, gdiag, eta,
                 noise_std, key, xi_part, quad_part, gnorm_part, sq_part)


@_jit()
def _baoab_rows(ch, indptr, indices, data, s_given, q_src, q_dst, p, perm, gdiag, h, friction,
                kick, key, xi_part, quad_part):
    """Rows ``ch * CHUNK .. (ch + 1) * CHUNK`` of :func:`baoab_kernel`."""
    n, b = q_src.shape
    half = 0.5 * h
    lo, hi = ch * CHUNK, min(n, (ch + 1) * CHUNK)
    c0 = 0
    while c0 + 4 * LANES <= b:
        q0 = q1 = q2 = q3 = simd.zeros(quad_part)
        for i in range(lo, hi):
            d, g, word = _row_start(perm, gdiag, i, key, b, xi_part, ch, c0, 4 * LANES)
            kick_g = kick * math.sqrt(g)
            s0, s1, s2, s3 = _group_product(indptr, indices, data, s_given, q_src, i, c0)
            c1, c2, c3 = c0 + LANES, c0 + 2 * LANES, c0 + 3 * LANES
            q0 = _baoab_chunk(q_src, i, s0, p, q_dst, d, c0, LANES, h * g, half, friction,
                              _chunk_noise(word, xi_part, ch, c0, LANES, kick_g), q0)
            q1 = _baoab_chunk(q_src, i, s1, p, q_dst, d, c1, LANES, h * g, half, friction,
                              _chunk_noise(word, xi_part, ch, c1, LANES, kick_g), q1)
            q2 = _baoab_chunk(q_src, i, s2, p, q_dst, d, c2, LANES, h * g, half, friction,
                              _chunk_noise(word, xi_part, ch, c2, LANES, kick_g), q2)
            q3 = _baoab_chunk(q_src, i, s3, p, q_dst, d, c3, LANES, h * g, half, friction,
                              _chunk_noise(word, xi_part, ch, c3, LANES, kick_g), q3)
        _store4(quad_part, ch, c0, q0, q1, q2, q3)
        c0 += 4 * LANES
    while c0 < b:
        count = min(LANES, b - c0)
        q = simd.zeros(quad_part)
        for i in range(lo, hi):
            d, g, word = _row_start(perm, gdiag, i, key, b, xi_part, ch, c0, LANES)
            s_vec = _chunk_product(indptr, indices, data, s_given, q_src, i, c0, count)
            noise = _chunk_noise(word, xi_part, ch, c0, count, kick * math.sqrt(g))
            q = _baoab_chunk(q_src, i, s_vec, p, q_dst, d, c0, count, h * g, half,
                             friction, noise, q)
        _put(quad_part, q, ch, c0, count)
        c0 += LANES


@_jit(parallel=True)
def baoab_kernel(indptr, indices, data, s_given, q_src, q_dst, p, perm, gdiag, h, friction,
                 kick, key, xi_part, quad_part):
    """One BAOAB step (kick, drift, Ornstein–Uhlenbeck, drift, merged as in
    NumpyBackend.baoab_update) for a diagonal (or no) preconditioner, with the per-chain
    float64 sums of ``q^T S q`` of the incoming positions per row chunk.

    Positions ``q_src -> q_dst``, options and row order as in :func:`em_kernel`; the
    velocities ``p`` are in the original row order and are updated in place.
    """
    for ch in prange(quad_part.shape[0]):
        _baoab_rows(np.int64(ch), indptr, indices, data, s_given, q_src, q_dst, p, perm, gdiag,
                    h, friction, kick, key, xi_part, quad_part)


@_jit()
def baoab_kernel_serial(indptr, indices, data, s_given, q_src, q_dst, p, perm, gdiag, h,
                        friction, kick, key, xi_part, quad_part):
    """:func:`baoab_kernel` on one thread."""
    for ch in range(quad_part.shape[0]):
        _baoab_rows(ch, indptr, indices, data, s_given, q_src, q_dst, p, perm, gdiag, h,
                    friction, kick, key, xi_part, quad_part)


@_jit(parallel=True)
def parallel_copy(src, dst):
    """``dst[:] = src`` for 1-D arrays, all threads (a memory-bandwidth probe)."""
    for i in prange(src.size):
        dst[i] = src[i]
