"""Numba kernels of the CPU backend (compiled with ``cache=True``).

Everything here is a plain function of arrays; :mod:`._numba` holds the
backend object that owns the work buffers and calls these kernels.

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

#: Rows per reduction chunk (fixed, independent of the thread count).
CHUNK = 2048

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


@njit(cache=True, inline="always")
def splitmix64(key, counter):
    """Output number `counter` of SplitMix64 seeded with `key` (both uint64)."""
    z = key + (counter + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
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
        pairs = (b + 1) // 2
        for p in range(pairs):
            word = splitmix64(key, r * np.uint64(pairs) + np.uint64(p))
            u1 = (np.float64(word >> _S32) + 0.5) * _INV32
            u2 = (np.float64(word & _LOW32) + 0.5) * _INV32
            radius = math.sqrt(-2.0 * math.log(u1))
            angle = _TWO_PI * u2
            out[2 * p] = radius * math.cos(angle)
            if 2 * p + 1 < b:
                out[2 * p + 1] = radius * math.sin(angle)


@njit(parallel=True, cache=True)
def noise_block(key, kind, out, scratch):
    """Fill `out` (n, b) with the counter-based noise of `key`."""
    n, b = out.shape
    n_chunks = scratch.shape[0]
    for ch in prange(n_chunks):
        xi = scratch[ch]
        for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            fill_noise_row(key, i, b, kind, xi)
            for c in range(b):
                out[i, c] = xi[c]


@njit(parallel=True, cache=True)
def csr_matmat(indptr, indices, data, X, Y, perm, scatter, unroll):
    """``Y[p(i)] = row_i(A) @ X`` for a block ``X`` (n, b); ``p = perm`` if `scatter`.

    `unroll` sums four nonzeros per pass over the block row (see :func:`_row_product`).
    """
    n = indptr.size - 1
    for i in prange(n):
        dst = np.int64(perm[i]) if scatter else np.int64(i)
        _row_product(indptr, indices, data, X, i, Y, dst, unroll)


@njit(parallel=True, cache=True)
def csr_matvec(indptr, indices, data, x, y, perm, scatter):
    """Single-column path of :func:`csr_matmat` (x, y 1-D)."""
    n = indptr.size - 1
    for i in prange(n):
        acc = data[0] * 0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[np.uint64(indices[k])]
        if scatter:
            y[np.int64(perm[i])] = acc
        else:
            y[i] = acc


@njit(parallel=True, cache=True)
def gather_rows(X, perm, out):
    """``out[i] = X[perm[i]]``."""
    b = X.shape[1]
    for i in prange(out.shape[0]):
        src = perm[i]
        for c in range(b):
            out[i, c] = X[src, c]


@njit(cache=True, inline="always")
def rademacher_sign(word, c):
    """Bit ``c`` of `word` as +1.0 / -1.0 (the layout of :func:`fill_noise_row`)."""
    return np.float64(1 - 2 * np.int64((word >> np.uint64(c)) & _ONE))


@njit(cache=True, inline="always")
def _row_noise(key, d, b, kind, xi):
    """Noise of row `d` for the row updates: ``(True, word)`` when the Rademacher signs are
    read straight from the hash ``word`` (``b <= 64``), else ``(False, _)`` with the values
    written to ``xi[:b]``."""
    if kind == RADEMACHER and b <= 64:
        return True, splitmix64(key, np.uint64(d))
    fill_noise_row(key, d, b, kind, xi)
    return False, _ONE


@njit(cache=True, inline="always")
def _em_row(src, i, s, si, dst, d, g, eta, noise_std, key, kind, xi, quad, gnorm, sq, track_sq):
    """EM update of one row: ``dst[d] = src[i] - eta g s[si] + noise_std sqrt(g) xi(d)``.

    Adds row ``i``'s terms of ``theta^T S theta``, ``(S theta)^T G (S theta)`` and
    (if `track_sq`) ``|theta_next|^2`` to the per-chain float64 sums. The noise of
    row ``d`` is generated inline: Rademacher signs straight from one hash when
    ``b <= 64`` (no buffer round trip: measured 1.9x faster than
    :func:`fill_noise_row` + read-back), otherwise through `xi`.
    """
    b = src.shape[1]
    drift = eta * g
    kick = noise_std * math.sqrt(g)
    inline, word = _row_noise(key, d, b, kind, xi)
    # one branch-free loop per case: measured 10-15% faster fused steps than one loop
    # with the branches inside (the xi loop also sums |theta_next|^2 when not asked to;
    # the sum is simply not read then)
    if inline and not track_sq:
        for c in range(b):
            t = np.float64(src[i, c])
            sv = np.float64(s[si, c])
            quad[c] += t * sv
            gnorm[c] += g * sv * sv
            dst[d, c] = t - drift * sv + kick * rademacher_sign(word, c)
    elif inline:
        for c in range(b):
            t = np.float64(src[i, c])
            sv = np.float64(s[si, c])
            quad[c] += t * sv
            gnorm[c] += g * sv * sv
            new = t - drift * sv + kick * rademacher_sign(word, c)
            sq[c] += new * new
            dst[d, c] = new
    else:
        for c in range(b):
            t = np.float64(src[i, c])
            sv = np.float64(s[si, c])
            quad[c] += t * sv
            gnorm[c] += g * sv * sv
            new = t - drift * sv + kick * xi[c]
            sq[c] += new * new
            dst[d, c] = new


@njit(cache=True, inline="always")
def _row_product(indptr, indices, data, src, i, acc, ai, unroll):
    """``acc[ai] = row_i(A) @ src`` in the dtype of `acc` (the operator's).

    :func:`csr_matmat` and the fused steps both use it, so a fused step and a
    product followed by an update agree bit for bit. The running sum lives in
    memory (the block width is not known at compile time), so each nonzero
    adds a store-to-load round trip to the row's dependency chain; `unroll`
    adds four nonzeros per pass, which shortens the chain fourfold: measured
    1.3-1.6x faster on banded matrices, whose gathered rows are in cache, and
    up to 1.3x slower on scattered ones, whose gathers wait on memory (the
    backend decides per matrix, see ``NumbaBackend``).
    """
    b = src.shape[1]
    for c in range(b):
        acc[ai, c] = 0
    k = indptr[i]
    end = indptr[i + 1]
    if unroll:
        while k + 3 < end:
            a0 = data[k]
            a1 = data[k + 1]
            a2 = data[k + 2]
            a3 = data[k + 3]
            j0 = np.uint64(indices[k])
            j1 = np.uint64(indices[k + 1])
            j2 = np.uint64(indices[k + 2])
            j3 = np.uint64(indices[k + 3])
            for c in range(b):
                acc[ai, c] += (a0 * src[j0, c] + a1 * src[j1, c]) + (a2 * src[j2, c]
                                                                      + a3 * src[j3, c])
            k += 4
    while k < end:
        a = data[k]
        j = np.uint64(indices[k])
        for c in range(b):
            acc[ai, c] += a * src[j, c]
        k += 1


@njit(parallel=True, cache=True)
def em_update(theta_src, s_theta, theta_dst, perm, permuted, gdiag, use_g, eta, noise_std, key,
              kind, track_sq, xi_scratch, quad_part, gnorm_part, sq_part):
    """EM update from a given ``S theta`` (diagonal or no preconditioner).

    Row ``i`` of ``theta_src`` / ``s_theta`` goes to row ``perm[i]`` of
    ``theta_dst`` when `permuted` (the layout of :func:`em_step_csr`, whose
    operations it repeats in the same order), else to row ``i``; ``theta_dst``
    may be ``theta_src`` (in place).
    """
    n, b = theta_src.shape
    for ch in prange(quad_part.shape[0]):
        quad, gnorm, sq = quad_part[ch], gnorm_part[ch], sq_part[ch]
        quad[:] = 0.0
        gnorm[:] = 0.0
        sq[:] = 0.0
        for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            d = np.int64(perm[i]) if permuted else np.int64(i)
            g = gdiag[d] if use_g else 1.0
            _em_row(theta_src, i, s_theta, i, theta_dst, d, g, eta, noise_std, key, kind,
                    xi_scratch[ch], quad, gnorm, sq, track_sq)


@njit(parallel=True, cache=True)
def em_step_csr(indptr, indices, data, unroll, theta_src, theta_dst, perm, permuted, gdiag,
                use_g, eta, noise_std, key, kind, track_sq, xi_scratch, s_scratch, quad_part,
                gnorm_part, sq_part):
    """Fused EM step: CSR product, noise, update and observables in one pass.

    Reads ``theta_src`` and writes the next state into ``theta_dst`` (a
    different buffer: neighbouring rows still need the old values). When
    `permuted`, the CSR arrays hold ``P A P^T``, ``theta_src`` holds the
    permuted state ``theta[perm]`` and row ``i`` is written to ``perm[i]`` of
    ``theta_dst`` with the noise of original row ``perm[i]``: the trajectory is
    the unpermuted one up to rounding.
    """
    n = indptr.size - 1
    for ch in prange(quad_part.shape[0]):
        quad, gnorm, sq = quad_part[ch], gnorm_part[ch], sq_part[ch]
        quad[:] = 0.0
        gnorm[:] = 0.0
        sq[:] = 0.0
        for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            _row_product(indptr, indices, data, theta_src, i, s_scratch, ch, unroll)
            d = np.int64(perm[i]) if permuted else np.int64(i)
            g = gdiag[d] if use_g else 1.0
            _em_row(theta_src, i, s_scratch, ch, theta_dst, d, g, eta, noise_std, key, kind,
                    xi_scratch[ch], quad, gnorm, sq, track_sq)


@njit(cache=True, inline="always")
def _baoab_row(q_src, i, s, si, p, q_dst, d, g, h, friction, kick, key, kind, xi, quad):
    """Merged B kicks, A, O, A (the step of NumpyBackend.baoab_update) for one row;
    ``p`` is indexed by the original row ``d``. Noise as in :func:`_em_row`."""
    b = q_src.shape[1]
    half = 0.5 * h
    hg = h * g
    kick_g = kick * math.sqrt(g)
    inline, word = _row_noise(key, d, b, kind, xi)
    if inline:  # two branch-free loops (see _em_row)
        for c in range(b):
            qv = np.float64(q_src[i, c])
            sv = np.float64(s[si, c])
            quad[c] += qv * sv
            pv = np.float64(p[d, c]) - hg * sv
            qv += half * pv
            pv = friction * pv + kick_g * rademacher_sign(word, c)
            p[d, c] = pv
            q_dst[d, c] = qv + half * pv
    else:
        for c in range(b):
            qv = np.float64(q_src[i, c])
            sv = np.float64(s[si, c])
            quad[c] += qv * sv
            pv = np.float64(p[d, c]) - hg * sv
            qv += half * pv
            pv = friction * pv + kick_g * xi[c]
            p[d, c] = pv
            q_dst[d, c] = qv + half * pv


@njit(parallel=True, cache=True)
def baoab_update(q_src, s_q, q_dst, p, perm, permuted, gdiag, use_g, h, friction, kick, key,
                 kind, xi_scratch, quad_part):
    """BAOAB step from a given ``S q`` (diagonal or no preconditioner); row layout
    as in :func:`em_update`, ``p`` in original row order, updated in place."""
    n, b = q_src.shape
    for ch in prange(quad_part.shape[0]):
        quad = quad_part[ch]
        quad[:] = 0.0
        for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            d = np.int64(perm[i]) if permuted else np.int64(i)
            g = gdiag[d] if use_g else 1.0
            _baoab_row(q_src, i, s_q, i, p, q_dst, d, g, h, friction, kick, key, kind,
                       xi_scratch[ch], quad)


@njit(parallel=True, cache=True)
def baoab_step_csr(indptr, indices, data, unroll, q_src, q_dst, p, perm, permuted, gdiag,
                   use_g, h, friction, kick, key, kind, xi_scratch, s_scratch, quad_part):
    """Fused BAOAB step: ``S q`` (CSR), kicks, drifts, noise and ``q^T S q`` in one pass.

    Positions are double-buffered (``q_src`` -> ``q_dst``), velocities ``p``
    are updated in place (original row order). Permutation as in
    :func:`em_step_csr`.
    """
    n = indptr.size - 1
    for ch in prange(quad_part.shape[0]):
        quad = quad_part[ch]
        quad[:] = 0.0
        for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            _row_product(indptr, indices, data, q_src, i, s_scratch, ch, unroll)
            d = np.int64(perm[i]) if permuted else np.int64(i)
            g = gdiag[d] if use_g else 1.0
            _baoab_row(q_src, i, s_scratch, ch, p, q_dst, d, g, h, friction, kick, key, kind,
                       xi_scratch[ch], quad)


@njit(parallel=True, cache=True)
def parallel_copy(src, dst):
    """``dst[:] = src`` for 1-D arrays, all threads (a memory-bandwidth probe)."""
    for i in prange(src.size):
        dst[i] = src[i]
