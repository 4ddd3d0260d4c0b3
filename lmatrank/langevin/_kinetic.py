"""Rank estimation with BAOAB kinetic Langevin dynamics (``scheme="baoab"``).

The rank observable ``q^T S q / T`` of BAOAB (Leimkuhler & Matthews, AMRX 2013,
arXiv:1203.5428) has stationary mean exactly ``rank(G S)`` at every stable step,
and underdamped dynamics resolve an eigenvalue ``lambda`` after a time
``~ 1 / sqrt(lambda)`` instead of ``~ 1 / lambda`` (notes/langevin_numerics.md §4):
``O(sqrt(kappa))`` products instead of the ``O(kappa)`` of Euler–Maruyama.

Automatic tuning (each constant measured, see notes/langevin_numerics.md §4 and
bench/scaling.py):

- step ``h = 1.9 / sqrt(lambda_max)`` with ``lambda_max`` a padded Lanczos
  estimate inflated by 1%;
- friction ``gamma = 2.5 sqrt(lambda_lo)``: ``lambda_lo`` is the threshold when
  `rtol`/`atol` are given, otherwise the smallest eigenvalue a chain of the
  planned length resolves, ``(K / (N h))^2`` with ``K = 35`` (``N`` steps);
- burn-in detected by the MSER rule (White, Simulation 1997) on batch means of
  the chain-averaged observable, never fixed;
- sequential stopping: the chains are advanced in segments until the standard
  error reaches ``max(target_rse * estimate, STDERR_FLOOR)`` (default
  ``target_rse = 0.001``, floor half a unit) and the window shows no
  significant drift (the plateau), or the product budget ends (``converged=False`` and a
  :class:`~lmatrank.ConvergenceWarning`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._errors import ConvergenceWarning
from ._dynamics import BaoabChains
from ._modes import baoab_half_count_eigenvalue

__all__ = ["DEFAULT_TARGET_RSE", "STDERR_FLOOR", "BAOAB_STEP_FACTOR", "FRICTION_FACTOR", "RESOLUTION_HORIZON", "mser_burn_in",
           "plan_baoab", "run_baoab_estimate"]

#: ``h sqrt(lambda_max)`` of the automatic step (stability limit 2).
BAOAB_STEP_FACTOR = 1.9
#: ``gamma = FRICTION_FACTOR * sqrt(lambda_lo)``.
FRICTION_FACTOR = 2.5
#: ``lambda_lo = (RESOLUTION_HORIZON / (N h))^2`` when no threshold is requested.
RESOLUTION_HORIZON = 35.0
#: Default chains per block (measured: notes/langevin_numerics.md §4).
DEFAULT_BAOAB_CHAINS = 8
#: Default relative standard error of the stopping rule (the issue asked for 0.5%; see
#: :func:`lmatrank.langevin.langevin_rank` for why the default is lower).
DEFAULT_TARGET_RSE = 0.001
#: Absolute standard error (rank units) that always satisfies the stopping rule: below half
#: a unit the rounded rank cannot be made more certain by more products.
STDERR_FLOOR = 0.5
#: Batches per chain of the batch-means stderr that backs up the chain-means one.
_STDERR_BATCHES = 4
_MIN_BATCH_STEPS = 25
#: Number of checkpoints of the sequential stopping rule within the budget.
_CHECKPOINTS = 12


def mser_burn_in(curve, *, batch=None, max_fraction=0.5):
    """Burn-in by the MSER rule on batch means of a (chain-averaged) trace.

    Chooses ``b`` minimising ``sum_{k >= b} (x_k - mean_b)^2 / (m - b)^2`` over
    batch means ``x`` (``m`` batches), ``b`` at most `max_fraction` of the run —
    the truncation point after which the remaining mean has the smallest
    estimated standard error (White, "An effective truncation heuristic for
    bias reduction in simulation output", Simulation 69, 1997).

    Returns the burn-in in steps.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.linspace(0, 10, 100), 10 + np.zeros(900)])
    >>> 80 <= mser_burn_in(x) <= 110
    True
    """
    curve = np.asarray(curve, dtype=np.float64)
    n = curve.size
    if batch is None:
        batch = max(1, n // 200)
    m = n // batch
    if m < 4:
        return 0
    x = curve[n - m * batch:].reshape(m, batch).mean(axis=1)
    offset = n - m * batch
    # suffix sums give every candidate's mean and squared deviation in O(m)
    rev = x[::-1]
    cnt = np.arange(1, m + 1)
    s1 = np.cumsum(rev)[::-1]
    s2 = np.cumsum(rev * rev)[::-1]
    counts = cnt[::-1].astype(np.float64)
    sq_dev = s2 - s1 * s1 / counts
    stat = sq_dev / counts ** 2
    limit = max(1, int(max_fraction * m))
    best = int(np.argmin(stat[:limit]))
    return offset + best * batch


def _window_stats(window):
    """Estimate, stderr (chain means when >= 8 chains, else batch means) and drift."""
    n_avg, c = window.shape
    estimate = float(window.mean())
    if c >= 8:
        means = window.mean(axis=0)
        stderr = float(means.std(ddof=1) / math.sqrt(c))
        how = "chain means"
        # c - 1 degrees of freedom make the chain-means stderr itself noisy (8 chains: only
        # ~91% of runs within 2 stderr even without bias); batch means within the chains add
        # degrees of freedom, and the larger of the two estimates is reported
        batches = _STDERR_BATCHES
        if n_avg >= batches * _MIN_BATCH_STEPS:
            usable = (n_avg // batches) * batches
            bm = window[n_avg - usable:].reshape(batches, usable // batches, c).mean(axis=1)
            batch_err = float(bm.ravel().std(ddof=1) / math.sqrt(bm.size))
            if batch_err > stderr:
                stderr = batch_err
                how = f"batch means ({batches} per chain; larger than the chain-means stderr)"
            else:
                how = f"chain means (larger than the batch-means stderr, {batches} per chain)"
    else:
        batches = min(max(2, math.ceil(16 / c)), n_avg)
        usable = (n_avg // batches) * batches
        means = window[n_avg - usable:].reshape(batches, usable // batches, c).mean(axis=1).ravel()
        stderr = float(means.std(ddof=1) / math.sqrt(means.size))
        how = f"batch means ({batches} per chain)"
    half = n_avg // 2
    if half >= 2:
        diff = window[n_avg - half:].mean(axis=0) - window[:half].mean(axis=0)
        drift = float(diff.mean())
        drift_stderr = float(diff.std(ddof=1) / math.sqrt(c)) if c > 1 else 2.0 * stderr
    else:
        drift, drift_stderr = math.nan, math.nan
    return estimate, stderr, how, drift, drift_stderr


def plan_baoab(*, lam_max, n_chains, budget_steps, lam_lo=None, h=None, friction=None):
    """Step, friction and resolution of a BAOAB run (all in eigenvalues of the run's ``G S``).

    Returns a dict with ``h``, ``gamma``, ``friction`` (``c = exp(-gamma h)``),
    ``lambda_lo`` and ``resolvable`` (whether `budget_steps` suffice to resolve
    `lam_lo` with a window after it).
    """
    if h is None:
        h = BAOAB_STEP_FACTOR / math.sqrt(lam_max)
    horizon_time = budget_steps * h
    reachable = (RESOLUTION_HORIZON / horizon_time) ** 2
    resolvable = True
    if lam_lo is None or lam_lo <= 0:
        lam_lo = reachable
    elif lam_lo < reachable / 4.0:  # resolving lam_lo needs more than ~half of the chain
        resolvable = False
    if friction is None:
        gamma = FRICTION_FACTOR * math.sqrt(max(lam_lo, reachable / 4.0))
    else:
        gamma = float(friction)
    return dict(h=float(h), gamma=float(gamma), friction=math.exp(-gamma * h),
                lambda_lo=float(lam_lo), resolvable=resolvable)


def threshold_curve(trace, h, friction, lam_max, *, points=60, squared=False):
    """Rank as a function of the filter's resolution, from the run's transient.

    Row ``k`` of the chain-averaged trace (smoothed by a running average over
    steps ``k/2..k``) is paired with the eigenvalue the BAOAB filter half counts
    after ``k`` steps (exact per-mode recursion, :mod:`._modes`). For
    indefinite input (``squared``) resolutions are reported as ``|lambda|`` of
    ``S`` (square roots). No extra products.
    """
    curve = trace.mean(axis=1)
    n = curve.size
    ks = np.unique(np.geomspace(4, max(n, 5), points).astype(int))
    ks = ks[ks <= n]
    half = baoab_half_count_eigenvalue(h, friction, int(ks[-1]), lam_max=lam_max, grid=160)
    cums = np.concatenate([[0.0], np.cumsum(curve)])
    count = np.array([(cums[k] - cums[k // 2]) / (k - k // 2) for k in ks])
    res = half[ks - 1]
    if squared:
        res = np.sqrt(res)
    return dict(steps=ks, resolution=res, count=count)


def run_baoab_estimate(run_op, be, *, lam_max, n_chains, max_steps, sigma2, precond, noise, gen,
                       lam_lo=None, h=None, friction=None, target_rse=DEFAULT_TARGET_RSE, n_steps=None,
                       n_avg=None, progress=None, budget=None, stderr_floor=STDERR_FLOOR):
    """Advance BAOAB chains with sequential stopping; return the trace and the summary.

    `max_steps` caps the steps per chain (the budget). With `n_steps` fixed the
    run is not sequential. Raises DivergedRun on divergence.
    """
    plan = plan_baoab(lam_max=lam_max, n_chains=n_chains,
                      budget_steps=n_steps or max_steps, lam_lo=lam_lo, h=h, friction=friction)
    chains = BaoabChains(run_op, be, n_chains=n_chains, h=plan["h"], friction=plan["friction"],
                         temperature=sigma2 / 2.0, precond=precond, noise=noise, gen=gen)
    tracker = None
    if progress is not None:
        from .._progress import RunningChainMean
        tracker = RunningChainMean(0)
    total = n_steps or max_steps
    # the first checkpoint comes after the time needed to resolve lambda_lo twice over
    resolve_steps = int(math.ceil(2 * RESOLUTION_HORIZON / (math.sqrt(plan["lambda_lo"]) * plan["h"])))
    first = min(total, max(16, resolve_steps, total // _CHECKPOINTS))
    segments = [first]
    step = max(1, (total - first) // _CHECKPOINTS)
    while sum(segments) < total:
        segments.append(min(step, total - sum(segments)))
    pieces = []
    stop_reason = "budget"
    met = False
    for seg in segments:
        pieces.append(chains.advance(seg, progress=progress, tracker=tracker, budget=budget))
        trace = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        if n_steps is not None:
            continue
        burn = mser_burn_in(trace.mean(axis=1))
        window = trace[burn:]
        est, err, _, drift, drift_err = _window_stats(window)
        rse_ok = est > 0 and err <= max(target_rse * est, stderr_floor)
        flat = not (drift > 3.0 * drift_err + 0.5 * err)  # no significant upward drift
        if rse_ok and flat:
            met = True
            stop_reason = "target_rse reached with a flat window"
            break
    trace = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    if n_steps is not None and n_avg is not None:
        burn = trace.shape[0] - n_avg
        met = True
        stop_reason = "fixed n_steps/n_avg"
    else:
        burn = mser_burn_in(trace.mean(axis=1))
        if n_steps is not None:
            met = True
            stop_reason = "fixed n_steps"
    window = trace[burn:]
    est, err, how, drift, drift_err = _window_stats(window)
    if n_steps is None and not met:
        warnings.warn(
            f"Langevin (BAOAB) stopped at the product budget before reaching target_rse="
            f"{target_rse:g} (or a stderr of {stderr_floor:g}): estimate {est:.2f} +- {err:.2f} "
            f"(relative {err / max(est, 1e-300):.2%})",
            ConvergenceWarning, stacklevel=4)
    return dict(trace=trace, burn_in=burn, estimate=est, stderr=err, stderr_method=how,
                drift=drift, drift_stderr=drift_err, converged=met, stop_reason=stop_reason,
                plan=plan, steps=trace.shape[0])
