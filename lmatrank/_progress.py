"""Progress display for long estimator runs.

Estimators report through one small callback interface::

    progress(matvecs, budget, estimate, stderr)

``matvecs`` are the products spent so far, ``budget`` the planned total
(``None`` when unknown), ``estimate``/``stderr`` the running rank estimate and
its standard error (``nan`` while there is none yet, e.g. during the burn-in).

:func:`make_progress` turns the user's ``progress=`` option into such a
callback: ``False``/``None`` gives ``None`` (nothing to call), ``True`` a
:class:`ProgressBar` (a `tqdm <https://tqdm.github.io>`_ bar on standard
error, shown only when standard error is a terminal and tqdm is installed),
and a callable is used as it is. :class:`RunningChainMean` gives an estimator
the running estimate and stderr of its averaging window at O(chains) cost per
step.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time

import numpy as np

__all__ = ["ProgressBar", "RunningChainMean", "make_progress"]


def _stream_is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _terminal_shape(stream):
    """``{}`` when the terminal reports its size (tqdm follows it), else a fallback size.

    A pseudo-terminal that was never sized reports 0 x 0, and tqdm then draws
    nothing; ``COLUMNS``/``LINES`` or 80 x 24 are used instead.
    """
    try:
        size = os.get_terminal_size(stream.fileno())
        if size.columns > 0 and size.lines > 0:
            return dict(dynamic_ncols=True)
    except (AttributeError, OSError, ValueError):
        pass
    size = shutil.get_terminal_size((80, 24))
    return dict(ncols=size.columns or 80, nrows=size.lines or 24)


class ProgressBar:
    """A tqdm bar of products spent against the budget, with the running estimate.

    Parameters
    ----------
    budget : int or None
        Planned number of products (the bar's total); ``None`` shows a counter.
    desc : str
        Label in front of the bar.
    file : file-like, optional
        Where to draw (default ``sys.stderr``).
    force : bool, optional
        Draw even when `file` is not a terminal (for tests and logs).
    min_interval : float, optional
        Seconds between two redraws (calls in between are cheap no-ops).

    Notes
    -----
    The bar is disabled (every call is a no-op) when `file` is not a terminal
    or when tqdm is not installed, so estimators can call it unconditionally.
    Use it as a context manager, or call :meth:`close` at the end.

    Examples
    --------
    >>> import io
    >>> with ProgressBar(1000, file=io.StringIO()) as bar:  # not a terminal: silent
    ...     bar(100, 1000, 12.3, 0.4)
    >>> bar.enabled
    False
    """

    def __init__(self, budget=None, *, desc="lmatrank", file=None, force=False, min_interval=0.1):
        self.file = sys.stderr if file is None else file
        self.budget = budget
        self.min_interval = float(min_interval)
        self._bar = None
        self._shown = 0
        self._last = -math.inf
        if force or _stream_is_terminal(self.file):
            try:
                from tqdm.auto import tqdm
            except ImportError:  # optional dependency: degrade to no display
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=budget, desc=desc, unit="mv", file=self.file,
                                 leave=False, mininterval=self.min_interval,
                                 **_terminal_shape(self.file))

    @property
    def enabled(self):
        """True when the bar is drawn."""
        return self._bar is not None

    def __call__(self, matvecs, budget=None, estimate=math.nan, stderr=math.nan):
        if self._bar is None:
            return
        now = time.monotonic()
        final = budget is not None and matvecs >= budget
        if now - self._last < self.min_interval and not final:
            return
        self._last = now
        if budget is not None and budget != self._bar.total:
            self._bar.total = budget
        if estimate is not None and math.isfinite(estimate):
            if stderr is not None and math.isfinite(stderr):
                self._bar.set_postfix_str(f"rank {estimate:.2f} +- {stderr:.2f}", refresh=False)
            else:
                self._bar.set_postfix_str(f"rank {estimate:.2f}", refresh=False)
        else:
            self._bar.set_postfix_str("burn-in", refresh=False)
        step = int(matvecs) - self._shown
        if step > 0:
            self._bar.update(step)
            self._shown = int(matvecs)
        else:
            self._bar.refresh()

    def close(self):
        """Remove the bar from the terminal."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def make_progress(progress, *, budget=None, desc="lmatrank"):
    """Turn a ``progress=`` option into a callback (or ``None``).

    Parameters
    ----------
    progress : bool, None or callable
        ``False``/``None``: no display. ``True``: a :class:`ProgressBar` on
        standard error (silent unless it is a terminal). A callable is
        returned unchanged and is called as
        ``progress(matvecs, budget, estimate, stderr)``.
    budget : int, optional
        Planned number of products.
    desc : str, optional
        Label of the bar.

    Returns
    -------
    callable or None
        Call it as ``cb(matvecs, budget, estimate, stderr)``; if it has a
        ``close`` method, call that at the end of the run.

    Raises
    ------
    TypeError
        When `progress` is neither a bool, None nor callable.

    Examples
    --------
    >>> make_progress(False) is None
    True
    >>> seen = []
    >>> cb = make_progress(lambda *args: seen.append(args))
    >>> cb(10, 100, 3.0, 0.5); seen
    [(10, 100, 3.0, 0.5)]
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        return ProgressBar(budget, desc=desc)
    if callable(progress):
        return progress
    raise TypeError(
        f"progress must be True, False, None or a callable progress(matvecs, budget, estimate, "
        f"stderr), got {type(progress).__name__}")


class RunningChainMean:
    """Running mean and standard error of a window of per-chain observables.

    Rows (one value per chain) pushed before `burn_in` rows have been seen are
    ignored; afterwards the estimate is the mean of all window rows and the
    stderr comes from the spread of the per-chain means (independent chains),
    or is ``nan`` with fewer than two chains. Each push costs O(chains).

    Parameters
    ----------
    burn_in : int
        Number of leading rows left out of the window.

    Examples
    --------
    >>> import numpy as np
    >>> tracker = RunningChainMean(burn_in=1)
    >>> tracker.push(np.array([100.0, 100.0]))      # burn-in row, ignored
    (nan, nan)
    >>> tracker.push(np.array([1.0, 3.0]))
    (2.0, 1.0)
    """

    def __init__(self, burn_in=0):
        self.burn_in = int(burn_in)
        self._seen = 0
        self._count = 0
        self._sums = None

    def push(self, row):
        """Add one row of observables; return the running ``(estimate, stderr)``."""
        self._seen += 1
        if self._seen <= self.burn_in:
            return math.nan, math.nan
        row = np.asarray(row, dtype=np.float64).ravel()
        if self._sums is None:
            self._sums = np.zeros_like(row)
        self._sums += row
        self._count += 1
        chain_means = self._sums / self._count
        estimate = float(chain_means.mean())
        if chain_means.size < 2:
            return estimate, math.nan
        return estimate, float(chain_means.std(ddof=1) / math.sqrt(chain_means.size))
