"""Spectral methods: Lanczos, and (peer issue) Chebyshev/KPM, SLQ, sketching."""

from ._lanczos import LanczosResult, lanczos, lanczos_extremes

__all__ = ["LanczosResult", "lanczos", "lanczos_extremes"]
