"""Rank estimation with BAOAB kinetic Langevin dynamics (``scheme="baoab"``).

The rank observable ``q^T S q / T`` of BAOAB (Leimkuhler & Matthews, AMRX 2013,
arXiv:1203.5428) has stationary mean exactly ``rank(G S)`` at every stable step,
and underdamped dynamics resolve an eigenvalue ``lambda`` after a time
``~ 1 / sqrt(lambda)`` instead of ``~ 1 / lambda`` (docs/numerics.md):
``O(sqrt(kappa))`` products instead of the ``O(kappa)`` of Euler–Maruyama.

Automatic tuning (each constant measured, see docs/numerics.md and
bench/scaling.py):

- step ``h = 1.9 / sqrt(lambda_max)`` with ``lambda_max`` a padded Lanczos
  estimate inflated by 1%;
- friction ``gamma = 2.5 sqrt(lambda_lo)`` for the smallest eigenvalue
  ``lambda_lo`` the run must resolve;
- burn-in detected by the MSER rule (White, Simulation 1997) on batch means of
  the chain-averaged observable, never fixed.

The horizon (how far down the spectrum the run counts) comes from these rules:

- **threshold given** (`rtol`/`atol`): ``lambda_lo`` is the threshold; the
  chains are advanced in segments and stop once the standard error reaches
  ``max(target_rse * estimate, STDERR_FLOOR)`` (default ``target_rse = 0.001``,
  floor half a unit) with no significant drift in the window, or the product
  budget ends (``converged=False`` and a :class:`~lmatrank.ConvergenceWarning`);
- **no threshold** (the default): the friction is planned for the whole budget,
  ``lambda_lo = (K / (N h))^2`` with ``K = 35`` (``N`` steps), with the
  checkpoints of the first rule. The plateau search below is implemented and
  tested but off by default (option ``plateau=True`` of ``langevin_rank``; the
  measurements behind the default are in its docstring).
- **plateau search** (``plateau=True``): the friction is planned for the whole budget,
  ``lambda_lo = (K / (N h))^2`` with ``K = 35`` (``N`` steps), and
  at checkpoints ``N/2^PLATEAU_EARLIEST, ..., N/2`` the count of the window
  ``[k/2, k]`` is compared with the windows ``[k/4, k/2]`` and
  ``[k/8, k/4]`` (4x and 16x coarser resolution; chain-paired differences, no
  extra products). When they agree within ``PLATEAU_Z`` standard errors the
  rank-vs-resolution curve has a *plateau* (a spectral gap): the run stops
  as soon as the standard-error target is met with a flat window
  (``stop_reason="plateau"``, the plateau's finest resolution is the reported
  threshold). If the target is not met yet but looks reachable within
  ``_HOLD_MAX k`` more steps, the chains are *held* at the friction a
  ``k``-step budget would use (higher: lower autocorrelation for every mode
  above the gap) and the plateau is re-tested (``PLATEAU_RETEST_Z``) until the
  target is met, the plateau breaks or the hold ends. Otherwise the run goes
  on to the budget (``stop_reason`` says "no plateau").
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._errors import ConvergenceWarning
from ._dynamics import BaoabChains
from ._modes import baoab_half_count_eigenvalue, baoab_step_matrices, baoab_window_filters
from ._record import TraceRecorder, chain_means, mser_blocks, window_stats

__all__ = ["DEFAULT_TARGET_RSE", "STDERR_FLOOR", "BAOAB_STEP_FACTOR", "FRICTION_FACTOR",
           "RESOLUTION_HORIZON", "PLATEAU_Z", "PLATEAU_SPAN", "PLATEAU_EARLIEST", "P0_VARIANCE",
           "mser_burn_in", "plan_baoab", "half_count_schedule", "threshold_curve",
           "run_baoab_estimate"]

#: ``h sqrt(lambda_max)`` of the automatic step (stability limit 2).
BAOAB_STEP_FACTOR = 1.9
#: ``gamma = FRICTION_FACTOR * sqrt(lambda_lo)``.
FRICTION_FACTOR = 2.5
#: ``lambda_lo = (RESOLUTION_HORIZON / (N h))^2`` when no threshold is requested.
RESOLUTION_HORIZON = 35.0
#: Default chains per block (measured on the scaling benchmark, docs/benchmarks_scaling.md).
DEFAULT_BAOAB_CHAINS = 8
#: Default relative standard error of the stopping rule (0.5% would stop too early; see
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
#: Two window counts agree (a plateau) when they differ by at most this many standard errors.
PLATEAU_Z = 2.0
#: While a plateau is held, each re-test allows this many standard errors (the test is
#: repeated at every checkpoint of the hold; at 2 a true plateau would be dropped by chance).
PLATEAU_RETEST_Z = 3.0
#: A plateau needs the count of the window ``[k/2, k]`` to agree with this many coarser
#: windows (2: ``[k/4, k/2]`` and ``[k/8, k/4]``, a factor ~16 of resolution).
PLATEAU_SPAN = 2
#: Variance of the initial momenta in units of the temperature. 2 would start every mode at
#: its stationary mean energy (measured: paper-protocol NRMSE 1.15/0.53/0.36% at d = 8/16/32
#: vs 1.17/0.53/0.37% with 1) but makes the early count overshoot the rank (38 vs 30 in
#: test_estimator_baoab_reports_tuning_and_threshold_curve), which would mislead a reader of
#: the rank-vs-threshold curve; kept at 1.
P0_VARIANCE = 1.0
#: The first plateau test is at ``N / 2**PLATEAU_EARLIEST`` steps. Measured on paper-protocol
#: minima (d = 8): earlier tests stop on the flat stretch above a lone tiny eigenvalue
#: (~1e-5 lambda_max) that the rest of the budget still counts in part.
PLATEAU_EARLIEST = 2
_FIRST_TEST_STEPS = 48
#: A plateau stop uses this fraction of the absolute stderr floor.
PLATEAU_FLOOR_SCALE = 1.0
#: A hold lasts at most this many times the checkpoint's step count.
_HOLD_MAX = 3.0
_MIN_STAGE_STEPS = 16
#: While a plateau is held, re-test every this fraction of the checkpoint's step count.
_HOLD_FRACTION = 0.5

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


def half_count_schedule(h, frictions, *, lam_max, grid=120, p0_variance=1.0):
    """Half-counted eigenvalue after each step of a run whose friction changes per step.

    `frictions` holds ``c = exp(-gamma h)`` of every step (length ``k``). The
    exact per-mode BAOAB recursion (:func:`._modes.baoab_step_matrices`) is
    iterated on a log grid of eigenvalues in ``[lam_max * 1e-14, lam_max]``
    from ``q_0 = 0``, ``p_0 ~ N(0, T)``; entry ``j`` is the smallest grid
    eigenvalue whose running average of ``lam q^2 / T`` over steps ``1..j+1``
    reaches 1/2 (``inf`` before any does) — the definition of
    :func:`._modes.baoab_half_count_eigenvalue`, which this reproduces for a
    constant friction.
    """
    frictions = np.asarray(frictions, dtype=np.float64)
    n_steps = frictions.size
    lams = lam_max * np.logspace(-14, 0, grid)
    sigma = np.zeros((grid, 2, 2))
    sigma[:, 1, 1] = p0_variance
    running = np.zeros(grid)
    out = np.full(n_steps, np.inf)
    change = np.flatnonzero(np.diff(frictions)) + 1
    edges = np.r_[0, change, n_steps]
    for a, b in zip(edges[:-1], edges[1:]):
        M, vec = baoab_step_matrices(lams, h, float(frictions[a]))
        Mt = np.swapaxes(M, 1, 2)
        bb = vec[:, :, None] * vec[:, None, :]
        for k in range(a, b):
            sigma = M @ sigma @ Mt + bb
            running += lams * sigma[:, 0, 0]
            half = running >= 0.5 * (k + 1)
            if half.any():
                out[k] = lams[int(np.argmax(half))]
    return out


def threshold_curve(trace, h, friction, lam_max, *, points=60, squared=False, p0_variance=1.0):
    """Rank as a function of the filter's resolution, from the run's transient.

    Row ``k`` of the chain-averaged trace (smoothed by a running average over
    steps ``k/2..k``) is paired with the eigenvalue the BAOAB filter half counts
    after ``k`` steps (exact per-mode recursion, :mod:`._modes`). `friction`
    is ``c = exp(-gamma h)``, a number or one value per step (staged runs). For
    indefinite input (``squared``) resolutions are reported as ``|lambda|`` of
    ``S`` (square roots). No extra products.
    """
    curve = trace.mean(axis=1)
    n = curve.size
    ks = np.unique(np.geomspace(4, max(n, 5), points).astype(int))
    ks = ks[ks <= n]
    if np.ndim(friction) == 0:
        half = baoab_half_count_eigenvalue(h, float(friction), int(ks[-1]), lam_max=lam_max,
                                           grid=160, p0_variance=p0_variance)
    else:
        half = half_count_schedule(h, np.asarray(friction)[:int(ks[-1])], lam_max=lam_max,
                                   grid=160, p0_variance=p0_variance)
    cums = np.concatenate([[0.0], np.cumsum(curve)])
    count = np.array([(cums[k] - cums[k // 2]) / (k - k // 2) for k in ks])
    res = half[ks - 1]
    if squared:
        res = np.sqrt(res)
    return dict(steps=ks, resolution=res, count=count)


def _paired_difference(recorder, window_fine, window_coarse):
    """Count of `window_fine` minus that of `window_coarse` (row ranges, snapped to the
    recorder's blocks) and its stderr.

    With >= 4 chains the per-chain differences are independent (the windows of
    one chain are correlated, across chains they are not), so their spread
    gives the standard error of the difference; with fewer chains the two
    windows' batch-means stderrs are combined.
    """
    fine, _ = chain_means(recorder, *window_fine)
    coarse, _ = chain_means(recorder, *window_coarse)
    c = recorder.c
    diff = fine - coarse
    if c >= 4:
        return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(c))
    err_f = _snapped_stats(recorder, window_fine).stderr
    err_c = _snapped_stats(recorder, window_coarse).stderr
    return float(diff.mean()), math.hypot(err_f, err_c)


def _snapped_stats(recorder, window):
    """Window statistics of rows ``window`` (batch means; the window as a sub-record)."""
    a, b = window
    sub = TraceRecorder(recorder.c, max_blocks=recorder.max_blocks)
    sums, lengths = recorder.pieces()
    edges = recorder.edges()
    ia = int(np.searchsorted(edges, a).clip(0, edges.size - 2))
    ib = int(np.searchsorted(edges, b).clip(ia + 1, edges.size - 1))
    sub.sums[:ib - ia] = sums[ia:ib]
    sub.full, sub.block, sub.steps = ib - ia, recorder.block, int(lengths[ia:ib].sum())
    return window_stats(sub, 0)


def _summary(recorder, target_rse, stderr_floor):
    first = mser_blocks(recorder)
    w = window_stats(recorder, first)
    rse_ok = w.estimate > 0 and w.stderr <= max(target_rse * w.estimate, stderr_floor)
    flat = not (w.drift > 3.0 * w.drift_stderr + 0.5 * w.stderr)  # no significant upward drift
    return dict(first_block=first, burn_in=w.start, window=w, estimate=w.estimate,
                stderr=w.stderr, stderr_method=w.method, drift=w.drift,
                drift_stderr=w.drift_stderr, rse_ok=rse_ok, flat=flat)


#: Steps advanced per call of the chains (their rows are streamed into the recorder).
_CHUNK_STEPS = 2048


def _advance(chains, recorder, steps, advance):
    """Advance `steps` steps in chunks, streaming the observables into `recorder`."""
    done = 0
    while done < steps:
        take = min(_CHUNK_STEPS, steps - done)
        recorder.push(chains.advance(take, **advance))
        done += take


def run_baoab_estimate(run_op, be, *, lam_max, n_chains, max_steps, sigma2, precond, noise, gen,
                       lam_lo=None, h=None, friction=None, target_rse=DEFAULT_TARGET_RSE, n_steps=None,
                       n_avg=None, progress=None, budget=None, stderr_floor=STDERR_FLOOR,
                       plateau=False, min_steps=0, warn=True, journal=None):
    """Advance BAOAB chains with sequential stopping; return the record and the summary.

    `max_steps` caps the steps per chain (the budget). With `n_steps` fixed the
    run is not sequential. `min_steps`: no sequential stop before this many steps
    (the horizon that resolves the requested threshold). Without `lam_lo` (no
    threshold), `friction` and `n_steps` the run searches for a plateau in stages
    (module docstring; ``plateau=False`` plans the whole budget at once instead).
    Raises DivergedRun on divergence. `journal` (:class:`._journal.RunJournal`) logs and
    replays the chains' segments (checkpoint and resume).

    The returned dict holds ``record`` (a :class:`._record.TraceRecorder`: memory
    independent of the run length), ``first_block`` / ``burn_in`` (the averaging
    window's first block and row), ``window`` (its statistics), ``estimate``,
    ``stderr``, ``converged``, ``stop_reason``, ``plan``, ``steps``, ``segments``
    (``(steps, c)`` of every stretch of constant friction) and, for staged runs,
    ``stages`` (each stage's window count, its paired difference to the previous
    stage and whether they agree) and ``plateau`` (None, or the stages of the
    plateau that stopped the run).
    """
    plan = plan_baoab(lam_max=lam_max, n_chains=n_chains,
                      budget_steps=n_steps or max_steps, lam_lo=lam_lo, h=h, friction=friction)
    chains = BaoabChains(run_op, be, n_chains=n_chains, h=plan["h"], friction=plan["friction"],
                         temperature=sigma2 / 2.0, precond=precond, noise=noise, gen=gen,
                         journal=journal)
    if P0_VARIANCE != 1.0:
        chains.p *= math.sqrt(P0_VARIANCE)
    tracker = None
    if progress is not None:
        from .._progress import RunningChainMean
        tracker = RunningChainMean(0)
    advance = dict(progress=progress, tracker=tracker, budget=budget)
    recorder = TraceRecorder(n_chains)
    staged = plateau and lam_lo is None and friction is None and n_steps is None
    if staged:
        out = _run_plateau_search(chains, recorder, plan, max_steps, lam_max, target_rse,
                                  stderr_floor, advance)
    else:
        out = _run_single_plan(chains, recorder, plan, n_steps, max_steps, n_avg, target_rse,
                               stderr_floor, advance, min_steps)
    if warn and n_steps is None and not out["converged"]:
        warnings.warn(
            f"Langevin (BAOAB) stopped at the product budget before reaching target_rse="
            f"{target_rse:g} (or a stderr of {stderr_floor:g}): estimate {out['estimate']:.2f} "
            f"+- {out['stderr']:.2f} (relative {out['stderr'] / max(out['estimate'], 1e-300):.2%})",
            ConvergenceWarning, stacklevel=4)
    out.update(plan=plan, steps=recorder.steps, record=recorder)
    return out


def _run_single_plan(chains, recorder, plan, n_steps, max_steps, n_avg, target_rse,
                     stderr_floor, advance, min_steps=0):
    """One friction for the whole run; checkpoints after ``lambda_lo`` is resolved twice over."""
    total = n_steps or max_steps
    resolve_steps = int(math.ceil(2 * RESOLUTION_HORIZON / (math.sqrt(plan["lambda_lo"]) * plan["h"])))
    if min_steps:  # the horizon that resolves the requested threshold
        resolve_steps = int(math.ceil(min_steps))
    if min_steps:
        # a threshold the run resolves: checkpoints from its horizon on, each half the
        # steps done so far (geometric: the stop does not depend on the budget's size)
        first = min(total, max(16, resolve_steps))
        segments = [first]
        while sum(segments) < total:
            segments.append(min(max(16, sum(segments) // 2), total - sum(segments)))
    else:
        first = min(total, max(16, resolve_steps, total // _CHECKPOINTS))
        segments = [first]
        step = max(1, (total - first) // _CHECKPOINTS)
        while sum(segments) < total:
            segments.append(min(step, total - sum(segments)))
    stop_reason = "budget end before target_rse was reached"
    met = False
    for seg in segments:
        _advance(chains, recorder, seg, advance)
        if n_steps is not None:
            continue
        s = _summary(recorder, target_rse, stderr_floor)
        if s["rse_ok"] and s["flat"]:
            met = True
            stop_reason = "target_rse reached with a flat window"
            break
    if n_steps is not None and n_avg is not None:
        first_block = recorder.burn_in_block(recorder.steps - n_avg)
        met = True
        stop_reason = "fixed n_steps/n_avg"
    else:
        first_block = mser_blocks(recorder)
        if n_steps is not None:
            met = True
            stop_reason = "fixed n_steps"
    w = window_stats(recorder, first_block)
    return dict(first_block=first_block, burn_in=w.start, window=w, estimate=w.estimate,
                stderr=w.stderr, stderr_method=w.method, drift=w.drift,
                drift_stderr=w.drift_stderr, converged=met, stop_reason=stop_reason,
                segments=[(recorder.steps, plan["friction"])], stages=None, plateau=None)


def _run_plateau_search(chains, recorder, plan, max_steps, lam_max, target_rse, stderr_floor,
                        advance):
    """Whole-budget friction, checkpoints at doubling step counts, plateau test at each."""
    h, base = plan["h"], plan["friction"]
    stop_floor = stderr_floor * PLATEAU_FLOOR_SCALE  # a plateau stop ends the run early
    segments, checks = [], []
    found = None

    def run(steps, friction):
        chains.set_friction(friction)
        _advance(chains, recorder, steps, advance)
        if segments and segments[-1][1] == friction:
            segments[-1] = (segments[-1][0] + steps, friction)
        else:
            segments.append((steps, friction))

    def done():
        return recorder.steps

    def test(fine, z):
        """Count of window `fine` against the two windows before it (each half as long)."""
        a, b = fine
        coarse = [(a // 2, a), (a // 4, a // 2)]
        diffs, ses = [], []
        for win in coarse[:PLATEAU_SPAN]:
            diff, se = _paired_difference(recorder, fine, win)
            diffs.append(diff)
            ses.append(se)
        agrees = all(abs(d) <= z * e for d, e in zip(diffs, ses))
        means, _ = chain_means(recorder, a, b)
        return agrees, dict(step=b, window=fine, count=float(means.mean()),
                            differences=diffs, differences_stderr=ses, agrees=bool(agrees))

    checkpoints = [max_steps]
    earliest = max(_FIRST_TEST_STEPS, max_steps >> PLATEAU_EARLIEST)
    while checkpoints[-1] // 2 >= earliest:
        checkpoints.append(checkpoints[-1] // 2)
    checkpoints = checkpoints[::-1]
    for k in checkpoints:
        if k <= done():
            continue
        run(k - done(), base)
        if k >= max_steps:
            break
        agrees, rec = test((k // 2, k), PLATEAU_Z)
        checks.append(rec)
        if not agrees:
            continue
        summary = _summary(recorder, target_rse, stop_floor)
        if summary["rse_ok"] and summary["flat"]:
            found = rec
            break
        # hold only when the stderr target looks reachable within the hold: at the present
        # efficiency it needs k ((stderr / target)^2 - 1) more steps (the hold's higher
        # friction only helps)
        goal = max(target_rse * max(summary["estimate"], 0.0), stderr_floor)
        needed = k * ((summary["stderr"] / goal) ** 2 - 1.0) if goal > 0 else math.inf
        rec["hold_steps_needed"] = float(needed)
        if not needed <= _HOLD_MAX * k:
            continue
        # hold: the friction a k-step budget would have been planned with (higher than the
        # whole-budget one) lowers the autocorrelation of every mode above the gap
        lam_hold = max((RESOLUTION_HORIZON / (k * h)) ** 2, plan["lambda_lo"])
        hold_friction = math.exp(-FRICTION_FACTOR * math.sqrt(lam_hold) * h)
        rec.update(hold_lambda=lam_hold, held=0)
        hold_end = min(max_steps, done() + int(_HOLD_MAX * k))
        segment = max(_MIN_STAGE_STEPS, int(_HOLD_FRACTION * k))
        while done() < hold_end:
            run(min(segment, hold_end - done()), hold_friction)
            rec["held"] += 1
            agrees, again = test((k // 2, done()), PLATEAU_RETEST_Z)
            rec["retest"] = again
            if not agrees:
                break
            summary = _summary(recorder, target_rse, stop_floor)
            if summary["rse_ok"] and summary["flat"]:
                found = rec
                break
        if found is not None:
            break
        if done() >= max_steps:
            break
    if done() < max_steps and found is None:
        run(max_steps - done(), base)
    summary = _summary(recorder, target_rse, stderr_floor)
    if found is not None:
        met, stop_reason = True, "plateau"
    else:
        met = summary["rse_ok"] and summary["flat"]
        stop_reason = ("budget end, no plateau" + ("" if met else
                                                   " (target_rse or a flat window not reached)"))
    summary.update(converged=met, stop_reason=stop_reason, segments=segments, stages=checks,
                   plateau=found)
    return summary


def segment_frictions(segments):
    """Per-step frictions ``c`` of a run given as ``(steps, c)`` segments (length: steps)."""
    return np.concatenate([np.full(int(k), float(c)) for k, c in segments]) if segments \
        else np.zeros(0)


def threshold_curve_from_record(recorder, h, segments, lam_max, *, points=60, squared=False,
                                p0_variance=1.0):
    """:func:`threshold_curve` of a streamed run: the count of the windows ``[k/2, k]``
    (snapped to the recorder's blocks) against the half-count eigenvalue after ``k`` steps."""
    n = recorder.steps
    ks = np.unique(np.geomspace(4, max(n, 5), points).astype(int))
    ks = ks[ks <= n]
    if len(segments) == 1:
        half = baoab_half_count_eigenvalue(h, float(segments[0][1]), int(ks[-1]),
                                           lam_max=lam_max, grid=160, p0_variance=p0_variance) \
            if ks[-1] <= 50_000 else None
    else:
        half = half_count_schedule(h, segment_frictions(segments)[:int(ks[-1])],
                                   lam_max=lam_max, grid=160, p0_variance=p0_variance)
    if half is None:  # long runs: the half-count point of each window's filter
        res = np.array([_window_half_count(h, segments, lam_max, (k // 2, k), p0_variance)
                        for k in ks])
    else:
        res = half[ks - 1]
    count = np.array([chain_means(recorder, k // 2, k)[0].mean() for k in ks])
    if squared:
        res = np.sqrt(res)
    return dict(steps=ks, resolution=res, count=count)


def _window_half_count(h, segments, lam_max, window, p0_variance=1.0, grid=160):
    lams = lam_max * np.logspace(-14, 0, grid)
    f = baoab_window_filters(lams, h, segments, [window], p0_variance=p0_variance)[0]
    above = np.flatnonzero(f >= 0.5)
    return float(lams[above[0]]) if above.size else math.inf
