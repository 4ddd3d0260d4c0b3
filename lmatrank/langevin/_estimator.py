"""The Langevin rank estimator (``method="langevin"``).

Bar, Mulayoff, Michaeli & Talmon, "The Expected Loss of Preconditioned Langevin
Dynamics Reveals the Hessian Rank", AAAI 2024, Corollary 2 and Algorithm 1:
``rank(S) = lim (4 / sigma^2) E f(theta_t)`` for LD with ``Sigma G = sigma^2 I``.

What this module adds to the paper (each documented in docs/theory.md):

- the exact Euler–Maruyama bias correction (stationary mean exactly ``rank``
  for every stable step, docs/theory.md), on by default;
- Rademacher noise by default (same expectation, lower variance, §4.2);
- the step size from a padded Lanczos ``lambda_max(G S)``: ``eta = 1.9 / lambda_max``;
- many chains as one block (one block product per step);
- standard errors from independent chains (or batch means), never from
  treating correlated steps as independent;
- indefinite input is run on ``S**2`` (``rank(S) = rank(S**2)``);
- divergence never returns a number: the step is backed off (automatic step)
  or :class:`lmatrank.DivergenceError` is raised (user step).

``paper=True`` reproduces Algorithm 1 exactly: uncorrected loss, Gaussian
noise, one chain, ``sigma^2 = 2e-5``, ``eta = 1e-4``, ``K_tot = 15000``,
``K_avg = 10000`` (each overridable).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .._checkpoint import operator_fingerprint
from .._checks import (check_choice, check_nonnegative_float, check_positive_float,
                       check_positive_int)
from .._errors import BudgetError, ConvergenceWarning, DivergenceError
from .._progress import make_progress
from .._result import RankEstimate, count_threshold, rounded_rank
from ..backends import get_backend
from ..operators import SquaredOperator, as_preconditioner
from ..spectral import lanczos_extremes
from ..spectral._bracket import count_bracket
from ._dynamics import DivergedRun, run_euler_maruyama
from ._journal import open_journal
from ._kinetic import (BAOAB_STEP_FACTOR, DEFAULT_BAOAB_CHAINS, DEFAULT_TARGET_RSE, P0_VARIANCE, PLATEAU_SPAN,
                       RESOLUTION_HORIZON, STDERR_FLOOR, half_count_schedule, run_baoab_estimate,
                       segment_frictions, threshold_curve_from_record)
from ._modes import baoab_window_filters, em_window_filters
from ._record import TraceRecorder, log_windows, window_moments, window_stats

__all__ = ["langevin_rank", "DEFAULT_MAX_MATVECS", "PAPER_SETTINGS"]

#: Scheme of ``langevin_rank(scheme=None)`` when no EM-only option is given.
DEFAULT_SCHEME = "baoab"
#: Product budget of a default run.
DEFAULT_MAX_MATVECS = 20_000
#: Step size as a fraction of the stability limit 2 / lambda_max: eta = 1.9 / lambda_max.
STEP_FACTOR = 1.9
#: Lanczos' lambda_max is padded by its residual bound and then by this factor.
LAMBDA_MAX_INFLATION = 1.01
#: Settings of the paper's Algorithm 1 / Table 1.
PAPER_SETTINGS = dict(sigma2=2e-5, eta=1e-4, n_steps=15_000, n_avg=10_000, n_chains=1,
                      noise="gaussian", corrected=False)
_MAX_BACKOFFS = 3
#: Seconds between the saves of a run with ``checkpoint=`` (``checkpoint_every``).
CHECKPOINT_EVERY = 5.0
# relative size of a negative Ritz value that makes the input "indefinite"
_INDEFINITE_RTOL = float(np.sqrt(np.finfo(np.float64).eps))


def _looks_indefinite(bounds, scale, dtype):
    """A negative Ritz value beyond rounding makes the input indefinite.

    Ritz values lie inside the spectrum, so ``ritz_min < 0`` proves a negative
    eigenvalue up to the rounding of the products: ``1e3 eps(dtype)`` relative
    (float32 products put PSD matrices' zero eigenvalues near -1e-7 |lambda|_max).
    """
    tol = max(_INDEFINITE_RTOL, 1e3 * float(np.finfo(dtype).eps))
    return bounds["ritz_min"] < -tol * scale


def _batch_means_stderr(window):
    """Standard error of the grand mean of an ``(n_avg, c)`` block of observables.

    With ``c >= 8`` chains the chain means are independent (same start, independent
    noise) and their spread gives the stderr exactly. With fewer chains each chain's
    window is cut into contiguous batches (``ceil(16 / c)`` per chain, at least 2)
    whose means are treated as independent — the standard batch-means estimate,
    valid when a batch is much longer than the slowest counted mode's
    autocorrelation time.
    """
    n_avg, c = window.shape
    if c >= 8:
        means = window.mean(axis=0)
        return float(means.std(ddof=1) / math.sqrt(c)), "chain means"
    batches = max(2, math.ceil(16 / c))
    batches = min(batches, n_avg)
    usable = (n_avg // batches) * batches
    means = window[n_avg - usable:].reshape(batches, usable // batches, c).mean(axis=1).ravel()
    return float(means.std(ddof=1) / math.sqrt(means.size)), f"batch means ({batches} per chain)"


def _filter_resolution(eta, k):
    """Eigenvalue whose EM mode is half counted after `k` steps: 1 - (1 - eta lam)^(2k) = 1/2."""
    if k <= 0:
        return math.inf
    return -math.expm1(math.log(0.5) / (2 * k)) / eta


def _steps_to_resolve(eta, lam, residual=1e-3):
    """Steps after which an eigenvalue `lam` is counted to within `residual`."""
    x = eta * lam
    if x <= 0:
        return math.inf
    log_a = math.log1p(-x) if x < 1.0 else (math.log(x - 1.0) if x != 1.0 else -math.inf)
    if log_a == 0.0:  # eta * lam below rounding: never resolved
        return math.inf
    if log_a >= 0.0 or log_a == -math.inf:
        return 1
    return math.ceil(math.log(residual) / (2 * log_a))


def _spectrum_bounds(op, precond, gen, lanczos_steps, be=None):
    """Lanczos on the symmetric similarity ``L^T S L`` (same spectrum as ``G S``).

    With a device backend (``be.on_device``: the CuPy backend) and an identity or
    diagonal preconditioner the Lanczos vectors stay on the device and the
    products are the backend's; otherwise they are host arrays and ``op.matmat``
    (for a device input that copies each vector to the device and back: a
    general preconditioner's factors are host callables).
    """
    if be is not None and getattr(be, "on_device", False) and (
            precond.is_identity or precond.diagonal is not None):
        def apply(X):  # L = L^T = diag(sqrt(g)) on the device
            X = be.apply_precond_factor(precond, X.astype(op.dtype))
            return be.apply_precond_factor(precond, be.matmat(op, X))

        return lanczos_extremes(apply, op.n, rng=gen, n_steps=lanczos_steps, xp=be.xp)
    if precond.is_identity:
        apply = op.matmat
    else:
        apply = lambda X: precond.apply_factor_transpose(  # noqa: E731
            op.matmat(precond.apply_factor(X.astype(op.dtype))))
    return lanczos_extremes(apply, op.n, rng=gen, n_steps=lanczos_steps)


def _prepare(op, preconditioner, backend, gen, lanczos_steps, spectrum):
    """Preconditioner, backend, Lanczos bounds of ``G S`` and whether to run on ``S**2``.

    ``bounds`` is None when Lanczos finds the operator to be zero.
    """
    precond = as_preconditioner(preconditioner, op.n, op.dtype)
    be = get_backend(backend, op)
    bounds = _spectrum_bounds(op, precond, gen, lanczos_steps, be)
    scale = max(abs(bounds["ritz_max"]), abs(bounds["ritz_min"]))
    if scale == 0.0:
        return precond, be, None, False
    squared = spectrum == "indefinite" or (
        spectrum == "auto" and _looks_indefinite(bounds, scale, op.dtype))
    return precond, be, bounds, squared


def _run_operator(op, precond, gen, lanczos_steps, bounds, squared, be=None):
    """The operator a run simulates (``S`` or ``S**2``), its padded lambda_max and its
    Lanczos lower bound (``ritz_max``) on lambda_max, for the step-size rules."""
    if not squared:
        return op, max(bounds["lambda_max"], 0.0), bounds["ritz_max"]
    run_op = SquaredOperator(op)
    if precond.is_identity:  # the extremes of S give those of S**2 without new products
        return (run_op, max(bounds["lambda_max"], -bounds["lambda_min"]) ** 2,
                max(bounds["ritz_max"], -bounds["ritz_min"]) ** 2)
    sq_bounds = _spectrum_bounds(run_op, precond, gen, lanczos_steps, be)
    return run_op, sq_bounds["lambda_max"], sq_bounds["ritz_max"]


#: A converged bracket is at most max(_NARROW_ABS, _NARROW_REL * count) wide.
_NARROW_ABS = 4
_NARROW_REL = 0.02
#: Log-spaced windows of the recorded rank-vs-step curve used by the count bracket.
_BRACKET_WINDOWS = 20
#: BAOAB horizon (``N h sqrt(tau)``) planned for resolving a threshold ``tau`` with an
#: averaging window after it: the window ``[N/2, N]`` then counts ``tau`` fully and
#: ``tau / 4`` at ~0.92 (exact mode recursion at the automatic step and friction).
_BAOAB_RESOLVE_HORIZON = RESOLUTION_HORIZON / 2
#: Each chain of a run with an explicit threshold has at least this many times the
#: horizon that resolves it.
_CHAIN_SLACK = 1.0
#: Most chains of a run with an explicit threshold (the transients of the chains are what
#: separates eigenvalues near the threshold).
_MAX_CHAINS = 64


def _threshold_of(op, bounds, rtol, atol):
    """The count's threshold (|lambda| of ``G S``) by the shared rule, its source and the
    ``|lambda|_max`` it was computed from (the largest Lanczos Ritz magnitude)."""
    abs_lam_max = max(abs(bounds["ritz_max"]), abs(bounds["ritz_min"]))
    tau, source = count_threshold(abs_lam_max, op.n, op.dtype, rtol=rtol, atol=atol,
                                  noise_floor=getattr(op, "noise_floor", None))
    return tau, source, abs_lam_max


def _chains_for(budget_steps, need_steps, default, explicit_threshold, max_chains=None):
    """Chains of a run: resolution before variance.

    ``budget_steps`` is what one chain could run; ``need_steps`` the horizon that resolves
    the threshold. The numpy default threshold (which no budget resolves in general)
    keeps `default` chains: the run does what the budget allows. An explicit `rtol`/`atol`
    gets as many chains (a power of two, at most `max_chains`) as can each run the
    horizon: the count near the threshold is told apart only by the transients of the
    chains (every chain starts at 0), so more chains sharpen the bracket; at least one.
    """
    if not explicit_threshold:
        return default
    if not math.isfinite(need_steps) or need_steps <= 0:
        return 1
    top = default if max_chains is None else max_chains
    c = 1
    while 2 * c <= top and budget_steps >= 2 * c * need_steps * _CHAIN_SLACK:
        c *= 2
    return c


@dataclass(frozen=True)
class CountOutcome:
    """What a Langevin run says about ``#{|lambda| > threshold}`` (units of ``S``)."""

    threshold: float
    source: str
    resolution: float
    interval: tuple
    bracket: tuple
    resolved_count: tuple
    narrow: bool
    windows: list
    moments: np.ndarray
    moment_stderr: np.ndarray
    moment_stderr_method: str


def _half_count_point(filters, window, lam_max, lam_min_positive=1e-18):
    """Smallest eigenvalue the averaging window's filter counts at least half (log grid)."""
    lams = lam_max * np.logspace(math.log10(lam_min_positive), 0.0, 600)
    f = filters(lams, [window])[0]
    above = np.flatnonzero(f >= 0.5)
    if not above.size:
        return math.inf
    i = int(above[0])
    if i == 0:
        return float(lams[0])
    # the filter rises monotonically through 1/2: interpolate in log lambda
    f0, f1 = f[i - 1], f[i]
    w = (0.5 - f0) / (f1 - f0) if f1 > f0 else 1.0
    return float(math.exp((1 - w) * math.log(lams[i - 1]) + w * math.log(lams[i])))


def _count_outcome(record, first_block, stats, filters, *, tau, source, squared, n,
                   lam_max_run, lam_min_run):
    """Bracket the count above `tau` from the recorded windows (:mod:`lmatrank.spectral._bracket`).

    `filters(lam, windows)` gives the exact expected window means per eigenvalue of the
    run's operator; `tau` is in ``|lambda|`` of ``S`` (squared for a run on ``S**2``).
    """
    windows = log_windows(record, first_block, _BRACKET_WINDOWS)
    wm = window_moments(record, windows, stats)
    bracket_filters = lambda lam: wm.transform @ filters(  # noqa: E731
        np.asarray(lam, dtype=np.float64), wm.windows)
    tau_run = tau * tau if squared else tau
    kw = dict(n=n, lam_max=lam_max_run, lam_min=lam_min_run)
    b = count_bracket(bracket_filters, wm.moments, wm.stderr, tau=tau_run, **kw)
    lo, hi = b.interval()
    res_run = _half_count_point(filters, wm.windows[-1], lam_max_run)
    if math.isfinite(res_run) and abs(res_run - tau_run) > 1e-12 * tau_run:
        rb = count_bracket(bracket_filters, wm.moments, wm.stderr, tau=res_run, **kw)
        resolved = rb.interval()
    else:
        resolved = (lo, hi)
    resolution = math.sqrt(res_run) if squared else res_run
    narrow = b.solved and (hi - lo) <= max(_NARROW_ABS, _NARROW_REL * hi)
    if narrow:  # the bracket separates the threshold itself
        resolution = min(resolution, tau)
    return CountOutcome(threshold=float(tau), source=source, resolution=float(resolution),
                        interval=(int(lo), int(hi)), bracket=(float(b.lo), float(b.hi)),
                        resolved_count=(int(resolved[0]), int(resolved[1])), narrow=bool(narrow),
                        windows=wm.windows, moments=wm.moments, moment_stderr=wm.stderr,
                        moment_stderr_method=wm.method)


def _clip_rank(estimate, interval, n):
    r = rounded_rank(estimate, n) if math.isfinite(estimate) else interval[0]
    return int(min(max(r, interval[0]), interval[1]))


def _not_converged_message(outcome, *, accuracy_met, accuracy_note, abs_lam_max,
                           needed_products, scheme, budget_option="max_matvecs"):
    lo, hi = outcome.interval
    rlo, rhi = outcome.resolved_count
    if outcome.narrow and not accuracy_met:
        return (f"Langevin ({scheme}) resolved the threshold {outcome.threshold:.3g} but "
                f"stopped at the product budget before the accuracy target ({accuracy_note}); "
                f"the count lies in [{lo}, {hi}]; raise max_matvecs or target_rse")
    if outcome.resolution <= outcome.threshold:
        return (f"Langevin ({scheme}) reached the threshold {outcome.threshold:.3g} "
                f"({outcome.source}; resolution {outcome.resolution:.3g}) but could not "
                f"separate the eigenvalues near it: the count above it is only known to lie "
                f"in [{lo}, {hi}]; eigenvalues close to the threshold, or too few chains for "
                f"the transients (raise n_chains or {budget_option}), or a threshold in a "
                f"spectral gap, would narrow it")
    fixes = []
    if math.isfinite(needed_products):
        fixes.append(f"raise {budget_option} to ~{needed_products:.2g}")
    if abs_lam_max > 0 and math.isfinite(outcome.resolution):
        rtol_fix = 10.0 ** math.ceil(math.log10(max(outcome.resolution / abs_lam_max, 1e-300)))
        fixes.append(f"pass rtol={rtol_fix:.0e} (or larger)")
    fix = ("to resolve it " + " or ".join(fixes)) if fixes else \
        "no run length resolves a zero threshold"
    if math.isfinite(outcome.resolution):
        what = (f"resolved |lambda| > {outcome.resolution:.3g} (count there: [{rlo}, {rhi}]), "
                f"not the threshold {outcome.threshold:.3g}")
    else:
        what = (f"resolved no eigenvalue (no filter reaches 1/2: too few steps or too small a "
                f"step), not the threshold {outcome.threshold:.3g}")
    return (f"Langevin ({scheme}) {what} ({outcome.source}): the count above it is only known "
            f"to lie in [{lo}, {hi}]; {fix}")



def langevin_rank(op, *, rtol=None, atol=None, rng=None, paper=False, n_chains=None,
                  n_steps=None, n_avg=None, eta=None, sigma2=None, preconditioner=None,
                  noise=None, corrected=None, max_matvecs=None, backend=None,
                  spectrum="auto", lanczos_steps=None, progress=False, scheme=None, h=None,
                  friction=None, target_rse=None, plateau=False, checkpoint=None,
                  checkpoint_every=CHECKPOINT_EVERY):
    """Estimate ``rank(S)`` from the expected loss of preconditioned Langevin dynamics.

    Called through :func:`lmatrank.estimate_rank` with ``method="langevin"``;
    `op` is a :class:`~lmatrank.operators.CountingOperator`.

    Parameters
    ----------
    rtol, atol : float, optional
        The count refers to ``|lambda| > threshold`` with ``threshold =
        max(atol, rtol |lambda|_max)``, or numpy's default ``n eps |lambda|_max``
        (raised to the operator's measured product noise) when neither is given
        (:func:`lmatrank._result.count_threshold`); ``|lambda|_max`` is the largest
        Lanczos Ritz magnitude of ``S`` (of ``G S`` with a preconditioner: the count
        then refers to the eigenvalues of ``G S``, whose rank is that of ``S``). The run
        is planned to resolve it: BAOAB needs about ``RESOLUTION_HORIZON / 2 /
        (h sqrt(threshold))`` steps (Euler–Maruyama ``~ lambda_max / threshold``), and
        an explicit `rtol`/`atol` gets as many chains (a power of two, at most 64) as
        can each run that horizon within the budget, one chain when none can (the
        deepest horizon). The numpy default threshold, which no budget resolves in
        general, keeps the default chains and does what the budget allows.
    rng : seed or numpy.random.Generator
        Lanczos start vector and noise.
    paper : bool
        Reproduce Algorithm 1 (see module docstring).
    n_chains : int
        Chains simulated as one block (default 8; paper 1).
    n_steps : int
        Steps per chain, ``K_tot`` (default: what `max_matvecs` allows).
    n_avg : int
        Steps averaged at the end of each chain, ``K_avg`` (default: the last
        three quarters, or what `rtol`/`atol` leave after the burn-in).
    eta : float
        Step size (default ``1.9 / lambda_max(G S)`` from Lanczos, padded).
    sigma2 : float
        Noise power ``sigma^2`` (default 1; the estimate of a quadratic does not
        depend on it).
    preconditioner : None, 1-D positive array, SPD array or Preconditioner
        ``G``; the noise covariance is ``sigma^2 G^-1`` (Corollary 2).
    noise : {"rademacher", "gaussian"}
        Distribution of the iid unit-variance noise (default Rademacher; paper Gaussian).
    corrected : bool
        Use the exact discretisation-corrected observable (default True; paper False).
    max_matvecs : int
        Product budget including the symmetry probes and the Lanczos estimate
        (default 20,000 unless
        `n_steps` is given; none in paper mode).
    backend : {None, "numpy", "numba", "cupy"} or backend object
        Compute backend (None: fastest available). Pass an instance to set
        backend options, e.g. ``lmatrank.backends.NumbaBackend(reorder=True,
        fuse=False)``.
    spectrum : {"auto", "psd", "indefinite"}
        "auto" runs on ``S**2`` when Lanczos finds a significantly negative
        eigenvalue (or when the PSD run diverges with a safely stable step).
    lanczos_steps : int
        Lanczos steps for ``lambda_max`` (default ``min(n, max(30, 2 sqrt n), 80)``).
    scheme : {None, "baoab", "em"}
        Step scheme. None: ``"em"`` (Euler–Maruyama, the paper's) when `paper`,
        `eta` or `corrected` is given, otherwise ``DEFAULT_SCHEME`` (currently
        ``"baoab"``). ``"baoab"``: kinetic Langevin,
        :mod:`lmatrank.langevin._kinetic`: exact stationary mean at any stable
        step, ``O(sqrt(kappa))`` mixing, automatic tuning, burn-in detection
        and sequential stopping).
    h : float
        BAOAB step (default ``1.9 / sqrt(lambda_max)``); ``info["eta"]`` reports
        the equivalent overdamped step ``h**2 / 2``.
    friction : float
        BAOAB friction ``gamma`` (default ``2.5 sqrt(lambda_lo)``, ``lambda_lo``
        the threshold or the smallest eigenvalue the budget resolves).
    plateau : bool
        BAOAB without `rtol`/`atol`: stop early once the rank-vs-resolution
        curve is flat over a 16-fold range of resolutions (a spectral gap,
        checked at a quarter and half of the budget from the runs already
        made) and the error target is met; ``info["stop_reason"]`` is then
        ``"plateau"`` and ``threshold`` the finest resolution verified. Off by
        default: on held-out paper-protocol minima (15,000 products) it raised
        the d = 8 NRMSE from 1.17% to 1.45% (a flat stretch above a lone
        ~1e-5 lambda_max eigenvalue looks like a gap) while saving ~10% of the
        products on a gapped rank-100 matrix.
    target_rse : float
        BAOAB: stop once the standard error is at most
        ``max(target_rse * estimate, 0.5)`` and the window shows no drift
        (default ``target_rse = 0.001``; an explicit `target_rse` is used
        without the half-unit floor); the budget ending first gives
        ``converged=False`` and a ConvergenceWarning. Why not 0.5%: a 0.5% stop
        lets a rank-4096 run stop with a standard error of ~20 units, while the
        same 15,000 products give ~0.1%, so the default asks for 0.1%; the
        absolute floor of half a unit keeps small
        ranks (where 0.1% is a fraction of a unit the rounding cannot use)
        from running to the budget for nothing.
    progress : bool or callable
        True: a tqdm bar of products vs budget with the running estimate +-
        stderr, drawn only when standard error is a terminal. A callable is
        called after every step as ``progress(matvecs, budget, estimate,
        stderr)`` (see :mod:`lmatrank._progress`).
    checkpoint : str or os.PathLike, optional
        File (``.npz`` format, any name) in which the run saves its progress every
        `checkpoint_every` seconds and at the end. When the file exists the run
        continues from it: the part it logged is replayed without products, and the
        result is bit-identical to an uninterrupted run with the same `rng` (numpy and
        numba backends), also after the process was killed at any point. A file
        written for another matrix or other options, or a truncated or corrupt one,
        raises :class:`~lmatrank.CheckpointError`. The file is kept after the run; a
        rerun returns the same result at once. See docs/checkpoint.md.
    checkpoint_every : float
        Seconds between saves (default 5; a save never takes more than about a
        tenth of the run).

    Returns
    -------
    RankEstimate
        ``threshold`` as above (``info["threshold_source"]``). ``interval`` comes
        from :func:`lmatrank.spectral._bracket.count_bracket` applied to the run's
        recorded rank-vs-step curve: about 20 log-spaced windows of steps plus the
        averaging window, each window mean an unbiased estimate of ``sum_i
        phi(lambda_i)`` for a filter ``phi`` known exactly per eigenvalue
        (:func:`._modes.em_window_filters`, :func:`._modes.baoab_window_filters`;
        for the uncorrected observable its biased filter), with standard errors
        from the chains (Student-t inflated); it holds the true count with high
        probability, covering sampling noise and the eigenvalues the run could not
        place on either side of the threshold. ``resolution`` is the eigenvalue the
        averaging window counts half (``|lambda|`` of ``S`` also for runs on
        ``S**2``), or the threshold itself when the bracket closes there.
        ``converged`` is True when the bracket is at most ``max(4, 2% of the
        count)`` wide and the accuracy target was met; otherwise one
        :class:`~lmatrank.ConvergenceWarning` says what would resolve it.
        ``rank`` is the rounded estimate clipped into ``interval``; ``estimate`` and
        ``stderr`` are the averaging window's mean and its sampling error.
        ``info`` holds ``eta``, ``sigma2``, ``lambda_max``, ``lambda_min``,
        ``n_chains``, ``n_steps``, ``n_avg``, ``burn_in``, ``noise``,
        ``corrected``, ``squared``, ``rank_curve`` (chain mean of the rank
        observable per block of steps; one block per step up to 8,192 steps, then
        merged pairwise: memory does not grow with the budget) with
        ``rank_curve_steps`` (the step each block ends at), ``loss_curve`` (the same
        in loss units, ``sigma^2 / 4`` times it), ``drift`` / ``drift_stderr`` (mean
        of the last half of the window minus the first half), ``bracket`` (the real
        bounds), ``resolved_count`` (the bracket at ``resolution``),
        ``bracket_windows`` / ``bracket_moments`` / ``bracket_moment_stderr``,
        ``abs_lambda_max``, ``backoffs`` and ``backend``.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> A = np.diag(np.r_[np.linspace(1.0, 2.0, 10), np.zeros(40)])      # rank 10
    >>> est = lmatrank.estimate_rank(A, method="langevin", rtol=1e-3, rng=0)
    >>> est.rank, est.converged, est.interval[0] <= 10 <= est.interval[1]
    (10, True, True)
    >>> round(est.threshold, 12), est.info["threshold_source"]   # 1e-3 |lambda|_max
    (0.002, 'rtol')
    >>> import warnings
    >>> with warnings.catch_warnings():   # numpy's default threshold: not resolved
    ...     warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
    ...     paper = lmatrank.estimate_rank(1e3 * A, method="langevin", paper=True, rng=0,
    ...                                    n_steps=3000, n_avg=2000)      # Algorithm 1
    >>> paper.info["corrected"], paper.info["noise"], paper.info["eta"]
    (False, 'gaussian', 0.0001)
    """
    gen = np.random.default_rng(rng)
    journal = None
    if checkpoint is not None:
        settings = dict(rtol=rtol, atol=atol, paper=paper, n_chains=n_chains, n_steps=n_steps,
                        n_avg=n_avg, eta=eta, sigma2=sigma2, noise=noise, corrected=corrected,
                        max_matvecs=max_matvecs, spectrum=spectrum, lanczos_steps=lanczos_steps,
                        scheme=scheme, h=h, friction=friction, target_rse=target_rse,
                        plateau=plateau)
        journal = open_journal(op, gen, checkpoint,
                               every_seconds=check_nonnegative_float("checkpoint_every",
                                                                     checkpoint_every),
                               settings=_run_identity(op, settings, backend, preconditioner))
    est = _langevin_run(op, gen, journal, rtol=rtol, atol=atol, paper=paper,
                        n_chains=n_chains, n_steps=n_steps, n_avg=n_avg, eta=eta, sigma2=sigma2,
                        preconditioner=preconditioner, noise=noise, corrected=corrected,
                        max_matvecs=max_matvecs, backend=backend, spectrum=spectrum,
                        lanczos_steps=lanczos_steps, progress=progress, scheme=scheme, h=h,
                        friction=friction, target_rse=target_rse, plateau=plateau)
    if journal is not None:
        journal.finish()
    return est


def _run_identity(op, settings, backend, preconditioner):
    """What identifies a run in its checkpoint besides the operator's fingerprint and the
    generator: the options, the backend (its noise and summation order), the
    preconditioner (a fingerprint of its products) and the operator's threshold inputs."""
    be = get_backend(backend, op)
    precond = as_preconditioner(preconditioner, op.n, op.dtype)
    settings = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in settings.items()}
    noise_floor = getattr(op, "noise_floor", None)
    return dict(settings, backend=dict(name=be.name, reorder=getattr(be, "reorder", None)),
                preconditioner=None if precond.is_identity else operator_fingerprint(
                    precond.apply, op.n, op.dtype),
                dtype=np.dtype(op.dtype).name,
                noise_floor=None if noise_floor is None else float(noise_floor),
                scale=float(getattr(op, "scale", 1.0)))


def _langevin_run(op, gen, journal, *, rtol, atol, paper, n_chains, n_steps, n_avg, eta,
                  sigma2, preconditioner, noise, corrected, max_matvecs, backend, spectrum,
                  lanczos_steps, progress, scheme, h, friction, target_rse, plateau):
    """:func:`langevin_rank` after the generator and the journal are set up."""
    if scheme is None:
        scheme = "em" if (paper or eta is not None or corrected is not None) else DEFAULT_SCHEME
    if scheme not in ("em", "baoab"):
        raise ValueError(f"scheme must be 'baoab' or 'em', got {scheme!r}")
    if scheme == "baoab":
        if paper or eta is not None or corrected is not None:
            raise ValueError("paper, eta and corrected apply to scheme='em'; "
                             "BAOAB takes h and friction")
        return _baoab_rank(op, gen=gen, rtol=rtol, atol=atol, n_chains=n_chains, n_steps=n_steps,
                           n_avg=n_avg, sigma2=sigma2, preconditioner=preconditioner,
                           noise=noise, max_matvecs=max_matvecs, backend=backend,
                           spectrum=spectrum, lanczos_steps=lanczos_steps, progress=progress,
                           h=h, friction=friction, target_rse=target_rse, plateau=plateau,
                           journal=journal)
    if h is not None or friction is not None or target_rse is not None or plateau:
        raise ValueError("h, friction, target_rse and plateau apply to scheme='baoab'")
    settings = dict(n_chains=n_chains, n_steps=n_steps, n_avg=n_avg, eta=eta, sigma2=sigma2,
                    noise=noise, corrected=corrected)
    if paper:
        for key, value in PAPER_SETTINGS.items():
            if settings[key] is None:
                settings[key] = value
    chains_given = settings["n_chains"] is not None
    settings["n_chains"] = 8 if settings["n_chains"] is None else settings["n_chains"]
    settings["sigma2"] = 1.0 if settings["sigma2"] is None else settings["sigma2"]
    settings["noise"] = settings["noise"] or "rademacher"
    settings["corrected"] = True if settings["corrected"] is None else bool(settings["corrected"])
    _validate(settings, max_matvecs, spectrum, rtol, atol)
    if max_matvecs is None and not paper and settings["n_steps"] is None:
        max_matvecs = DEFAULT_MAX_MATVECS

    precond, be, bounds, squared = _prepare(op, preconditioner, backend, gen, lanczos_steps,
                                            spectrum)
    if bounds is None:
        return _zero_operator_result(op, be, rtol, atol)
    tau, source, abs_lam_max = _threshold_of(op, bounds, rtol, atol)

    user_eta = settings["eta"]
    attempts = []
    backoff = 1.0
    while True:
        run_op, lam_max_run, ritz_max_run = _run_operator(op, precond, gen, lanczos_steps,
                                                          bounds, squared, be)
        if user_eta is not None:
            step = user_eta
        else:
            step = STEP_FACTOR / (LAMBDA_MAX_INFLATION * lam_max_run) / backoff
        if user_eta is not None and step * ritz_max_run >= 2.0:
            raise DivergenceError(
                f"eta={step:.4g} is unstable: eta * lambda_max >= 2 "
                f"(Lanczos lower bound on lambda_max{' of S^2' if squared else ''}: {ritz_max_run:.4g});"
                f" use eta < {2.0 / ritz_max_run:.4g} or leave eta=None")
        pps = 2 if squared else 1
        tau_run = tau * tau if squared else tau
        need = 2 * _steps_to_resolve(step, tau_run) if tau_run > 0 else math.inf
        if not chains_given and settings["n_steps"] is None and max_matvecs is not None:
            settings["n_chains"] = _chains_for((max_matvecs - op.matvecs) // pps, need, 8,
                                               source in ("rtol", "atol"))
        plan = _plan(settings, step, max_matvecs, op.matvecs, pps, tau_run, source)
        budget = op.matvecs + plan["n_steps"] * plan["n_chains"] * pps
        bar = make_progress(progress, budget=budget, desc="langevin")
        try:
            record = run_euler_maruyama(
                run_op, be, n_chains=plan["n_chains"], n_steps=plan["n_steps"], eta=step,
                sigma2=settings["sigma2"], precond=precond, noise=settings["noise"], gen=gen,
                corrected=settings["corrected"], progress=bar, burn_in=plan["burn_in"],
                budget=budget, recorder=TraceRecorder(plan["n_chains"]), journal=journal)
        except DivergedRun as exc:
            attempts.append(dict(eta=step, squared=squared, step=exc.step, value=exc.value))
            if user_eta is not None:
                raise DivergenceError(
                    f"Langevin run diverged at step {exc.step} with eta={step:.4g} "
                    f"(observable {exc.value:.3g}); the step is too large for lambda_max, or the "
                    "matrix has negative eigenvalues (try eta=None, spectrum='indefinite')"
                ) from None
            if not squared and spectrum == "auto":
                squared = True  # automatic step is stable for lambda_max: negative modes grew
                continue
            if len(attempts) > _MAX_BACKOFFS:
                raise DivergenceError(
                    f"Langevin run diverged {len(attempts)} times despite step back-off; "
                    f"attempts: {attempts}") from None
            backoff *= 2.0  # halve the automatic step
            continue
        finally:
            getattr(bar, "close", lambda: None)()
        break

    return _summarise(record, plan, settings, step, op, bounds, squared, be,
                      attempts, lam_max_run, tau=tau, source=source, abs_lam_max=abs_lam_max,
                      max_matvecs=max_matvecs)


def _validate(settings, max_matvecs, spectrum, rtol, atol):
    for key in ("n_chains", "n_steps", "n_avg"):
        settings[key] = check_positive_int(key, settings[key], allow_none=True)
    for key in ("eta", "sigma2"):
        settings[key] = check_positive_float(key, settings[key], allow_none=True)
    settings["noise"] = check_choice("noise", settings["noise"], ("rademacher", "gaussian"))
    if max_matvecs is not None:
        check_positive_int("max_matvecs", max_matvecs)
    check_choice("spectrum", spectrum, ("auto", "psd", "indefinite"))
    if settings["n_steps"] is not None and settings["n_avg"] is not None \
            and settings["n_avg"] > settings["n_steps"]:
        raise ValueError(f"n_avg={settings['n_avg']} exceeds n_steps={settings['n_steps']}")


def _plan(settings, eta, max_matvecs, spent, products_per_step, tau_run, source):
    """Fix chains, steps, burn-in and averaging window within the budget.

    With `rtol`/`atol` the burn-in is the horizon that counts ``tau_run`` to within
    1e-3 (at most half the run); with the default threshold a quarter of the run.
    """
    c = settings["n_chains"]
    n_steps = settings["n_steps"]
    if n_steps is None:
        n_steps = (max_matvecs - spent) // (c * products_per_step)
        if n_steps < 4:
            raise BudgetError(
                f"max_matvecs={max_matvecs} leaves room for only {max(n_steps, 0)} steps of "
                f"{c} chains after {spent} products for the symmetry check and Lanczos; raise max_matvecs or lower n_chains")
    elif max_matvecs is not None and spent + n_steps * c * products_per_step > max_matvecs:
        raise ValueError(
            f"n_steps={n_steps} x n_chains={c} x {products_per_step} products per step "
            f"+ {spent} products already spent exceeds max_matvecs={max_matvecs}")
    explicit = source in ("rtol", "atol")
    if settings["n_avg"] is not None:
        n_avg = settings["n_avg"]
        burn = n_steps - n_avg
    elif explicit and tau_run > 0:
        burn = min(_steps_to_resolve(eta, tau_run), n_steps // 2)
        n_avg = n_steps - burn
    else:
        burn = n_steps // 4
        n_avg = n_steps - burn
    return dict(n_chains=c, n_steps=n_steps, n_avg=n_avg, burn_in=burn,
                requested_threshold=tau_run)


def _zero_operator_result(op, be, rtol=None, atol=None):
    tau, source = count_threshold(0.0, op.n, op.dtype, rtol=rtol, atol=atol,
                                  noise_floor=getattr(op, "noise_floor", None))
    return RankEstimate(rank=0, estimate=0.0, stderr=0.0, threshold=tau,
                        matvecs=op.matvecs, method="langevin", converged=True,
                        info=dict(reason="Lanczos found the operator to be zero",
                                  backend=be.name, threshold_source=source),
                        resolution=tau, interval=(0, 0))


def _em_filters(eta, corrected):
    return lambda lam, windows: em_window_filters(lam, eta, windows, corrected=corrected)


def _summarise(record, plan, settings, eta, op, bounds, squared, be, attempts,
               lam_max_run, *, tau, source, abs_lam_max, max_matvecs):
    first = record.burn_in_block(plan["burn_in"])
    stats = window_stats(record, first, always_batches=False)
    estimate, stderr = stats.estimate, stats.stderr
    if not math.isfinite(stderr):  # one chain, one averaged step: no error estimate
        stderr = math.inf
    lam_min_run = 0.0 if squared else min(0.0, bounds["ritz_min"])
    outcome = _count_outcome(record, first, stats, _em_filters(eta, settings["corrected"]),
                             tau=tau, source=source, squared=squared, n=op.n,
                             lam_max_run=lam_max_run, lam_min_run=lam_min_run)
    converged = outcome.narrow
    if not converged:
        pps = 2 if squared else 1
        tau_run = tau * tau if squared else tau
        steps = 2 * _steps_to_resolve(eta, tau_run) if tau_run > 0 else math.inf
        if settings["n_steps"] is not None:  # the user fixed the run length
            needed, option = steps, "n_steps"
        else:
            needed, option = op.matvecs + steps * plan["n_chains"] * pps, "max_matvecs"
        warnings.warn(_not_converged_message(outcome, accuracy_met=True, accuracy_note="",
                                             abs_lam_max=abs_lam_max, needed_products=needed,
                                             scheme="Euler-Maruyama", budget_option=option),
                      ConvergenceWarning, stacklevel=5)
    rank_curve, curve_steps = record.curve()
    info = dict(
        scheme="euler-maruyama", eta=eta, sigma2=settings["sigma2"], noise=settings["noise"],
        corrected=settings["corrected"], n_chains=plan["n_chains"], n_steps=plan["n_steps"],
        n_avg=stats.length, burn_in=stats.start, squared=squared,
        lambda_max=lam_max_run, ritz_max=bounds["ritz_max"], lambda_min=bounds["lambda_min"],
        eta_lambda_max=eta * lam_max_run / LAMBDA_MAX_INFLATION,
        lanczos_matvecs=bounds["steps"], rank_curve=rank_curve, rank_curve_steps=curve_steps,
        loss_curve=rank_curve * settings["sigma2"] / 4.0, resolution=outcome.resolution,
        requested_threshold=plan["requested_threshold"], drift=stats.drift,
        drift_stderr=stats.drift_stderr, stderr_method=stats.method, backoffs=attempts,
        backend=be.name,
    )
    info.update(_outcome_info(outcome, abs_lam_max))
    return RankEstimate(rank=_clip_rank(estimate, outcome.interval, op.n), estimate=estimate,
                        stderr=stderr, threshold=outcome.threshold, matvecs=op.matvecs,
                        method="langevin", converged=converged, info=info,
                        resolution=outcome.resolution, interval=outcome.interval)


def _outcome_info(outcome, abs_lam_max):
    return dict(threshold_source=outcome.source, abs_lambda_max=abs_lam_max,
                bracket=outcome.bracket, resolved_count=outcome.resolved_count,
                bracket_windows=outcome.windows, bracket_moments=outcome.moments,
                bracket_moment_stderr=outcome.moment_stderr,
                bracket_stderr_method=outcome.moment_stderr_method)


def _baoab_rank(op, *, gen, rtol, atol, n_chains, n_steps, n_avg, sigma2, preconditioner, noise,
                max_matvecs, backend, spectrum, lanczos_steps, progress, h, friction, target_rse,
                plateau=False, journal=None):
    """``scheme="baoab"``: kinetic Langevin with automatic tuning and sequential stopping."""
    settings = dict(n_chains=n_chains, n_steps=n_steps, n_avg=n_avg, eta=None,
                    sigma2=1.0 if sigma2 is None else sigma2,
                    noise=noise or "rademacher", corrected=True)
    _validate(settings, max_matvecs, spectrum, rtol, atol)
    n_chains, n_steps, n_avg = settings["n_chains"], settings["n_steps"], settings["n_avg"]
    h = check_positive_float("h", h, allow_none=True)
    friction = check_positive_float("friction", friction, allow_none=True)
    stderr_floor = STDERR_FLOOR if target_rse is None else 0.0  # explicit targets are exact
    target_rse = DEFAULT_TARGET_RSE if target_rse is None else target_rse
    target_rse = check_positive_float("target_rse", target_rse)
    if max_matvecs is None and n_steps is None:
        max_matvecs = DEFAULT_MAX_MATVECS
    precond, be, bounds, squared = _prepare(op, preconditioner, backend, gen, lanczos_steps,
                                            spectrum)
    if bounds is None:
        return _zero_operator_result(op, be, rtol, atol)
    tau, source, abs_lam_max = _threshold_of(op, bounds, rtol, atol)
    explicit = source in ("rtol", "atol")
    attempts = []
    backoff = 1.0
    while True:
        pps = 2 if squared else 1
        run_op, lam_max_run, ritz_max_run = _run_operator(op, precond, gen, lanczos_steps,
                                                          bounds, squared, be)
        lam_max_run *= LAMBDA_MAX_INFLATION
        if h is not None and h * h * ritz_max_run >= 4.0:
            raise DivergenceError(
                f"h={h:.4g} is unstable: h^2 lambda_max >= 4 (Lanczos lower bound on lambda_max: "
                f"{ritz_max_run:.4g}); use h < {2.0 / math.sqrt(ritz_max_run):.4g} or leave h=None")
        step = h if h is not None else BAOAB_STEP_FACTOR / math.sqrt(lam_max_run) / backoff
        tau_run = tau * tau if squared else tau
        need = (_BAOAB_RESOLVE_HORIZON / (step * math.sqrt(tau_run))) if tau_run > 0 else math.inf
        c = DEFAULT_BAOAB_CHAINS if n_chains is None else n_chains
        if n_chains is None and n_steps is None:
            avail = (max_matvecs - op.matvecs) // pps
            c = _chains_for(avail, need, DEFAULT_BAOAB_CHAINS, explicit, _MAX_CHAINS)
            while c > 1 and avail // c < 16:  # a small budget: fewer chains, not an error
                c //= 2
        if n_steps is not None:
            max_steps = n_steps
            if max_matvecs is not None and op.matvecs + n_steps * c * pps > max_matvecs:
                raise ValueError(
                    f"n_steps={n_steps} x n_chains={c} x {pps} products per step + {op.matvecs} "
                    f"products already spent exceeds max_matvecs={max_matvecs}")
        else:
            max_steps = (max_matvecs - op.matvecs) // (c * pps)
            if max_steps < 8:
                raise BudgetError(
                    f"max_matvecs={max_matvecs} leaves room for only {max(max_steps, 0)} steps of "
                    f"{c} chains after {op.matvecs} products for the symmetry check and Lanczos; "
                    "raise max_matvecs or lower n_chains")
        # the friction is planned for the threshold when the run can resolve it; otherwise
        # for the smallest eigenvalue the budget resolves (a friction planned for an
        # unreachable threshold would leave the counted modes underdamped and slow to mix)
        reachable = need <= max_steps
        lam_lo = tau_run if reachable else None
        budget = op.matvecs + max_steps * c * pps
        bar = make_progress(progress, budget=budget, desc="langevin")
        try:
            out = run_baoab_estimate(
                run_op, be, lam_max=lam_max_run, n_chains=c, max_steps=max_steps,
                sigma2=settings["sigma2"], precond=precond, noise=settings["noise"], gen=gen,
                lam_lo=lam_lo, h=step, friction=friction, target_rse=target_rse,
                stderr_floor=stderr_floor, plateau=bool(plateau),
                n_steps=n_steps, n_avg=n_avg, progress=bar, budget=budget,
                min_steps=2 * need if reachable else 0, warn=False, journal=journal)
        except DivergedRun as exc:
            attempts.append(dict(h=step, squared=squared, step=exc.step, value=exc.value))
            if h is not None:
                raise DivergenceError(
                    f"Langevin (BAOAB) run diverged at step {exc.step} with h={step:.4g} "
                    f"(observable {exc.value:.3g}); the step is too large for lambda_max, or the "
                    "matrix has negative eigenvalues (try h=None, spectrum='indefinite')") from None
            if not squared and spectrum == "auto":
                squared = True
                continue
            if len(attempts) > _MAX_BACKOFFS:
                raise DivergenceError(
                    f"Langevin (BAOAB) run diverged {len(attempts)} times despite step back-off; "
                    f"attempts: {attempts}") from None
            backoff *= math.sqrt(2.0)
            continue
        finally:
            getattr(bar, "close", lambda: None)()
        break
    plan = out["plan"]
    record, burn = out["record"], out["burn_in"]
    segments = out["segments"]
    staged = out["stages"] is not None
    varying = len(segments) > 1
    lam_min_run = 0.0 if squared else min(0.0, bounds["ritz_min"])

    def filters(lam, windows):
        return baoab_window_filters(lam, plan["h"], segments, windows, p0_variance=P0_VARIANCE)

    outcome = _count_outcome(record, out["first_block"], out["window"], filters, tau=tau,
                             source=source, squared=squared, n=op.n, lam_max_run=lam_max_run,
                             lam_min_run=lam_min_run)
    curve = threshold_curve_from_record(record, plan["h"], segments, lam_max_run,
                                        squared=squared, p0_variance=P0_VARIANCE)
    checks_info, plateau_info = None, None
    if staged:
        frictions = segment_frictions(segments)
        half = half_count_schedule(plan["h"], frictions, lam_max=lam_max_run, grid=160,
                                   p0_variance=P0_VARIANCE)
        if squared:
            half = np.sqrt(half)
        checks_info = [dict(rec, resolution=float(half[rec["step"] - 1])) for rec in out["stages"]]
        found = out["plateau"]
        if found is not None:
            top_step = max(1, found["window"][0] // 2 ** PLATEAU_SPAN)
            plateau_info = dict(top=float(half[top_step - 1]), bottom=float(half[record.steps - 1]),
                                count=found["count"], differences=found["differences"],
                                differences_stderr=found["differences_stderr"],
                                held=found.get("held", 0))
    accuracy_met = bool(out["converged"])
    converged = accuracy_met and outcome.narrow
    est, err = out["estimate"], out["stderr"]
    if not math.isfinite(err):
        err = math.inf
    if not converged and n_steps is None:
        steps = math.ceil(2 * need) if math.isfinite(need) else math.inf
        needed = op.matvecs + steps * pps * (1 if explicit else c)
        note = (f"target_rse={target_rse:g} or a stderr of {stderr_floor:g}; reached "
                f"{err:.3g}")
        warnings.warn(_not_converged_message(outcome, accuracy_met=accuracy_met,
                                             accuracy_note=note, abs_lam_max=abs_lam_max,
                                             needed_products=needed, scheme="BAOAB"),
                      ConvergenceWarning, stacklevel=4)
    elif not converged:
        warnings.warn(_not_converged_message(outcome, accuracy_met=True, accuracy_note="",
                                             abs_lam_max=abs_lam_max,
                                             needed_products=math.inf if not math.isfinite(need)
                                             else op.matvecs + 2 * need * c * pps,
                                             scheme="BAOAB"),
                      ConvergenceWarning, stacklevel=4)
    rank_curve, curve_steps = record.curve()
    info = dict(
        scheme="baoab", h=plan["h"],
        friction=plan["gamma"], friction_c=plan["friction"],
        lambda_lo=plan["lambda_lo"], eta=plan["h"] ** 2 / 2.0, sigma2=settings["sigma2"],
        temperature=settings["sigma2"] / 2.0, noise=settings["noise"], corrected=True,
        n_chains=c, n_steps=record.steps, n_avg=record.steps - burn, burn_in=burn,
        squared=squared, lambda_max=lam_max_run, ritz_max=bounds["ritz_max"],
        lambda_min=bounds["lambda_min"],
        eta_lambda_max=plan["h"] ** 2 * lam_max_run / (2.0 * LAMBDA_MAX_INFLATION),
        lanczos_matvecs=bounds["steps"], rank_curve=rank_curve, rank_curve_steps=curve_steps,
        loss_curve=rank_curve * settings["sigma2"] / 4.0, resolution=outcome.resolution,
        requested_threshold=tau_run, drift=out["drift"], drift_stderr=out["drift_stderr"],
        stderr_method=out["stderr_method"], backoffs=attempts, backend=be.name,
        target_rse=target_rse, stderr_floor=stderr_floor, stop_reason=out["stop_reason"],
        accuracy_met=accuracy_met, threshold_curve=curve, plateau_checks=checks_info,
        plateau=plateau_info, friction_schedule="held on a plateau" if varying else "constant",
    )
    info.update(_outcome_info(outcome, abs_lam_max))
    return RankEstimate(rank=_clip_rank(est, outcome.interval, op.n), estimate=est, stderr=err,
                        threshold=outcome.threshold, matvecs=op.matvecs, method="langevin",
                        converged=converged, info=info, resolution=outcome.resolution,
                        interval=outcome.interval)
