"""Spectral methods: Lanczos, Chebyshev/KPM (Ubaru–Saad), SLQ, randomized sketching.

Rank methods registered in :func:`lmatrank.estimate_rank`: ``"chebyshev"``,
``"kpm"`` (:func:`chebyshev_rank`, :func:`kpm_rank`), ``"slq"``
(:func:`slq_rank`) and ``"sketch"`` (:func:`sketch_rank`). The building blocks
(damping, step coefficients, block moments, KPM density of states, threshold
rules, batched Lanczos) are public for reuse and testing.

All rank methods take ``backend=`` (None: chosen from the input): for input on a
CUDA device, or ``backend="cupy"``, the length-``n`` arrays live on the device
and only small results (Lanczos coefficients, moments, sketch-width matrices)
come to the host; the building blocks take the array namespace as ``xp=``.
"""

from ._chebyshev import (chebyshev_moments, chebyshev_series, count_from_moments,
                         damping_coefficients, jackson_damping, kpm_dos, kpm_grid,
                         sigma_damping, step_coefficients)
from ._gap import find_gap, plateau_threshold
from ._lanczos import (BatchedLanczosResult, LanczosResult, batched_lanczos, lanczos,
                       lanczos_extremes)
from ._sketch import sketch_rank
from ._slq import slq_rank
from ._ubaru_saad import chebyshev_rank, kpm_rank

__all__ = ["BatchedLanczosResult", "LanczosResult", "batched_lanczos", "chebyshev_moments",
           "chebyshev_rank", "chebyshev_series", "count_from_moments", "damping_coefficients",
           "find_gap", "jackson_damping", "kpm_dos", "kpm_grid", "kpm_rank", "lanczos",
           "lanczos_extremes", "plateau_threshold", "sigma_damping", "sketch_rank", "slq_rank",
           "step_coefficients"]
