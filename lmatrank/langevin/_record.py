"""Streaming record of a Langevin run: per-chain block sums of the rank observable.

A run of ``N`` steps and ``c`` chains produces ``N x c`` observables; keeping them all
costs memory proportional to the product budget. :class:`TraceRecorder` keeps instead
per-chain sums over *blocks* of consecutive steps: one block per step while the run is
short, and whenever ``max_blocks`` blocks are full, neighbouring blocks are merged
(the block length doubles). Memory is ``O(max_blocks x c)`` whatever the run length,
and every statistic the estimator needs is a function of block sums:

- the chain-averaged rank-vs-step curve (block means, with the step each block ends at);
- the burn-in (MSER on block means) and the averaging window's mean, chain-means and
  batch-means standard errors and drift (windows are unions of blocks);
- the window means that the count bracket uses (:func:`window_moments`): each window is a
  union of blocks, and its filter is computed for exactly those rows.

Runs of at most ``max_blocks`` steps keep one block per step, so their statistics are
those of the full trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TraceRecorder", "WindowMoments", "DEFAULT_MAX_BLOCKS", "window_stats",
           "window_moments", "log_windows"]

#: Blocks kept per chain (runs up to this many steps are recorded step by step).
DEFAULT_MAX_BLOCKS = 8192
#: At most this many block sums in all (chains x blocks): bounds memory for many chains.
_MAX_CELLS = 1 << 21
#: Batches per chain of the batch-means stderr that backs up the chain-means one.
STDERR_BATCHES = 4
_MIN_BATCH_STEPS = 25
#: With fewer than 8 chains the window is cut into ``ceil(FEW_CHAIN_BATCHES / c)`` batches
#: in all (at least 2 per chain): long batches, so that they are nearly independent even
#: for the slowest counted modes (the bracket inflates the error for the few degrees of
#: freedom).
FEW_CHAIN_BATCHES = 8


class TraceRecorder:
    """Per-chain block sums of a ``(steps, c)`` stream of observables.

    Parameters
    ----------
    n_chains : int
    max_blocks : int, optional
        Blocks kept (even; default :data:`DEFAULT_MAX_BLOCKS`, fewer with very many chains).

    Examples
    --------
    >>> import numpy as np
    >>> rec = TraceRecorder(2, max_blocks=4)
    >>> rec.push(np.arange(20.0).reshape(10, 2))
    >>> sums, lengths = rec.pieces()
    >>> lengths.tolist(), rec.steps, float(sums.sum()) == float(np.arange(20.0).sum())
    ([4, 4, 2], 10, True)
    """

    def __init__(self, n_chains, max_blocks=None):
        if max_blocks is None:
            max_blocks = min(DEFAULT_MAX_BLOCKS, max(256, _MAX_CELLS // max(1, n_chains)))
        self.max_blocks = 2 * max(1, int(max_blocks) // 2)
        self.c = int(n_chains)
        self.block = 1
        self.sums = np.zeros((self.max_blocks, self.c))
        self.full = 0
        self.partial = np.zeros(self.c)
        self.partial_count = 0
        self.steps = 0

    def push(self, rows):
        """Append rows of observables, shape ``(k, c)``."""
        rows = np.asarray(rows, dtype=np.float64)
        i, k = 0, rows.shape[0]
        self.steps += k
        while i < k:
            if self.partial_count or k - i < self.block:
                take = min(self.block - self.partial_count, k - i)
                self.partial += rows[i:i + take].sum(axis=0)
                self.partial_count += take
                i += take
                if self.partial_count == self.block:
                    self._append(self.partial)
                    self.partial = np.zeros(self.c)
                    self.partial_count = 0
                continue
            nb = min((k - i) // self.block, self.max_blocks - self.full)
            chunk = rows[i:i + nb * self.block]
            if self.block == 1:
                self.sums[self.full:self.full + nb] = chunk
            else:
                self.sums[self.full:self.full + nb] = chunk.reshape(
                    nb, self.block, self.c).sum(axis=1)
            self.full += nb
            i += nb * self.block
            if self.full == self.max_blocks:
                self._compact()

    def _append(self, block_sum):
        self.sums[self.full] = block_sum
        self.full += 1
        if self.full == self.max_blocks:
            self._compact()

    def _compact(self):
        half = self.full // 2
        self.sums[:half] = self.sums[0:2 * half:2] + self.sums[1:2 * half:2]
        self.sums[half:] = 0.0
        self.full = half
        self.block *= 2

    def pieces(self):
        """Block sums ``(m, c)`` and block lengths ``(m,)``, the partial block last."""
        lengths = np.full(self.full, self.block, dtype=np.int64)
        sums = self.sums[:self.full]
        if self.partial_count:
            sums = np.vstack([sums, self.partial[None, :]])
            lengths = np.r_[lengths, self.partial_count]
        return sums, lengths

    def edges(self):
        """Row index at which each block starts, and the total: shape ``(m + 1,)``."""
        _, lengths = self.pieces()
        return np.r_[0, np.cumsum(lengths)]

    def curve(self):
        """Chain-averaged block means and the (exclusive) end row of each block."""
        sums, lengths = self.pieces()
        return sums.mean(axis=1) / lengths, np.cumsum(lengths)

    def burn_in_block(self, burn_row):
        """First block that starts at or after row `burn_row` (the window ``[burn, N)``)."""
        edges = self.edges()
        return int(min(np.searchsorted(edges, burn_row, side="left"), edges.size - 2))


def mser_blocks(recorder, max_fraction=0.5):
    """MSER burn-in (White 1997) on the chain-averaged curve, in blocks.

    Batches of ``max(1, steps // 200)`` rows as in :func:`._kinetic.mser_burn_in`,
    rounded to whole blocks. Returns the first block of the window.
    """
    means, ends = recorder.curve()
    m = means.size
    if recorder.partial_count:  # an incomplete block does not enter the truncation rule
        means = means[:-1]
    batch = max(1, (recorder.steps // 200) // recorder.block)
    mb = means.size // batch
    if mb < 4:
        return 0
    offset = means.size - mb * batch
    x = means[offset:].reshape(mb, batch).mean(axis=1)
    rev = x[::-1]
    s1 = np.cumsum(rev)[::-1]
    s2 = np.cumsum(rev * rev)[::-1]
    counts = np.arange(mb, 0, -1).astype(np.float64)
    stat = (s2 - s1 * s1 / counts) / counts ** 2
    limit = max(1, int(max_fraction * mb))
    best = int(np.argmin(stat[:limit]))
    return min(offset + best * batch, m - 1)


@dataclass(frozen=True)
class WindowStats:
    """Mean, standard error and drift of the averaging window ``[start, steps)``."""

    start: int
    length: int
    estimate: float
    stderr: float
    method: str
    drift: float
    drift_stderr: float
    batches: int


def _group_means(sums, lengths, groups):
    """Per-chain means of consecutive groups of blocks: ``(len(groups), c)``."""
    return np.array([sums[a:b].sum(axis=0) / lengths[a:b].sum() for a, b in groups])


def _split(m, parts):
    """`parts` consecutive groups of (nearly) equal block counts covering the last blocks."""
    size = m // parts
    first = m - size * parts
    return [(first + i * size, first + (i + 1) * size) for i in range(parts)]


def window_stats(recorder, first_block, *, chain_threshold=8, always_batches=True):
    """Statistics of the window of blocks ``first_block..`` (see :class:`WindowStats`).

    With ``c >= chain_threshold`` chains the standard error is that of the chain means
    (independent chains), raised to the batch-means one (``STDERR_BATCHES`` per chain)
    when that is larger and the window is long enough (`always_batches`); with fewer
    chains it is the batch-means one (``max(2, ceil(8 / c))`` batches per chain). A
    window of one step with one chain has no error estimate: ``nan``.
    """
    sums, lengths = recorder.pieces()
    sums, lengths = sums[first_block:], lengths[first_block:]
    m, c = sums.shape
    n_avg = int(lengths.sum())
    estimate = float(sums.sum() / (n_avg * c))
    batches = 0
    if c >= chain_threshold:
        means = sums.sum(axis=0) / n_avg
        stderr = float(means.std(ddof=1) / math.sqrt(c))
        how = "chain means"
        if always_batches and n_avg >= STDERR_BATCHES * _MIN_BATCH_STEPS and m >= STDERR_BATCHES:
            bm = _group_means(sums, lengths, _split(m, STDERR_BATCHES))
            batch_err = float(bm.ravel().std(ddof=1) / math.sqrt(bm.size))
            batches = STDERR_BATCHES
            if batch_err > stderr:
                stderr = batch_err
                how = (f"batch means ({STDERR_BATCHES} per chain; larger than the "
                       "chain-means stderr)")
            else:
                how = f"chain means (larger than the batch-means stderr, {STDERR_BATCHES} per chain)"
    else:
        batches = min(max(2, math.ceil(FEW_CHAIN_BATCHES / c)), m)
        if batches >= 2:
            bm = _group_means(sums, lengths, _split(m, batches))
            stderr = float(bm.ravel().std(ddof=1) / math.sqrt(bm.size))
        elif c >= 2:
            stderr = float((sums.sum(axis=0) / n_avg).std(ddof=1) / math.sqrt(c))
        else:
            stderr = math.nan
        how = f"batch means ({batches} per chain)"
    if m >= 4:
        halves = _group_means(sums, lengths, _split(m, 2))
        diff = halves[1] - halves[0]
        drift = float(diff.mean())
        drift_stderr = float(diff.std(ddof=1) / math.sqrt(c)) if c > 1 else 2.0 * stderr
    else:
        drift, drift_stderr = math.nan, math.nan
    return WindowStats(start=int(recorder.edges()[first_block]), length=n_avg,
                       estimate=estimate, stderr=stderr, method=how, drift=drift,
                       drift_stderr=drift_stderr, batches=batches)


def log_windows(recorder, first_block, count=20):
    """Window row ranges for the count bracket: about `count` consecutive log-spaced
    unions of blocks over the whole run, plus the averaging window ``[start, steps)``.

    Returns a list of ``(a, b)`` row ranges (``a < b``), the averaging window last.
    """
    edges = recorder.edges()
    total = int(edges[-1])
    targets = np.unique(np.geomspace(1, max(total, 2), count + 1).astype(np.int64))
    idx = np.unique(np.searchsorted(edges, targets, side="left").clip(0, edges.size - 1))
    cuts = np.unique(np.r_[0, edges[idx], total])
    windows = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    start = int(edges[first_block])
    if start < total:
        windows.append((start, total))
    return windows


@dataclass(frozen=True)
class WindowMoments:
    """Measured window means (the bracket's ``m_k``), their standard errors and rows.

    ``transform`` (``(K', K)``) maps the window means to the measured quantities:
    ``moments = transform @ window means``; the filters are transformed alike (the
    identity here; measured on gapped test matrices, adding the differences of
    neighbouring windows with their own per-chain errors did not narrow the bracket).
    """

    windows: list
    moments: np.ndarray
    stderr: np.ndarray
    method: str
    transform: np.ndarray


# two-sided 3-sigma (99.73%) quantiles of Student's t for few degrees of freedom: a
# standard error from few chains or batches is itself noisy, so it is inflated by t/3
_T_9973 = {1: 235.8, 2: 19.21, 3: 9.219, 4: 6.620, 5: 5.507, 6: 4.904, 7: 4.530, 8: 4.277,
           9: 4.094, 10: 3.957, 12: 3.764, 15: 3.589, 20: 3.421, 30: 3.271, 60: 3.130}


def t_inflation(dof):
    """``t_{dof}(0.99865) / 3``: the factor that turns a ``dof``-degree standard error into
    one usable at 3 normal standard errors (1 for large ``dof``)."""
    if dof >= 60:
        return 1.0
    if dof < 1:
        return math.inf
    keys = sorted(_T_9973)
    key = max(k for k in keys if k <= dof)
    return _T_9973[key] / 3.0


def window_moments(recorder, windows, final_stats):
    """Window means averaged over chains, with standard errors for the count bracket.

    With ``c >= 4`` chains each window's error is the spread of its per-chain means
    (chains are independent), inflated for the ``c - 1`` degrees of freedom; with fewer
    chains only the windows inside the averaging window are usable: its batch-means error
    is scaled to each by ``sqrt(length ratio)``, and transient windows get an error so
    large that the bracket ignores them. Windows inside the averaging window (stationary)
    never get less than that scaled error, whatever their own chain spread.
    """
    edges = recorder.edges()
    sums, lengths = recorder.pieces()
    c = sums.shape[1]
    csum = np.vstack([np.zeros((1, c)), np.cumsum(sums, axis=0)])
    final_err = final_stats.stderr
    final_len = final_stats.length
    dof_final = max(1, final_stats.batches * c - 1) if final_stats.batches else max(1, c - 1)
    final_err = final_err * t_inflation(dof_final) if math.isfinite(final_err) else math.inf
    K = len(windows)
    per_chain = np.empty((K, c))
    errs = []
    for j, (a, b) in enumerate(windows):
        ia, ib = int(np.searchsorted(edges, a)), int(np.searchsorted(edges, b))
        per_chain[j] = (csum[ib] - csum[ia]) / float(b - a)
        errs.append(final_err * math.sqrt(final_len / float(b - a)))
    transform = np.eye(K)
    moments = list(per_chain.mean(axis=1))
    if c >= 4:
        own = per_chain.std(axis=1, ddof=1) / math.sqrt(c) * t_inflation(c - 1)
        # windows inside the averaging window are stationary: their error is at least the
        # averaging window's, scaled by length (the bracket picks the windows with the
        # smallest errors, so a chance low spread of c - 1 degrees of freedom must not
        # decide it)
        stationary = np.array([a >= final_stats.start for a, _ in windows])
        errs = list(np.where(stationary, np.maximum(own, errs), own))
    else:
        # with fewer than 4 chains nothing measures the error of a transient window (batch
        # means of a single transient are not independent; a low chance error once gave a
        # bracket that missed the truth): only the stationary windows are used, the others
        # get an error so large that no bound leans on them
        useless = 1e3 * max(1.0, float(np.max(np.abs(moments))))
        errs = [e if a >= final_stats.start else useless for (a, _), e in zip(windows, errs)]
    how = ("per-chain window means (Student-t inflated)" if c >= 4 else "stationary windows "
           "only: averaging-window batch-means error scaled by sqrt(length ratio), Student-t "
           "inflated")
    return WindowMoments(windows=list(windows), moments=np.asarray(moments),
                         stderr=np.asarray(errs), method=how, transform=transform)


def chain_means(recorder, a, b):
    """Per-chain means over rows ``[a, b)`` snapped to block edges, and the snapped rows."""
    edges = recorder.edges()
    sums, _ = recorder.pieces()
    ia = int(np.searchsorted(edges, a, side="left").clip(0, edges.size - 2))
    ib = int(np.searchsorted(edges, b, side="left").clip(ia + 1, edges.size - 1))
    rows = float(edges[ib] - edges[ia])
    return sums[ia:ib].sum(axis=0) / rows, (int(edges[ia]), int(edges[ib]))
