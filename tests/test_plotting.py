"""Diagnostic plots of RankEstimate (matplotlib, Agg figures only)."""

import numpy as np
import pytest

import lmatrank
from lmatrank import RankEstimate
from lmatrank._plotting import em_mean_rank_curve, rank_vs_threshold

mpl_figure = pytest.importorskip("matplotlib.figure")


def _explicit_em_mean(eigenvalues, eta, n_steps, corrected):
    """Brute force: per-mode variance recursion v' = a^2 v + eta (sigma^2 = 1)."""
    out = np.zeros(n_steps)
    for lam in eigenvalues:
        var = 0.0
        for k in range(n_steps):
            weight = 2 * lam - (eta * lam ** 2 if corrected else 0.0)
            out[k] += weight * var
            var = (1 - eta * lam) ** 2 * var + eta
    return out


@pytest.mark.parametrize("corrected", [True, False])
def test_em_mean_rank_curve_matches_recursion(corrected):
    lam = np.array([2.0, 1.0, 0.3, 0.01, 0.0, 0.0])
    eta = 0.9
    curve = em_mean_rank_curve(lam, eta, 40, corrected=corrected)
    assert np.allclose(curve, _explicit_em_mean(lam, eta, 40, corrected), rtol=1e-12, atol=1e-12)
    if corrected:
        assert curve[-1] < 4.0 + 1e-12  # the filter never overcounts the rank (4)


def test_rank_vs_threshold_counts_magnitudes():
    lam = np.array([5.0, -3.0, 1.0, 1e-4, 0.0])
    tau, ranks = rank_vs_threshold(lam, thresholds=[0.0, 1e-3, 2.0, 4.0, 6.0])
    assert ranks.tolist() == [4, 3, 2, 1, 0]
    tau, ranks = rank_vs_threshold(lam)
    assert ranks[0] == 4 and ranks[-1] == 0 and np.all(np.diff(ranks) <= 0)


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")  # the plot only
def test_langevin_plot_has_loss_curve_with_theory_overlay():
    lam = np.concatenate([np.geomspace(0.05, 2.0, 15), np.zeros(10)])
    A = np.diag(lam)
    est = lmatrank.estimate_rank(A, method="langevin", rng=0, max_matvecs=1200, corrected=True,
                                 backend="numpy")
    fig = est.plot(fig=mpl_figure.Figure(), true_rank=15, eigenvalues=lam)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Langevin loss curve (in rank units)", "rank vs threshold"]
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "theory (exact EM mean)" in labels and "true rank 15" in labels
    theory = next(line for line in fig.axes[0].get_lines() if line.get_label().startswith("theory"))
    expected = em_mean_rank_curve(lam, est.info["eta"], est.info["n_steps"])
    assert np.allclose(theory.get_ydata(), expected)
    # the data curve is the estimator's own rank curve
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), est.info["rank_curve"])


def test_langevin_plot_without_spectrum_has_only_loss_curve():
    est = lmatrank.estimate_rank(np.diag([2.0, 1.0, 0.0]), method="langevin", rng=0,
                                 max_matvecs=400,
                                 backend="numpy")
    fig = est.plot(fig=mpl_figure.Figure())
    assert [ax.get_title() for ax in fig.axes] == ["Langevin loss curve (in rank units)"]


def test_exact_plot_rank_vs_threshold_and_savefig(tmp_path):
    est = lmatrank.estimate_rank(np.diag([3.0, 1.0, 0.1, 0.0]), method="exact")
    fig = est.plot(fig=mpl_figure.Figure())
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    fig.savefig(tmp_path / "exact.png")
    assert (tmp_path / "exact.png").stat().st_size > 1000


def test_dos_panel_from_info():
    x = np.linspace(0, 1, 50)
    est = RankEstimate(rank=3, estimate=3.1, stderr=0.2, threshold=0.1, matvecs=100,
                       method="kpm", info=dict(dos=(x, np.exp(-x))))
    fig = est.plot(fig=mpl_figure.Figure())
    assert [ax.get_title() for ax in fig.axes] == ["spectral density (KPM)"]
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), np.exp(-x))


def test_nothing_to_plot_raises():
    est = RankEstimate(rank=1, estimate=1.0, stderr=0.0, threshold=0.0, matvecs=1, method="x")
    with pytest.raises(ValueError, match="nothing to plot for method 'x'"):
        est.plot(fig=mpl_figure.Figure())


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")  # the plot only
def test_kpm_plot_uses_threshold_rule_and_density():
    lam = np.concatenate([np.linspace(0.5, 2.0, 20), np.zeros(40)])
    est = lmatrank.estimate_rank(np.diag(lam), method="kpm", rng=0)
    fig = est.plot(fig=mpl_figure.Figure())
    assert [ax.get_title() for ax in fig.axes] == ["rank vs threshold", "spectral density (KPM)"]
    grid = np.asarray(est.info["gap"]["grid"])
    assert np.allclose(fig.axes[0].get_lines()[0].get_xdata(), grid)
    assert np.allclose(fig.axes[1].get_lines()[0].get_ydata(), est.info["dos"]["density"])


def test_auto_plot_draws_the_chosen_method():
    est = RankEstimate(rank=2, estimate=2.0, stderr=0.0, threshold=0.5, matvecs=12, method="auto",
                       info=dict(choice="sketch", detail=dict(eigenvalues=np.array([3.0, 1.0]))))
    fig = est.plot(fig=mpl_figure.Figure())
    assert [ax.get_title() for ax in fig.axes] == ["rank vs threshold"]
