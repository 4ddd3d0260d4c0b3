"""Counter-based noise shared bit for bit by the numpy, C and CUDA code.

The generator is Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random
numbers: as easy as 1, 2, 3", SC 2011): a keyed bijection of a 128-bit counter
whose 10-round output passes BigCrush. Every noise entry is a pure function of

    (key, call, stream, flat index)

so a GPU thread computes its own entry without any generator state, and the
numpy implementation below produces exactly the same numbers.

Stream layout
-------------
``key`` is a 64-bit seed split into the two 32-bit Philox key words
``(key & 0xffffffff, key >> 32)``. Call number ``call`` (one per noise block;
a :class:`CounterStream` counts its calls) with sub-stream ``stream`` uses the
counters ``(j & 0xffffffff, j >> 32, call, stream)`` for ``j = 0, 1, ...``;
each counter gives four 32-bit words, word ``m`` of the call being lane
``m % 4`` of counter ``j = m // 4``.

- **bytes**: the little-endian bytes of the words, in order (what
  :meth:`CounterStream.bytes` returns).
- **Rademacher**: entry ``i`` (flat, row-major) is ``-1`` when bit ``7 - i % 8``
  of byte ``i // 8`` is set, else ``+1`` — exactly what
  :func:`lmatrank.backends.rademacher` makes of those bytes, so the numpy
  backend driven by a :class:`CounterStream` draws the same signs as the
  kernels. In word terms: bit ``8 * ((i // 8) % 4) + 7 - i % 8`` of word
  ``i // 32``.
- **Gaussian**: entries ``4j .. 4j+3`` come from counter ``j``: the words
  ``(w0, w1)`` and ``(w2, w3)`` become uniforms ``u = (w + 0.5) 2^-32`` in
  ``(0, 1)`` and Box–Muller gives ``r cos(2 pi u')``, ``r sin(2 pi u')`` with
  ``r = sqrt(-2 log u)``, in float64, then rounded to the requested dtype.
  32-bit uniforms cut the tails at 6.8 standard deviations (the variance
  changes by less than 1e-9). The transcendental functions of CUDA's libdevice
  and of the host's libm may differ in the last bit, so Gaussian entries agree
  across devices to a few ulp, Rademacher entries exactly.

The C source :data:`PHILOX_C_SOURCE` is the one the CUDA kernels include; the
tests compile it with the host C compiler and compare it with the numpy
implementation bit for bit.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["CounterStream", "PHILOX_C_SOURCE", "counter_bytes", "counter_gaussian",
           "counter_rademacher", "philox4x32", "philox_words", "split_key"]

_MASK32 = 0xFFFFFFFF
_MULT0 = np.uint64(0xD2511F53)
_MULT1 = np.uint64(0xCD9E8D57)
_WEYL0 = 0x9E3779B9
_WEYL1 = 0xBB67AE85
_SHIFT32 = np.uint64(32)
_LOW32 = np.uint64(_MASK32)
_INV_2_32 = 2.0 ** -32
_TWO_PI = 2.0 * math.pi
# salt of the counters that derive child keys in CounterStream.spawn
_SPAWN_TAG = 0x5EED5EED

#: C99/CUDA source of the generator. ``LMR_FN`` is ``__device__ __forceinline__``
#: in the CUDA kernels and ``static inline`` for the host compiler; everything
#: else is shared text, so the host build is a faithful reference of the device code.
PHILOX_C_SOURCE = r"""
typedef unsigned int lmr_u32;
typedef unsigned long long lmr_u64;

LMR_FN void lmr_philox4x32_10(lmr_u32 c0, lmr_u32 c1, lmr_u32 c2, lmr_u32 c3,
                              lmr_u32 k0, lmr_u32 k1, lmr_u32 out[4])
{
    for (int round = 0; round < 10; ++round) {
        lmr_u64 p0 = (lmr_u64)0xD2511F53u * (lmr_u64)c0;
        lmr_u64 p1 = (lmr_u64)0xCD9E8D57u * (lmr_u64)c2;
        lmr_u32 hi0 = (lmr_u32)(p0 >> 32), lo0 = (lmr_u32)p0;
        lmr_u32 hi1 = (lmr_u32)(p1 >> 32), lo1 = (lmr_u32)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* word m of call `call` of sub-stream `stream` */
LMR_FN lmr_u32 lmr_counter_word(lmr_u64 key, lmr_u32 call, lmr_u32 stream, lmr_u64 m)
{
    lmr_u32 w[4];
    lmr_u64 j = m >> 2;
    lmr_philox4x32_10((lmr_u32)j, (lmr_u32)(j >> 32), call, stream,
                      (lmr_u32)key, (lmr_u32)(key >> 32), w);
    return w[m & 3];
}

/* +1 or -1 for flat entry i (the byte/bit order of numpy.unpackbits) */
LMR_FN int lmr_counter_sign(lmr_u64 key, lmr_u32 call, lmr_u32 stream, lmr_u64 i)
{
    lmr_u32 word = lmr_counter_word(key, call, stream, i >> 5);
    int bit = (int)((word >> (8 * ((i >> 3) & 3) + 7 - (i & 7))) & 1u);
    return 1 - 2 * bit;
}

/* standard normal for flat entry i (Box-Muller on two 32-bit uniforms), float64 */
LMR_FN double lmr_counter_gaussian(lmr_u64 key, lmr_u32 call, lmr_u32 stream, lmr_u64 i)
{
    lmr_u32 w[4];
    lmr_u64 j = i >> 2;
    lmr_philox4x32_10((lmr_u32)j, (lmr_u32)(j >> 32), call, stream,
                      (lmr_u32)key, (lmr_u32)(key >> 32), w);
    int pair = (int)((i >> 1) & 1);
    double u1 = ((double)w[2 * pair] + 0.5) * 2.3283064365386963e-10;
    double u2 = ((double)w[2 * pair + 1] + 0.5) * 2.3283064365386963e-10;
    double r = sqrt(-2.0 * log(u1));
    double angle = 6.283185307179586 * u2;
    return (i & 1) ? r * sin(angle) : r * cos(angle);
}
"""


def split_key(key):
    """The two 32-bit Philox key words of a 64-bit seed, after validation.

    Raises
    ------
    TypeError
        If `key` is not an integer.
    ValueError
        If `key` is outside ``[0, 2**64)``.
    """
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise TypeError(f"counter-generator key must be an integer, got {type(key).__name__}")
    key = int(key)
    if not 0 <= key < 2 ** 64:
        raise ValueError(f"counter-generator key must be in [0, 2**64), got {key}")
    return key & _MASK32, key >> 32


def _check_word(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value <= _MASK32:
        raise ValueError(f"{what} must be in [0, 2**32), got {value}")
    return value


def philox4x32(counters, key):
    """Philox4x32-10 of a batch of 128-bit counters.

    Parameters
    ----------
    counters : array_like of uint32, shape (..., 4)
        Counter words ``(c0, c1, c2, c3)``.
    key : int
        64-bit key (low word first).

    Returns
    -------
    ndarray of uint32, shape (..., 4)

    Examples
    --------
    Known-answer vector of the Random123 distribution (zero counter, zero key):

    >>> from lmatrank.backends._counter_rng import philox4x32
    >>> [f"{w:08x}" for w in philox4x32([[0, 0, 0, 0]], 0)[0]]
    ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    k0, k1 = split_key(key)
    ctr = np.asarray(counters, dtype=np.uint64)
    if ctr.shape[-1:] != (4,):
        raise ValueError(f"counters must have a last axis of length 4, got shape {ctr.shape}")
    c0, c1, c2, c3 = (ctr[..., lane].copy() for lane in range(4))
    for _ in range(10):
        p0 = _MULT0 * c0
        p1 = _MULT1 * c2
        c0 = (p1 >> _SHIFT32) ^ c1 ^ np.uint64(k0)
        c1 = p1 & _LOW32
        c2 = (p0 >> _SHIFT32) ^ c3 ^ np.uint64(k1)
        c3 = p0 & _LOW32
        k0 = (k0 + _WEYL0) & _MASK32
        k1 = (k1 + _WEYL1) & _MASK32
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def philox_words(key, call, stream, n_words):
    """The first `n_words` 32-bit words of one call (see the module docstring)."""
    call = _check_word(call, "call")
    stream = _check_word(stream, "stream")
    n_words = int(n_words)
    if n_words < 0:
        raise ValueError(f"n_words must be >= 0, got {n_words}")
    n_blocks = -(-n_words // 4)
    j = np.arange(n_blocks, dtype=np.uint64)
    counters = np.empty((n_blocks, 4), dtype=np.uint64)
    counters[:, 0] = j & _LOW32
    counters[:, 1] = j >> _SHIFT32
    counters[:, 2] = call
    counters[:, 3] = stream
    return philox4x32(counters, key).reshape(-1)[:n_words]


def counter_bytes(key, call, stream, length):
    """`length` bytes of one call: the little-endian bytes of its words."""
    words = philox_words(key, call, stream, -(-int(length) // 4))
    return words.astype("<u4").tobytes()[:length]


def counter_rademacher(key, call, stream, shape, dtype=np.float64):
    """Block of +-1 entries of one call (row-major flat index ``i``)."""
    size = int(np.prod(shape))
    data = np.frombuffer(counter_bytes(key, call, stream, (size + 7) // 8), dtype=np.uint8)
    bits = np.unpackbits(data, count=size)
    out = bits.astype(dtype).reshape(shape)
    out *= -2
    out += 1
    return out


def counter_gaussian(key, call, stream, shape, dtype=np.float64):
    """Block of standard normal entries of one call (Box–Muller, see the module docstring)."""
    size = int(np.prod(shape))
    words = philox_words(key, call, stream, 4 * (-(-size // 4))).reshape(-1, 2, 2)
    uniforms = (words.astype(np.float64) + 0.5) * _INV_2_32
    radius = np.sqrt(-2.0 * np.log(uniforms[..., 0]))
    angle = _TWO_PI * uniforms[..., 1]
    pairs = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    return pairs.reshape(-1)[:size].astype(dtype, copy=False).reshape(shape)


class CounterStream(np.random.Generator):
    """A numpy Generator whose noise blocks come from the counter-based stream.

    Pass it as ``rng`` to drive *any* backend with the same noise: the numpy
    backend asks it for :meth:`bytes` (Rademacher) and :meth:`standard_normal`
    (Gaussian), which are counter-based here, and the CuPy backend recognises
    the stream and generates the identical blocks on the device from
    ``(key, call, stream)``. Every call of :meth:`bytes`, :meth:`standard_normal`
    or :meth:`take_call` consumes one call number.

    Other Generator methods (``random``, ``integers``, ...) come from a
    ``PCG64`` generator seeded with `key`: deterministic, but not reproduced by
    the device kernels.

    Parameters
    ----------
    key : int
        64-bit seed, ``0 <= key < 2**64``.
    stream : int, optional
        32-bit sub-stream (default 0).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.backends import CounterStream, rademacher
    >>> a = rademacher(CounterStream(7), (4, 3))
    >>> b = CounterStream(7).rademacher((4, 3))
    >>> bool(np.array_equal(a, b)), sorted(set(a.ravel().tolist())) == [-1.0, 1.0]
    (True, True)
    """

    def __init__(self, key, stream=0):
        split_key(key)
        self.key = int(key)
        self.stream = _check_word(stream, "stream")
        self.calls = 0
        super().__init__(np.random.PCG64([self.key & _MASK32, self.key >> 32, self.stream]))

    def take_call(self):
        """Return the next call number and advance (what a device kernel is given)."""
        call = self.calls
        if call > _MASK32:
            raise OverflowError("CounterStream exhausted its 2**32 calls")
        self.calls += 1
        return call

    def bytes(self, length):
        """`length` counter-based bytes (one call)."""
        length = int(length)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        return counter_bytes(self.key, self.take_call(), self.stream, length)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        """Counter-based standard normal entries (one call); the numpy signature."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"standard_normal supports float32 and float64, got {dtype}")
        if out is not None:
            out[...] = counter_gaussian(self.key, self.take_call(), self.stream, out.shape,
                                        out.dtype)
            return out
        shape = () if size is None else ((size,) if np.ndim(size) == 0 else tuple(size))
        values = counter_gaussian(self.key, self.take_call(), self.stream, shape, dtype)
        return values[()] if size is None else values

    def rademacher(self, shape, dtype=np.float64):
        """Counter-based +-1 block (one call), identical to ``rademacher(self, shape)``."""
        return counter_rademacher(self.key, self.take_call(), self.stream, shape, dtype)

    def spawn(self, n_children):
        """Independent child streams (keys derived through Philox from this stream's key)."""
        n_children = int(n_children)
        if n_children < 0:
            raise ValueError(f"n_children must be >= 0, got {n_children}")
        base = self.calls
        counters = np.zeros((n_children, 4), dtype=np.uint64)
        counters[:, 0] = np.arange(base, base + n_children, dtype=np.uint64) & _LOW32
        counters[:, 2] = self.stream
        counters[:, 3] = _SPAWN_TAG
        words = philox4x32(counters, self.key).astype(np.uint64)
        self.calls += n_children
        return [CounterStream(int(w[0]) | (int(w[1]) << 32)) for w in words]

    def __repr__(self):
        return f"CounterStream(key={self.key}, stream={self.stream}, calls={self.calls})"
