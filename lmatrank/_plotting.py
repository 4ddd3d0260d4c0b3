"""Diagnostic plots of a :class:`~lmatrank.RankEstimate` (matplotlib, imported lazily).

Panels, each drawn when the result carries the data for it:

- **loss curve** (Langevin runs, ``info["rank_curve"]``): the chain mean of the
  rank observable ``4 f~(theta_k) / sigma^2`` per step, the averaging window,
  the estimate +- 2 stderr and, when the spectrum is known (``eigenvalues=``),
  the exact Euler–Maruyama mean from ``theta_0 = 0``::

      corrected:    sum_i 1 - (1 - eta lambda_i)^(2k)
      uncorrected:  sum_i 2 (1 - (1 - eta lambda_i)^(2k)) / (2 - eta lambda_i)

  and a line at the true rank (``true_rank=``);
- **rank vs threshold**: the number of eigenvalues with ``|lambda| > tau`` as a
  function of ``tau``, from ``info["rank_vs_threshold"] = (thresholds, ranks)``,
  from the spectral methods' threshold rule ``info["gap"]`` (``grid``,
  ``counts``), or from eigenvalues (``eigenvalues=``, or ``info["eigenvalues"]``
  of ``method="exact"``/``"sketch"``); the threshold of the estimate is marked;
- **spectral density** (KPM/Chebyshev methods): ``info["dos"]``, a dict with
  ``eigenvalues`` and ``density`` or a pair ``(x, density)``.

For ``method="auto"`` the diagnostics of the chosen method (``info["detail"]``)
are plotted.

Install matplotlib with ``pip install "lmatrank[plot]"``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["plot_estimate", "em_mean_rank_curve", "rank_vs_threshold"]


def em_mean_rank_curve(eigenvalues, eta, n_steps, *, corrected=True):
    """Exact mean of the Euler–Maruyama rank observable after ``k = 0..n_steps-1`` steps.

    A curve of :func:`lmatrank.theory.em_expected_rank`. From ``theta_0 = 0`` with any iid unit-variance noise, for eigenvalues
    ``lambda_i`` of the (preconditioned) operator the dynamics runs on.

    Parameters
    ----------
    eigenvalues : array_like
        Eigenvalues of ``G S`` (of ``S**2`` for a squared run); all must satisfy
        ``0 <= eta lambda < 2``.
    eta : float
        Step size.
    n_steps : int
        Length of the curve.
    corrected : bool, optional
        The bias-corrected observable (default) or the paper's uncorrected one.

    Returns
    -------
    ndarray, shape (n_steps,)

    Examples
    --------
    >>> curve = em_mean_rank_curve([1.0, 0.5, 0.0], eta=1.0, n_steps=3)
    >>> curve.tolist()
    [0.0, 1.75, 1.9375]
    """
    from .theory import em_expected_rank

    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    return np.asarray(em_expected_rank(lam[lam > 0], eta, np.arange(n_steps), corrected=corrected),
                      dtype=np.float64)


def rank_vs_threshold(eigenvalues, thresholds=None):
    """Number of eigenvalues with ``|lambda| > tau`` for each threshold ``tau``.

    Parameters
    ----------
    eigenvalues : array_like
    thresholds : array_like, optional
        Default: 200 log-spaced values spanning the nonzero magnitudes.

    Returns
    -------
    thresholds, ranks : ndarray

    Examples
    --------
    >>> tau, r = rank_vs_threshold([3.0, -2.0, 1e-3, 0.0], thresholds=[1e-6, 0.5, 2.5])
    >>> r.tolist()
    [3, 2, 1]
    """
    mags = np.sort(np.abs(np.asarray(eigenvalues, dtype=np.float64).ravel()))
    if thresholds is None:
        positive = mags[mags > 0]
        if positive.size == 0:
            thresholds = np.array([1.0])
        else:
            lo, hi = positive[0], positive[-1]
            thresholds = np.geomspace(lo / 10.0, hi * 2.0, 200)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    ranks = mags.size - np.searchsorted(mags, thresholds, side="right")
    return thresholds, ranks


def _loss_panel(ax, est, eigenvalues, true_rank):
    info = est.info
    curve = np.asarray(info["rank_curve"], dtype=np.float64)
    # long runs record block means: rank_curve_steps holds the step of each point
    steps = np.asarray(info.get("rank_curve_steps", np.arange(curve.size)), dtype=np.float64)
    ax.plot(steps, curve, lw=0.8, color="C0", label="chain mean of 4 f~ / sigma^2")
    burn = info.get("burn_in")
    if burn is not None:
        ax.axvspan(burn, steps[-1] + 1, color="C0", alpha=0.07, label="averaging window")
    ax.axhline(est.estimate, color="C0", ls="--", lw=1,
               label=f"estimate {est.estimate:.2f} +- {est.stderr:.2f}")
    if math.isfinite(est.stderr) and est.stderr > 0:
        ax.axhspan(est.estimate - 2 * est.stderr, est.estimate + 2 * est.stderr,
                   color="C0", alpha=0.15)
    eta = info.get("eta")
    if eigenvalues is not None and eta is not None:
        lam = np.asarray(eigenvalues, dtype=np.float64)
        if info.get("squared"):
            lam = lam ** 2
        if np.all(eta * lam < 2.0) and info.get("scheme") == "euler-maruyama":
            first = int(steps[0])  # the theory's first value belongs to the first record
            theory = em_mean_rank_curve(lam, eta, int(steps[-1]) - first + 1,
                                        corrected=info.get("corrected", True))
            ax.plot(steps, theory[steps.astype(int) - first], color="C3", lw=1.2,
                    label="theory (exact EM mean)")
    if true_rank is not None:
        ax.axhline(true_rank, color="k", lw=0.8, ls=":", label=f"true rank {true_rank}")
    ax.set_xlabel("step k")
    ax.set_ylabel("rank observable")
    ax.set_title("Langevin loss curve (in rank units)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")


def _threshold_panel(ax, est, tau, ranks, true_rank):
    ax.step(tau, ranks, where="post", color="C2", label="#{|lambda| > tau}")
    ax.set_xscale("log")
    if est.threshold and math.isfinite(est.threshold) and est.threshold > 0:
        ax.axvline(est.threshold, color="C1", ls="--", lw=1,
                   label=f"threshold {est.threshold:.3g}")
    ax.axhline(est.estimate, color="C0", ls="--", lw=1, label=f"estimate {est.estimate:.2f}")
    if true_rank is not None:
        ax.axhline(true_rank, color="k", lw=0.8, ls=":", label=f"true rank {true_rank}")
    ax.set_xlabel("threshold tau")
    ax.set_ylabel("rank")
    ax.set_title("rank vs threshold", fontsize=9)
    ax.legend(fontsize=7)


def _dos_panel(ax, est, dos):
    if isinstance(dos, dict):
        x = dos.get("eigenvalues", dos.get("x"))
        density = dos["density"]
    else:
        x, density = dos[:2]
    x, density = np.asarray(x, dtype=np.float64), np.asarray(density, dtype=np.float64)
    ax.plot(x, density, color="C4")
    if est.threshold and math.isfinite(est.threshold):
        ax.axvline(est.threshold, color="C1", ls="--", lw=1, label=f"threshold {est.threshold:.3g}")
        ax.legend(fontsize=7)
    ax.set_xlabel("lambda")
    ax.set_ylabel("density")
    ax.set_title("spectral density (KPM)", fontsize=9)


def plot_estimate(est, *, fig=None, true_rank=None, eigenvalues=None):
    """Draw the diagnostic panels of a rank estimate.

    Parameters
    ----------
    est : RankEstimate
    fig : matplotlib.figure.Figure, optional
        Figure to draw into (default: a new ``matplotlib.pyplot`` figure).
    true_rank : int, optional
        Drawn as a reference line.
    eigenvalues : array_like, optional
        Spectrum of the matrix (of ``G S`` when preconditioned), for the exact
        theory overlay of the loss curve and the rank-vs-threshold curve.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        When matplotlib is not installed.
    ValueError
        When the result carries nothing to plot and no `eigenvalues` are given.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> from matplotlib.figure import Figure
    >>> est = lmatrank.estimate_rank(np.diag([2.0, 1.0, 0.0]), method="exact")
    >>> fig = plot_estimate(est, fig=Figure())
    >>> [ax.get_title() for ax in fig.axes]
    ['rank vs threshold']
    """
    info = dict(est.info or {})
    if isinstance(info.get("detail"), dict):  # method="auto": the chosen method's diagnostics
        info = {**info["detail"], **info}
    panels = []
    if info.get("rank_curve") is not None:
        panels.append("loss")
    spectrum = eigenvalues if eigenvalues is not None else info.get("eigenvalues")
    curve = info.get("rank_vs_threshold")
    gap = info.get("gap")
    if curve is None and isinstance(gap, dict) and "grid" in gap and "counts" in gap:
        curve = (gap["grid"], gap["counts"])  # the spectral methods' threshold rule
    if curve is not None:
        tau, ranks = (np.asarray(v, dtype=np.float64) for v in curve[:2])
        panels.append("threshold")
    elif spectrum is not None:
        tau, ranks = rank_vs_threshold(spectrum)
        panels.append("threshold")
    if info.get("dos") is not None:
        panels.append("dos")
    if not panels:
        raise ValueError(
            f"nothing to plot for method {est.method!r}: its info has no 'rank_curve', "
            "'eigenvalues', 'rank_vs_threshold' or 'dos'; pass eigenvalues=... for a "
            "rank-vs-threshold curve")
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(7.5, 3.4 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        if panel == "loss":
            _loss_panel(ax, est, eigenvalues, true_rank)
        elif panel == "threshold":
            _threshold_panel(ax, est, tau, ranks, true_rank)
        else:
            _dos_panel(ax, est, info["dos"])
    fig.tight_layout()
    return fig
