"""Counter-based generator: known answers, bit-exact C reference, statistics, CounterStream.

Statistical bounds are 5 standard errors of the statistic under the null
hypothesis of iid draws, derived from the sample size in each test (for a
sample mean of N unit-variance values the standard error is 1/sqrt(N), for a
lag correlation also 1/sqrt(N), for the sample variance of a Gaussian
sqrt(2/N), for its fourth moment sqrt(96/N)).
"""

import math
import shutil
import subprocess

import numpy as np
import pytest

from lmatrank.backends import CounterStream, rademacher
from lmatrank.backends._counter_rng import (PHILOX_C_SOURCE, counter_bytes, counter_gaussian,
                                            counter_rademacher, philox4x32, philox_words,
                                            split_key)

# Random123 known-answer vectors for Philox4x32-10: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), 0, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, 0xFFFFFFFFFFFFFFFF, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), 0x299F31D0A4093822,
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_known_answers(counter, key, expected):
    assert tuple(int(w) for w in philox4x32([counter], key)[0]) == expected


def test_word_layout_follows_counters():
    words = philox_words(11, call=3, stream=5, n_words=10)
    manual = philox4x32([[0, 0, 3, 5], [1, 0, 3, 5], [2, 0, 3, 5]], 11).reshape(-1)[:10]
    np.testing.assert_array_equal(words, manual)
    assert counter_bytes(11, 3, 5, 9) == manual.astype("<u4").tobytes()[:9]


# ----------------------------------------------------------- bit-exact C check
C_DRIVER = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#define LMR_FN static inline
%s
int main(int argc, char** argv)
{
    lmr_u64 key = strtoull(argv[1], 0, 10);
    lmr_u32 call = (lmr_u32)strtoul(argv[2], 0, 10), stream = (lmr_u32)strtoul(argv[3], 0, 10);
    long long count = atoll(argv[4]);
    for (long long i = 0; i < count; ++i) printf("%%u\n", lmr_counter_word(key, call, stream, i));
    for (long long i = 0; i < count; ++i) printf("%%d\n", lmr_counter_sign(key, call, stream, i));
    for (long long i = 0; i < count; ++i)
        printf("%%.17g\n", lmr_counter_gaussian(key, call, stream, i));
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_reference(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no host C compiler (cc/gcc) on PATH: bit-exact C reference not checked")
    folder = tmp_path_factory.mktemp("philox_c")
    source = folder / "philox_ref.c"
    source.write_text(C_DRIVER % PHILOX_C_SOURCE)
    exe = folder / "philox_ref"
    subprocess.run([compiler, "-O2", "-std=c99", "-ffp-contract=off", str(source), "-o",
                    str(exe), "-lm"], check=True, capture_output=True)

    def run(key, call, stream, count):
        out = subprocess.run([str(exe), str(key), str(call), str(stream), str(count)],
                             check=True, capture_output=True, text=True).stdout.split()
        words = np.array(out[:count], dtype=np.uint64).astype(np.uint32)
        signs = np.array(out[count:2 * count], dtype=np.int64)
        gauss = np.array(out[2 * count:], dtype=np.float64)
        return words, signs, gauss

    return run


@pytest.mark.parametrize("key, call, stream", [(0, 0, 0), (2 ** 64 - 1, 2 ** 32 - 1, 7),
                                               (123456789012345, 41, 0)])
def test_c_source_matches_numpy_bit_for_bit(c_reference, key, call, stream):
    count = 1000
    words, signs, gauss = c_reference(key, call, stream, count)
    np.testing.assert_array_equal(words, philox_words(key, call, stream, count))
    np.testing.assert_array_equal(signs, counter_rademacher(key, call, stream, count))
    # Box-Muller uses log/cos/sin: libm implementations may differ in the last bits
    expected = counter_gaussian(key, call, stream, count)
    np.testing.assert_allclose(gauss, expected, rtol=4 * np.finfo(float).eps, atol=1e-15)


# ------------------------------------------------------------------ statistics
def _lag_correlation(x, lag):
    x = x - x.mean()
    return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_moments_and_lag_correlations(kind):
    N = 400_000
    make = counter_rademacher if kind == "rademacher" else counter_gaussian
    x = make(2024, 0, 0, N)
    se = 1.0 / math.sqrt(N)
    assert abs(x.mean()) < 5 * se
    if kind == "rademacher":
        assert set(np.unique(x).tolist()) == {-1.0, 1.0}
    else:
        assert abs(x.var() - 1.0) < 5 * math.sqrt(2.0 / N)
        assert abs(np.mean(x ** 4) - 3.0) < 5 * math.sqrt(96.0 / N)
        assert abs(np.mean(x ** 3)) < 5 * math.sqrt(15.0 / N)
        # tails: P(|z| > 3) = 0.0027
        p3 = 2 * 0.5 * math.erfc(3 / math.sqrt(2))
        assert abs(np.mean(np.abs(x) > 3) - p3) < 5 * math.sqrt(p3 * (1 - p3) / N)
    # lags that cross bit, byte, word and counter boundaries
    for lag in (1, 2, 3, 7, 8, 31, 32, 64, 127, 128, 1000):
        assert abs(_lag_correlation(x, lag)) < 5 * se, lag


def test_raw_word_bits_are_balanced():
    N = 200_000
    words = philox_words(5, 0, 0, N)
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    freq = bits.mean(axis=0)
    assert np.all(np.abs(freq - 0.5) < 5 * 0.5 / math.sqrt(N))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_chains_and_steps_are_uncorrelated(kind):
    n, c, steps = 20_000, 16, 4
    make = counter_rademacher if kind == "rademacher" else counter_gaussian
    blocks = np.stack([make(99, step, 0, (n, c)) for step in range(steps)])
    se = 1.0 / math.sqrt(n)
    # across chains (columns of one block)
    corr = np.corrcoef(blocks[0].T)
    off = corr[~np.eye(c, dtype=bool)]
    assert np.max(np.abs(off)) < 5 * se
    # across steps (same entry, consecutive calls) and across streams
    for step in range(1, steps):
        r = np.corrcoef(blocks[0].ravel(), blocks[step].ravel())[0, 1]
        assert abs(r) < 5 / math.sqrt(n * c)
    other_stream = make(99, 0, 1, (n, c))
    r = np.corrcoef(blocks[0].ravel(), other_stream.ravel())[0, 1]
    assert abs(r) < 5 / math.sqrt(n * c)
    # nearby keys give unrelated streams
    r = np.corrcoef(blocks[0].ravel(), make(100, 0, 0, (n, c)).ravel())[0, 1]
    assert abs(r) < 5 / math.sqrt(n * c)


def test_sum_of_squares_of_block_has_chi2_spread():
    # per-chain sum of n squared Gaussians: mean n, variance 2n (what the Langevin
    # observable's variance depends on)
    n, c = 2_000, 200
    z = counter_gaussian(7, 0, 0, (n, c))
    sums = (z ** 2).sum(axis=0)
    assert abs(sums.mean() - n) < 5 * math.sqrt(2 * n / c)
    # sample variance of c values from a distribution with variance 2n: relative se ~ sqrt(2/c)
    assert abs(sums.var(ddof=1) / (2 * n) - 1) < 5 * math.sqrt(2.0 / c) + 12.0 / n


# --------------------------------------------------------------- CounterStream
def test_stream_drives_numpy_rademacher_exactly():
    a = rademacher(CounterStream(3), (7, 5), np.float32)
    b = counter_rademacher(3, 0, 0, (7, 5), np.float32)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32


def test_stream_counts_calls_and_is_reproducible():
    g = CounterStream(42, stream=3)
    first = g.standard_normal((4, 2))
    second = g.standard_normal((4, 2))
    assert g.calls == 2
    assert not np.array_equal(first, second)
    h = CounterStream(42, stream=3)
    np.testing.assert_array_equal(h.standard_normal((4, 2)), first)
    np.testing.assert_array_equal(first, counter_gaussian(42, 0, 3, (4, 2)))
    assert np.random.default_rng(g) is g


def test_standard_normal_signature():
    g = CounterStream(1)
    assert isinstance(g.standard_normal(), float)
    assert g.standard_normal(5).shape == (5,)
    out = np.empty((3, 2), dtype=np.float32)
    assert g.standard_normal(out=out) is out
    np.testing.assert_array_equal(out, counter_gaussian(1, 2, 0, (3, 2), np.float32))
    assert g.standard_normal(3, dtype=np.float32).dtype == np.float32
    with pytest.raises(TypeError, match="float32 and float64"):
        g.standard_normal(3, dtype=np.int64)


def test_spawn_gives_distinct_reproducible_children():
    kids = CounterStream(9).spawn(3)
    again = CounterStream(9).spawn(3)
    assert [k.key for k in kids] == [k.key for k in again]
    assert len({k.key for k in kids}) == 3
    assert all(isinstance(k, CounterStream) for k in kids)


@pytest.mark.parametrize("key, error, match", [
    (-1, ValueError, r"\[0, 2\*\*64\)"), (2 ** 64, ValueError, r"\[0, 2\*\*64\)"),
    (1.5, TypeError, "must be an integer"), (True, TypeError, "must be an integer"),
])
def test_bad_keys_are_refused(key, error, match):
    with pytest.raises(error, match=match):
        CounterStream(key)
    with pytest.raises(error, match=match):
        split_key(key)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"stream must be in \[0, 2\*\*32\)"):
        CounterStream(1, stream=2 ** 32)
    with pytest.raises(ValueError, match="length must be >= 0"):
        CounterStream(1).bytes(-1)
    with pytest.raises(ValueError, match="last axis of length 4"):
        philox4x32([[0, 0, 0]], 0)
