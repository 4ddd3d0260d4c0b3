"""The result object every rank estimator returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RankEstimate", "rounded_rank"]


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
        Absolute eigenvalue magnitude the count refers to. For Langevin runs it
        is the filter's effective resolution: the eigenvalue of ``G S`` whose
        mode is half counted at the start of the averaging window (indefinite
        input runs on ``S**2`` and reports the magnitude ``|lambda|`` of ``S``).
    matvecs : int
        Single-vector products with ``A`` spent (a block of ``c`` vectors counts ``c``).
    method : str
        Name of the method that produced the estimate.
    converged : bool
        False when the budget ran out before the stopping rule was met.
    info : dict
        Method-specific diagnostics (loss curve, step size, lambda_max, ...).

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

    def __int__(self) -> int:
        return int(self.rank)

    def __index__(self) -> int:
        return int(self.rank)

    def __str__(self) -> str:
        flag = "" if self.converged else " (NOT converged: budget exhausted)"
        return (
            f"rank {self.rank} (estimate {self.estimate:.2f} +- {self.stderr:.2f}, "
            f"threshold {self.threshold:.3g}, {self.matvecs} products, method {self.method!r}){flag}"
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
