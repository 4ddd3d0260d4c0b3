"""Helpers shared by the spectral rank methods (option checks, bounds, probes, thresholds)."""

from __future__ import annotations

import numbers

import numpy as np

from ..backends import rademacher
from ._arrays import spectral_arrays
from ._lanczos import lanczos_extremes

__all__ = []


def check_int(name, value, *, minimum=1, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name, value, choices):
    if value not in choices:
        expected = ", ".join(map(repr, choices))
        raise ValueError(f"unknown {name} {value!r}; expected one of {expected}")
    return value


def check_positive(name, value, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def user_threshold(rtol, atol, scale):
    """``max(atol, rtol * scale)`` or None when neither is given."""
    if rtol is None and atol is None:
        return None
    return max(atol or 0.0, (rtol or 0.0) * scale)


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


def budget_probes(name, max_matvecs, used, per_probe, wanted):
    """Number of probes that fit in the budget, or a ValueError if not even one does."""
    if max_matvecs is None:
        return wanted
    left = max_matvecs - used
    fit = left // per_probe if per_probe > 0 else wanted
    if fit < 1:
        raise ValueError(
            f"max_matvecs={max_matvecs} is too small for method={name!r}: {used} products "
            f"already spent and one probe needs {per_probe}")
    return int(min(wanted, fit))
