"""Helpers shared by the spectral rank methods (option checks, bounds, probes, thresholds)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._checks import (check_bool as _check_bool, check_choice as _check_choice,
                       check_int as _check_int, check_positive_float as _check_positive_float)
from .._errors import BudgetError, ConvergenceWarning
from .._result import RankEstimate, count_threshold
from ..backends import rademacher
from ._arrays import spectral_arrays
from ._lanczos import lanczos_extremes

__all__ = []

#: fewest probes a stochastic estimate is made from: one probe has no standard error
MIN_PROBES = 2


def check_int(name, value, *, minimum=1, allow_none=False):
    """An integer option (:func:`lmatrank._checks.check_int`: TypeError for a wrong type,
    ValueError for a value below `minimum`, the option named)."""
    return _check_int(name, value, minimum=minimum, allow_none=allow_none)


def check_choice(name, value, choices):
    """One of the strings `choices` (TypeError for a non-string, ValueError otherwise)."""
    return _check_choice(name, value, choices)


def check_bool(name, value):
    """True or False (numpy booleans accepted; TypeError otherwise)."""
    return _check_bool(name, value)


def check_positive(name, value, *, allow_none=False):
    return _check_positive_float(name, value, allow_none=allow_none)


def unit_probes(gen, n, count, kind, dtype=np.float64):
    """``count`` probe columns of unit length: normalised Gaussian or scaled Rademacher.

    Both satisfy ``E[v v^T] = I / n``, so ``n * v^T f(A) v`` is an unbiased
    estimate of ``tr f(A)``.
    """
    if kind == "gaussian":
        V = gen.standard_normal((n, count))
        V /= np.linalg.norm(V, axis=0)
    elif kind == "rademacher":
        V = rademacher(gen, (n, count), np.float64) / np.sqrt(n)
    else:  # pragma: no cover - validated by callers
        raise ValueError(f"unknown probe kind {kind!r}")
    return V.astype(dtype, copy=False)


def spectrum_interval(op, gen, *, lanczos_steps, spectrum, pad_abs=None, pad_rel=1e-5,
                      arrays=None):
    """Lanczos extremes and a safe interval ``[lmin, lmax]`` for a Chebyshev expansion.

    ``spectrum="psd"`` fixes the lower end at ``0 - pad``; ``"indefinite"`` uses
    the Lanczos outer bound; ``"auto"`` decides from the smallest Ritz value
    (an inner bound: a clearly negative one proves a negative eigenvalue).
    The pad is ``pad_abs`` when given (the published code's 1e-5) and
    ``pad_rel * |lambda|_max`` otherwise. ``arrays``
    (:func:`~lmatrank.spectral._arrays.spectral_arrays`, default: from `op`)
    says where the Lanczos vectors live and how products are taken.

    Returns
    -------
    dict with ``lmin``, ``lmax``, ``scale`` (|lambda|_max estimate), ``indefinite``,
    ``lanczos`` (the raw :func:`lanczos_extremes` output).
    """
    if arrays is None:
        arrays = spectral_arrays(op)
    ext = lanczos_extremes(arrays.apply, op.n, rng=gen, n_steps=lanczos_steps, dtype=np.float64,
                           xp=arrays.xp)
    scale = max(abs(ext["ritz_min"]), abs(ext["ritz_max"]))
    pad = pad_abs if pad_abs is not None else pad_rel * scale
    clearly_negative = ext["ritz_min"] < -np.sqrt(np.finfo(op.dtype).eps) * scale
    if spectrum == "auto":
        indefinite = bool(clearly_negative)
    else:
        indefinite = spectrum == "indefinite"
    lmax = max(ext["lambda_max"], 0.0) + pad
    lmin = min(ext["lambda_min"], 0.0) - pad if indefinite else -pad
    return dict(lmin=float(lmin), lmax=float(lmax), scale=float(scale), indefinite=indefinite,
                lanczos=ext)


def check_budget(name, max_matvecs, spent, needed, what):
    """Refuse, before any product, a budget that cannot pay for the minimal work.

    `spent` products were already taken (symmetry probes), `needed` more are the least the
    method can answer with (`what` says what they are). Raises
    :class:`lmatrank.BudgetError` (a ValueError).
    """
    if max_matvecs is None:
        return
    if max_matvecs - spent < needed:
        raise BudgetError(
            f"max_matvecs={max_matvecs} is too small for method={name!r}: {spent} products "
            f"already spent and the least it can answer with needs {needed} more ({what})")


def budget_probes(max_matvecs, spent, per_probe, wanted, minimum=MIN_PROBES):
    """Number of probes that fit in the budget (at least `minimum`: checked before)."""
    if max_matvecs is None:
        return wanted
    fit = (max_matvecs - spent) // per_probe if per_probe > 0 else wanted
    return int(max(minimum, min(wanted, fit)))


def contract_threshold(op, lam_abs_max, *, rtol, atol):
    """The threshold of the public contract for ``|lambda|_max = lam_abs_max``
    (:func:`lmatrank.count_threshold` with the operator's precision and noise floor)."""
    precision = getattr(op, "precision", None) or op.dtype
    return count_threshold(lam_abs_max, op.n, precision, rtol=rtol, atol=atol,
                           noise_floor=getattr(op, "noise_floor", None))


def width_limit(count):
    """The widest interval a converged result may report: ``max(4, 2% of the count)``.

    >>> width_limit(10), width_limit(1000)
    (4, 20)
    """
    return int(max(4, math.floor(0.02 * max(count, 0))))


def converged_width(count):
    """The widest interval these methods call converged: ``2 max(1, 0.5% of the count)``.

    Within :func:`width_limit` (the contract's ``max(4, 2%)``), and narrow enough that
    the midpoint is within ``max(1, 0.5%)`` of every count the interval allows: a
    converged rank is right, not merely bracketed.

    >>> converged_width(10), converged_width(1000), converged_width(10000)
    (2, 10, 100)
    """
    return int(2 * max(1, math.floor(0.005 * max(count, 0))))


def bracketed_result(op, *, method, estimate, stderr, threshold, resolution, bracket, info,
                     fix, stacklevel=4):
    """A :class:`~lmatrank.RankEstimate` from a filter estimate and a count bracket.

    `bracket` is ``(lo, hi, solved)`` with real-valued bounds. The interval is
    ``(ceil(lo), floor(hi))``. Converged when the bracket was solved and is at most
    :func:`converged_width` wide: the estimate is then the bracket's midpoint (the point
    closest to every count it allows). Otherwise the filter `estimate`, clipped into
    the interval, is reported with ``converged=False`` and one ConvergenceWarning that
    says what would resolve it (`fix`). ``info["filter_estimate"]`` keeps `estimate`.
    """
    lo_real, hi_real, solved = bracket
    n = op.n
    lo = int(min(n, max(0, math.ceil(lo_real - 1e-6))))
    hi = int(min(n, max(lo, math.floor(hi_real + 1e-6))))
    info["filter_estimate"] = float(estimate)
    converged = bool(solved) and hi - lo <= converged_width(0.5 * (lo + hi))
    if converged:
        point = min(max(0.5 * (max(lo_real, 0.0) + min(hi_real, n)), lo), hi)
    else:
        point = min(max(estimate, lo), hi) if math.isfinite(estimate) else 0.5 * (lo + hi)
        what = "could not be bounded" if not solved else (
            f"lies in [{lo}, {hi}], too wide to name the count within max(1, 0.5%)")
        reason = (f"method={method!r}: the count of |lambda| > {threshold:.3g} {what}: "
                  f"{fix}")
        info["reason"] = reason
        warnings.warn(reason, ConvergenceWarning, stacklevel=stacklevel)
    rank = int(min(hi, max(lo, round(point))))
    info.setdefault("filter_resolution", float(resolution))
    if converged:
        # a narrow bracket determines the count at the threshold: whatever lies between
        # the threshold and the filters' resolution has been placed
        resolution = min(resolution, threshold)
    return RankEstimate(rank=rank, estimate=float(point), stderr=float(stderr),
                        threshold=float(threshold), matvecs=op.matvecs, method=method,
                        converged=converged, info=info, resolution=float(resolution),
                        interval=(lo, hi))


def filter_resolution(degree, lmin, lmax):
    """Smallest ``|lambda|`` a degree-`degree` polynomial on ``[lmin, lmax]`` separates from 0.

    The Chebyshev points of degree ``m`` are ``pi / m`` apart in angle: at ``t0``, the image
    of 0 in ``[-1, 1]``, that is ``h (pi / m) sqrt(1 - t0^2)`` in the interior and
    ``h (pi / m)^2 / 2`` at an end of the interval (``h`` the half width). This is
    where a damped step placed at 0 has risen to about one half; twice it is used, so
    that the step is essentially complete there.

    >>> r = filter_resolution(50, 0.0, 1.0)          # PSD: 0 is an end of the interval
    >>> bool(1e-3 < r < 1e-2)
    True
    >>> bool(filter_resolution(50, -1.0, 1.0) > 0.1)  # indefinite: 0 is in the middle
    True
    """
    c, h = 0.5 * (lmax + lmin), 0.5 * (lmax - lmin)
    if not h > 0:
        return 0.0
    t0 = min(1.0, max(-1.0, (0.0 - c) / h))
    step = math.pi / max(int(degree), 1)
    dt = step * math.sqrt(max(1.0 - t0 * t0, 0.0)) + 0.5 * step * step
    return float(2.0 * h * dt)


def degree_for(resolution, degree, target, cap):
    """Degree (or Lanczos steps) at which `resolution` (reached at `degree`) would fall to
    `target`: it scales like 1/degree in the interior and 1/degree^2 at an end."""
    if not (target > 0 and resolution > 0):
        return cap
    ratio = resolution / target
    return int(min(cap, math.ceil(degree * max(ratio ** 0.5, 1.0)))) if ratio < 1e12 else cap


def sampling_z(n_probes, z=None):
    """Standard errors for a two-sided interval at the level of ``INTERVAL_Z`` normal
    standard errors, from `n_probes` samples (Student's t with ``n_probes - 1`` degrees
    of freedom: two probes give a very wide interval, as they should).

    >>> round(sampling_z(1000), 2), sampling_z(2) > 100
    (3.01, True)
    """
    from scipy.special import ndtr, stdtrit

    from .._result import INTERVAL_Z

    level = float(ndtr(INTERVAL_Z if z is None else z))
    return float(stdtrit(max(int(n_probes) - 1, 1), level))


def fix_message(*, param, value, needed, sampling, limit, n_probes, probes_param="n_probes"):
    """What would resolve an unconverged bracket: more degree/steps, more probes, or
    another method."""
    parts = []
    if needed is not None and needed > value:
        if needed >= 100 * value:
            parts.append(f"the threshold lies far below what {param}={value} resolves "
                         f"(about {param}={needed} would be needed)")
        else:
            parts.append(f"{param}={needed} (now {value}) would resolve the threshold")
    if sampling > limit:
        more = int(math.ceil(n_probes * (sampling / max(limit, 1e-300)) ** 2))
        parts.append(f"about {probes_param}={more} (now {n_probes}) would shrink the "
                     "sampling error")
    parts.append("or use method='langevin', 'sketch' or 'exact'")
    return "; ".join(parts)

