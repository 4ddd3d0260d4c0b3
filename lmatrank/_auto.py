"""``method="auto"``: pick the cheapest method expected to reach the target.

Decision rule (notes/langevin_numerics.md §5):

1. Pilot = a capped randomized sketch (Meier & Nakatsukasa, LAA 2024,
   arXiv:2105.07388; :func:`lmatrank.spectral.sketch_rank`). For exactly or
   numerically low-rank ``S`` the sketch reveals the rank with ``~ r + 10``
   products, deterministically; it stops as soon as ``oversample`` columns
   are surplus. Its width is capped at ``SKETCH_MAX_WIDTH`` columns (the
   measured crossover with BAOAB at 1% accuracy is ``r ~ 500``), a quarter of
   the product budget and the memory budget.
2. If the sketch converged within the cap, its count is returned.
3. Otherwise the rank is large: Langevin with the BAOAB scheme
   (``O(sqrt(kappa))`` mixing, sequential stopping) runs on the remaining budget.

``info["choice"]`` and ``info["reason"]`` record the decision; the pilot's
products are included in ``matvecs``.
"""

from __future__ import annotations

import dataclasses

from .langevin._estimator import DEFAULT_MAX_MATVECS, langevin_rank

__all__ = ["SKETCH_MAX_WIDTH", "auto_rank"]

#: Largest sketch width the pilot tries (crossover with BAOAB at ~1% accuracy).
SKETCH_MAX_WIDTH = 512
#: Default memory budget of the sketch pilot, bytes.
DEFAULT_MAX_MEMORY = 1 << 30


def auto_rank(op, *, rtol=None, atol=None, rng=None, max_matvecs=None, target_rse=None,
              max_memory=None, backend=None, progress=False):
    """Estimate the rank with the cheapest suitable method (sketch or BAOAB Langevin).

    Parameters
    ----------
    op : CountingOperator
    rtol, atol : float, optional
        Threshold, passed to the chosen method.
    rng : seed or Generator
    max_matvecs : int, optional
        Total product budget (default: see
        :data:`lmatrank.langevin.DEFAULT_MAX_MATVECS`).
    target_rse : float, optional
        Relative standard error at which Langevin stops (default 0.005).
    max_memory : int, optional
        Byte budget of the sketch pilot (default 1 GiB).
    backend : str, optional
        Langevin backend.
    progress : bool or callable
        Langevin progress display.

    Returns
    -------
    RankEstimate
        ``method`` is ``"auto"``; ``info`` has ``choice`` (``"sketch"`` or
        ``"langevin"``), ``reason``, ``pilot`` (the sketch's summary) and the
        chosen method's own ``info`` under ``detail``.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> rng = np.random.default_rng(0)
    >>> G = rng.standard_normal((300, 40))
    >>> est = lmatrank.estimate_rank(G @ G.T, method="auto", rng=1)
    >>> est.rank, est.info["choice"]
    (40, 'sketch')
    """
    import numpy as np

    from .spectral import sketch_rank

    gen = np.random.default_rng(rng)
    pilot_gen, run_gen = gen.spawn(2)
    budget = DEFAULT_MAX_MATVECS if max_matvecs is None else max_matvecs
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"max_matvecs (the product budget) must be an integer >= 1, got {budget!r}")
    memory = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
    if isinstance(memory, bool) or not isinstance(memory, (int, np.integer)) or memory < 1:
        raise ValueError(f"max_memory must be a positive integer (bytes), got {memory!r}")
    n = op.n
    width_cap = int(min(n, SKETCH_MAX_WIDTH, max(1, (budget - op.matvecs) // 4),
                        memory // (3 * 8 * n)))
    pilot = None
    reason_pilot = None
    if width_cap >= min(n, 16):
        try:
            pilot = sketch_rank(op, rtol=rtol, atol=atol, rng=pilot_gen, max_rank=width_cap,
                                max_memory=memory, block_size=min(n, 32, width_cap))
        except ValueError as exc:  # sketch does not fit the budgets
            reason_pilot = str(exc)
    else:
        reason_pilot = f"sketch width cap {width_cap} too small (budget or memory)"
    pilot_summary = None if pilot is None else dict(
        rank=pilot.rank, converged=pilot.converged, width=pilot.info.get("sketch_width"),
        matvecs=pilot.matvecs)
    if pilot is not None and pilot.converged:
        reason = (f"sketch pilot converged: rank {pilot.rank} revealed with width "
                  f"{pilot.info.get('sketch_width')} <= cap {width_cap} (exact for low rank)")
        return dataclasses.replace(pilot, method="auto", info=dict(
            choice="sketch", reason=reason, pilot=pilot_summary, detail=pilot.info))
    why = reason_pilot or (f"rank exceeds the sketch cap of {width_cap} columns "
                           f"(pilot lower bound {pilot.rank}); BAOAB Langevin is cheaper there")
    est = langevin_rank(op, rtol=rtol, atol=atol, rng=run_gen, scheme="baoab",
                        max_matvecs=budget, target_rse=target_rse, backend=backend,
                        progress=progress)
    return dataclasses.replace(est, method="auto", info=dict(
        choice="langevin", reason=why, pilot=pilot_summary, detail=est.info))
