"""The explicit SIMD vectors of the Numba kernels, checked lane by lane against numpy."""

import numpy as np
import pytest
from numba import njit

from lmatrank.backends import _simd as simd

L = simd.LANES


@njit
def _axpy_rows(a, x, y, out, i, j):
    """out[i, j:j+L] = a * x[i, j:j+L] + y[i, j:j+L] - x[i, j:j+L] (float64 arithmetic)."""
    xv = simd.astype(simd.load(x, i, j), out)
    yv = simd.astype(simd.load(y, i, j), out)
    simd.store(out, a * xv + yv - xv, i, j)


@njit
def _partial_copy(x, out, count, i, j):
    simd.store_first(out, simd.load_first(x, count, i, j) * 2.0, count, i, j)


@njit
def _muladd(a, x, y, out):
    simd.store(out, simd.muladd(simd.load(x, 0, 0), a, simd.load(y, 0, 0)), 0, 0)


@njit
def _signs(word, first, magnitude, out):
    simd.store(out, simd.signs(word, first, magnitude), 0, 0)


@njit
def _zeros_plus(x, out):
    acc = simd.zeros(x)
    acc += simd.load(x, 0, 0)
    acc += simd.load(x, 1, 0)
    simd.store(out, simd.astype(acc, out), 0, 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("j", [0, 3, 13])
def test_load_store_and_arithmetic_match_numpy(dtype, j):
    rng = np.random.default_rng(j)
    x = rng.standard_normal((3, 24)).astype(dtype)
    y = rng.standard_normal((3, 24)).astype(dtype)
    out = np.full((3, 24), np.nan)
    _axpy_rows(0.75, x, y, out, 1, j)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    expected = 0.75 * xd[1, j:j + L] + yd[1, j:j + L] - xd[1, j:j + L]
    assert np.array_equal(out[1, j:j + L], expected)  # lane-wise IEEE, no reassociation
    untouched = np.ones(out.shape, bool)
    untouched[1, j:j + L] = False
    assert np.isnan(out[untouched]).all()


@pytest.mark.parametrize("count", range(L + 1))
def test_masked_chunk_touches_only_the_first_count_entries(count):
    # the row ends right after the chunk's `count` entries: masked lanes must not be read
    x = np.arange(2.0 * 12).reshape(2, 12)
    out = np.full((2, 12), -1.0)
    j = 12 - count if count else 4
    _partial_copy(x, out, count, 1, j)
    expected = np.full((2, 12), -1.0)
    expected[1, j:j + count] = 2 * x[1, j:j + count]
    assert np.array_equal(out, expected)


def test_float64_to_float32_rounds_and_float32_to_float64_is_exact():
    x = np.random.default_rng(1).standard_normal((2, L)).astype(np.float32)
    out = np.empty((1, L))
    _zeros_plus(x, out)
    assert np.array_equal(out[0], (x[0] + x[1]).astype(np.float64))  # summed in float32
    wide = np.random.default_rng(2).standard_normal((2, L))
    narrow = np.empty((1, L), np.float32)
    _zeros_plus(wide, narrow)
    assert np.array_equal(narrow[0], (wide[0] + wide[1]).astype(np.float32))


def test_muladd_is_a_times_b_plus_c_to_one_rounding():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((1, L)), rng.standard_normal((1, L))
    out = np.empty((1, L))
    _muladd(1.0 / 3.0, x, y, out)
    exact = x[0] * (1.0 / 3.0) + y[0]
    np.testing.assert_allclose(out[0], exact, rtol=4 * np.finfo(float).eps, atol=1e-300)


@pytest.mark.parametrize("first", [0, 8, 56])
def test_signs_follow_the_bits_of_the_word(first):
    word = np.uint64(0xF0E1D2C3B4A59687)
    out = np.empty((1, L))
    _signs(word, first, 0.5, out)
    bits = [(int(word) >> (first + lane)) & 1 for lane in range(L)]
    assert np.array_equal(out[0], [-0.5 if bit else 0.5 for bit in bits])


def test_bad_arrays_are_type_errors_at_compile_time():
    with pytest.raises(TypeError, match="C-contiguous 2-D float array"):
        _axpy_rows(1.0, np.ones((2, 16))[:, ::2], np.ones((2, 8)), np.ones((2, 8)), 0, 0)
    with pytest.raises(TypeError, match="C-contiguous 2-D float array"):
        _partial_copy(np.ones(16), np.ones(16), 3, 0, 0)
    with pytest.raises(TypeError, match="cannot store"):
        _partial_copy(np.ones((2, 8)), np.ones((2, 8), np.float32), 3, 0, 0)
