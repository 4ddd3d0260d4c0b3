"""The result object every rank estimator returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["INTERVAL_Z", "RankEstimate", "count_threshold", "rounded_rank", "sampling_interval"]

#: Standard errors on each side of a sampling-only interval (two-sided ~99.7%).
INTERVAL_Z = 3.0


def count_threshold(lam_max, n, dtype, *, rtol=None, atol=None, noise_floor=None):
    """The eigenvalue magnitude a rank refers to, and where it came from.

    Every method counts ``|lambda| > threshold`` with

    - ``max(atol, rtol * lam_max)`` when `rtol` or `atol` is given (numpy/torch convention);
    - otherwise numpy's ``matrix_rank`` default ``n * eps(dtype) * lam_max``, raised to
      `noise_floor` (the measured rounding noise of the operator's products, see
      :func:`lmatrank.operators.check_symmetric`) when that is higher: eigenvalues below the
      noise of the products are not properties of the matrix.

    Parameters
    ----------
    lam_max : float
        ``|lambda|_max`` (an estimate; >= 0).
    n : int
        Order of the matrix.
    dtype : numpy dtype
        Working precision of the products (its ``eps`` enters the default).
    rtol, atol : float or None
    noise_floor : float or None

    Returns
    -------
    threshold : float
    source : str
        ``"atol"``, ``"rtol"``, ``"numpy default"`` or ``"product noise"``.

    Examples
    --------
    >>> count_threshold(2.0, 100, "float64", rtol=1e-6)
    (2e-06, 'rtol')
    >>> count_threshold(2.0, 100, "float64", rtol=1e-6, atol=1e-3)
    (0.001, 'atol')
    >>> t, src = count_threshold(1.0, 1000, "float32"); src, bool(t == 1000 * 2.0**-23)
    ('numpy default', True)
    >>> count_threshold(1.0, 10, "float64", noise_floor=1e-8)
    (1e-08, 'product noise')
    """
    lam_max = float(lam_max)
    if rtol is not None or atol is not None:
        by_rtol = (rtol or 0.0) * lam_max
        by_atol = atol or 0.0
        return (float(by_atol), "atol") if by_atol >= by_rtol else (float(by_rtol), "rtol")
    default = n * float(np.finfo(np.dtype(dtype)).eps) * lam_max
    if noise_floor is not None and noise_floor > default:
        return float(noise_floor), "product noise"
    return float(default), "numpy default"


def sampling_interval(estimate, stderr, n=None, z=INTERVAL_Z):
    """Integer bracket ``[floor(estimate - z stderr), ceil(estimate + z stderr)]``,
    clipped to ``[0, n]``: the interval of a result whose only uncertainty is sampling.

    >>> sampling_interval(10.2, 0.3), sampling_interval(5.0, 0.0), sampling_interval(9.6, 1.0, n=10)
    ((9, 12), (5, 5), (6, 10))
    """
    if not (math.isfinite(estimate) and math.isfinite(stderr)):
        return (0, n) if n is not None else (0, math.inf)
    lo = max(0, math.floor(estimate - z * stderr + 1e-9))
    hi = math.ceil(estimate + z * stderr - 1e-9)
    if n is not None:
        hi, lo = min(hi, n), min(lo, n)
    return int(lo), int(max(hi, lo))


def rounded_rank(estimate: float, n: int) -> int:
    """The integer rank reported for a stochastic `estimate` of an ``n x n`` matrix:
    rounded and clipped to ``[0, n]`` (the unclipped value stays in ``estimate``;
    a full-rank matrix's estimate lies above ``n`` about half of the time).

    >>> rounded_rank(1000057.7, 1000000), rounded_rank(-0.4, 5), rounded_rank(2.5, 5)
    (1000000, 0, 2)
    """
    return int(min(n, max(0, round(estimate))))


@dataclass(frozen=True)
class RankEstimate:
    """Outcome of :func:`lmatrank.estimate_rank`.

    Attributes
    ----------
    rank : int
        The rounded estimate (``int(est)`` gives the same).
    estimate : float
        The unrounded estimate.
    stderr : float
        One standard error of `estimate` (statistical part only; 0.0 for
        deterministic methods).
    threshold : float
        The eigenvalue magnitude the count refers to: the answer estimates
        ``#{|lambda| > threshold}``. It is ``max(atol, rtol |lambda|_max)``, or
        numpy's default ``n eps |lambda|_max`` (raised to the rounding noise of the
        products where that is higher) when neither is given -- the same rule for
        every method (:func:`count_threshold`).
    matvecs : int
        Single-vector products with ``A`` spent (a block of ``c`` vectors counts ``c``).
    method : str
        Name of the method that produced the estimate.
    converged : bool
        True only when the method resolved `threshold` and met its accuracy target;
        False when it could not (budget, filter width, method): `interval` then says
        what is known, and a warning said what would resolve it.
    info : dict
        Method-specific diagnostics (loss curve, step size, lambda_max, ...).
        ``info["threshold_source"]`` says where `threshold` came from.
    resolution : float
        The smallest ``|lambda|`` the run actually separated (``<= threshold`` when
        resolved). Default: `threshold`.
    interval : (int, int)
        A bracket ``(lo, hi)`` that holds the true count above `threshold` with high
        probability: it covers the sampling error *and* the eigenvalues the method
        could not place on either side of `threshold`. Default: ``estimate +- 3
        stderr`` rounded outward (sampling only).

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> est = lmatrank.estimate_rank(np.diag([3.0, 2.0, 0.0]), method="exact")
    >>> int(est), est.rank, est.stderr
    (2, 2, 0.0)
    """

    rank: int
    estimate: float
    stderr: float
    threshold: float
    matvecs: int
    method: str
    converged: bool = True
    info: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    resolution: float | None = None
    interval: tuple[int, int] | None = None

    def __post_init__(self):
        if self.resolution is None:
            object.__setattr__(self, "resolution", float(self.threshold))
        if self.interval is None:
            object.__setattr__(self, "interval", sampling_interval(self.estimate, self.stderr))
        else:
            lo, hi = self.interval
            object.__setattr__(self, "interval", (int(lo), int(hi)))

    def __int__(self) -> int:
        return int(self.rank)

    def __index__(self) -> int:
        return int(self.rank)

    def __str__(self) -> str:
        flag = "" if self.converged else " (NOT converged: threshold not resolved)"
        lo, hi = self.interval
        return (
            f"rank {self.rank} in [{lo}, {hi}] (estimate {self.estimate:.2f} +- "
            f"{self.stderr:.2f}, |lambda| > {self.threshold:.3g}, resolution "
            f"{self.resolution:.3g}, {self.matvecs} products, method {self.method!r}){flag}"
        )

    def plot(self, *, fig=None, true_rank=None, eigenvalues=None):
        """Diagnostic plots: loss curve (with theory overlay), rank vs threshold, KPM density.

        Needs matplotlib (``pip install "lmatrank[plot]"``); see
        :func:`lmatrank._plotting.plot_estimate` for the panels and parameters.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> import numpy as np, lmatrank
        >>> from matplotlib.figure import Figure
        >>> est = lmatrank.estimate_rank(np.diag([2.0, 1.0, 0.0]), method="exact")
        >>> len(est.plot(fig=Figure()).axes)
        1
        """
        from ._plotting import plot_estimate

        return plot_estimate(self, fig=fig, true_rank=true_rank, eigenvalues=eigenvalues)
