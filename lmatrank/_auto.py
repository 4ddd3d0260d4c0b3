"""``method="auto"``: pick the cheapest method expected to reach the target.

Dense ``eigvalsh`` (:func:`lmatrank._exact.exact_rank`) answers any threshold
exactly and, below a few thousand rows, faster than anything matrix-free: it is
chosen first whenever its predicted time (:data:`EIGVALSH_SECONDS_PER_N3`
``n^3``, measured on a 2-core machine) is at most :data:`EXACT_SECONDS`, its
memory (three dense ``n x n`` float64 copies) fits ``max_memory``, and, for
operators that are not dense or sparse, its ``n`` products fit the budget.

The randomized sketch (Meier & Nakatsukasa, LAA 2024, arXiv:2105.07388;
:func:`lmatrank.spectral.sketch_rank`) is exact on exactly low-rank input and
needs only ``r + p`` products, but ``O(n (r + p))`` memory and
``O(n (r + p)^2)`` dense flops; BAOAB Langevin (:mod:`lmatrank.langevin._kinetic`)
needs ``O(n)`` memory per chain and a fixed product budget whatever the rank
(docs/numerics.md, "When a randomized sketch is cheaper"). The decision never commits large work
before it knows the work fits:

1. **Whole sketch fits.** If even a full-width sketch (``n`` columns) fits the
   caps below, the sketch runs directly (it stops at ``r + oversample``).
2. **First block.** Otherwise one block of ``min(n, 32)`` columns is sketched
   (products reused later); a deficient block reveals a small rank at once.
3. **Cheap pilot.** Otherwise a short single-chain BAOAB run
   (``PILOT_STEPS`` products after a short Lanczos) counts the eigenvalues above
   ``~4e-3 lambda_max``: a rough rank ``r0`` (it undercounts only the smallest
   eigenvalues). The sketch width needed is predicted as
   ``w = 1.25 (r0 + 2 stderr) + 2 oversample``.
4. **Caps.** The sketch is chosen when ``w`` products fit half of the
   remaining budget (the other half stays for a Langevin fall-back),
   ``sketch_bytes(n, w) <= max_memory`` and ``sketch_flops(n, w) <= max_flops``;
   it then grows up to the largest width the caps allow. Otherwise BAOAB
   Langevin runs on the remaining budget.

Neither the sketch nor Langevin is trusted past what it resolves: a sketch that
does not converge hands over to Langevin, and a Langevin run that cannot resolve
the threshold returns ``converged=False`` with an honest ``interval`` (and the
warning names ``method="exact"`` when that would fit in memory).

There is no fixed column cap: the caps are the product budget, the memory
budget and the flop budget. ``info["choice"]`` and ``info["reason"]`` record
the decision, ``info["pilot"]`` the pilot, ``info["detail"]`` the chosen
method's own ``info``; every product (first block, pilot) is in ``matvecs``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import numpy as np
import scipy.sparse

from ._errors import ConvergenceWarning
from ._checks import check_rng
from ._exact import count_eigenvalues, exact_rank
from .operators._base import _validate_sparse
from .langevin._estimator import DEFAULT_MAX_MATVECS, langevin_rank
from .spectral._sketch import (GrowingSketch, grow_sketch, sketch_bytes, sketch_flops,
                               sketch_result)

__all__ = ["DEFAULT_MAX_FLOPS", "DEFAULT_MAX_MEMORY", "EIGVALSH_SECONDS_PER_N3",
           "EXACT_SECONDS", "PILOT_STEPS", "SMALL_EXPLICIT_N", "auto_rank", "exact_fits",
           "small_explicit_rank"]

#: Seconds per n^3 of ``numpy.linalg.eigvalsh`` on a 2-core machine (OpenBLAS/LAPACK
#: ``dsyevd``: 6 s at n = 3,948 and 216 s at n = 10,617, i.e. 1.0e-10 to 1.8e-10).
EIGVALSH_SECONDS_PER_N3 = 1.5e-10
#: Longest predicted time of the exact method that ``auto`` accepts (about n = 5,800).
EXACT_SECONDS = 30.0
#: Dense BLAS-3 rate assumed for the sketch's flops on a 2-core machine.
DENSE_FLOPS_PER_SECOND = 3e10

#: Default memory budget of the sketch, bytes.
DEFAULT_MAX_MEMORY = 1 << 30
#: Default cap on the sketch's dense flops (``sketch_flops``): a few seconds of
#: BLAS-3 work on one core; above it BAOAB's fixed product budget is cheaper.
DEFAULT_MAX_FLOPS = 5e11
#: Steps of the single-chain BAOAB pilot that gives the rough rank.
PILOT_STEPS = 300
#: Backend of the pilot when none is given: a single chain gains little from compiled
#: kernels, and compiling them costs seconds on first use.
PILOT_BACKEND = "numpy"
#: Columns of the first sketch block.
FIRST_BLOCK = 32
#: Surplus columns that make the sketch rank deficient (its stopping rule).
OVERSAMPLE = 10
_GROWTH = 1.5
#: Explicit matrices up to this order go straight to ``eigvalsh`` (under a second on
#: 2 cores): there a probe, a first sketch block and the operator's copy cost a good
#: fraction of the answer, and a sketch could at best save that second.
SMALL_EXPLICIT_N = 2000


def _check_positive_int(name, value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} ({what}) must be an integer >= 1, got {value!r}")
    return int(value)


def small_explicit_rank(A, *, rtol, atol, rng, check_symmetry, max_memory=None):
    """``auto`` on a small, exactly symmetric float64 ndarray or scipy sparse matrix.

    The exact method, without the probe products of the general path: symmetry is
    checked by an exact comparison with the transpose, and the explicit entries need
    no measure of product noise. Returns None (the general path decides, and raises
    on bad input) unless the input is an ndarray or sparse matrix of order at most
    :data:`SMALL_EXPLICIT_N` with finite float64 entries of moderate size
    (``2**-32 <= max |a_ij| <= 2**32``), symmetric when `check_symmetry` is true, whose
    dense eigendecomposition fits `max_memory` (:func:`exact_bytes`).

    >>> est = small_explicit_rank(np.diag([3.0, 1.0, 0.0]), rtol=None, atol=None, rng=None,
    ...                           check_symmetry=True)
    >>> est.rank, est.info["choice"], est.matvecs
    (2, 'exact', 0)
    """
    if isinstance(A, np.ndarray):
        dense = A
    elif scipy.sparse.issparse(A) and A.format in ("csr", "csc") \
            and A.shape[0] <= SMALL_EXPLICIT_N and A.dtype == np.float64:
        try:
            dense = _validate_sparse(A).toarray()
        except ValueError:
            return None
    else:
        return None
    if dense is None or dense.ndim != 2 or dense.dtype != np.float64 \
            or dense.shape[0] != dense.shape[1] or not 0 < dense.shape[0] <= SMALL_EXPLICIT_N \
            or exact_bytes(dense.shape[0]) > (DEFAULT_MAX_MEMORY if max_memory is None
                                              else max_memory):
        return None
    largest = float(np.max(np.abs(dense)))
    if not 2.0 ** -32 <= largest <= 2.0 ** 32:  # zero, non-finite or in need of scaling
        return None
    if check_symmetry and not np.array_equal(dense, dense.T):
        return None
    if not (rng is None or type(rng) is int and rng >= 0):  # any such seed is valid
        check_rng(rng)  # validated (and a RandomState advanced) as on the general path
    reason = (f"a small explicit matrix (n = {dense.shape[0]} <= {SMALL_EXPLICIT_N}): dense "
              "eigvalsh is the cheapest answer")
    return count_eigenvalues(
        np.linalg.eigvalsh(dense), np.float64, rtol=rtol, atol=atol, method="auto",
        wrap_info=lambda info: dict(choice="exact", reason=reason, pilot={}, caps={},
                                    detail=info, threshold_source=info["threshold_source"]))


def _largest_width(n, products, memory, flops):
    """Largest sketch width within the product, memory and flop caps."""
    width = min(n, products)
    while width > 0 and (sketch_bytes(n, width, max(1, math.ceil(width / 3))) > memory
                         or sketch_flops(n, width) > flops):
        width = int(width * 0.9)
    return width


def exact_bytes(n):
    """Memory of the exact method: the dense float64 matrix, eigvalsh's copy and workspace."""
    return 3 * 8 * n * n


def exact_fits(op, *, max_matvecs, max_memory, seconds_per_product=0.0):
    """Whether dense ``eigvalsh`` fits: predicted time (densifying with ``n`` products for
    operators that are not dense or sparse, then eigvalsh) at most :data:`EXACT_SECONDS`,
    memory at most `max_memory`, products within the budget. Returns the predicted seconds,
    or None when it does not fit.

    >>> import numpy as np
    >>> from lmatrank.operators import as_operator
    >>> exact_fits(as_operator(np.eye(500)), max_matvecs=20_000, max_memory=1 << 30) < 0.1
    True
    >>> exact_fits(as_operator(np.eye(500)), max_matvecs=20_000, max_memory=1 << 20) is None
    True
    """
    n = op.n
    seconds = EIGVALSH_SECONDS_PER_N3 * n ** 3
    if op.kind not in ("dense", "sparse"):
        if n > max_matvecs - op.matvecs:
            return None
        seconds += n * seconds_per_product
    if seconds > EXACT_SECONDS or exact_bytes(n) > max_memory:
        return None
    return seconds


def auto_rank(op, *, rtol=None, atol=None, rng=None, max_matvecs=None, target_rse=None,
              max_memory=None, max_flops=None, backend=None, progress=False):
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
        Langevin's stopping target (default: stderr at most
        ``max(0.001 * estimate, 0.5)``; see :func:`lmatrank.langevin.langevin_rank`).
    max_memory : int, optional
        Byte budget of the sketch (default 1 GiB, :data:`DEFAULT_MAX_MEMORY`).
    max_flops : float, optional
        Dense-flop budget of the sketch (default :data:`DEFAULT_MAX_FLOPS`).
    backend : None, str or backend object, optional
        Backend of the sketch and of the Langevin pilot and run (None: chosen
        from the input, see :func:`lmatrank.backends.get_backend`).
    progress : bool or callable
        Langevin progress display.

    Returns
    -------
    RankEstimate
        ``method`` is ``"auto"``; ``info`` has ``choice`` (``"exact"``, ``"sketch"`` or
        ``"langevin"``), ``reason``, ``pilot`` (first block and pilot summary),
        ``caps`` and the chosen method's own ``info`` under ``detail``.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> rng = np.random.default_rng(0)
    >>> G = rng.standard_normal((300, 40))
    >>> est = lmatrank.estimate_rank(G @ G.T, method="auto", rng=1)
    >>> est.rank, est.info["choice"]
    (40, 'exact')
    >>> est = lmatrank.estimate_rank(G @ G.T, method="auto", rng=1, max_memory=1 << 20)
    >>> est.rank, est.info["choice"]
    (40, 'sketch')
    """
    gen = np.random.default_rng(rng)
    sketch_gen, pilot_gen, run_gen = gen.spawn(3)
    budget = _check_positive_int("max_matvecs", DEFAULT_MAX_MATVECS if max_matvecs is None
                                 else max_matvecs, "the product budget")
    memory = _check_positive_int("max_memory", DEFAULT_MAX_MEMORY if max_memory is None
                                 else max_memory, "bytes")
    flops = DEFAULT_MAX_FLOPS if max_flops is None else max_flops
    if isinstance(flops, bool) or not isinstance(flops, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(flops) and flops > 0):
        raise ValueError(f"max_flops must be a positive finite number, got {max_flops!r}")
    n = op.n
    caps = dict(max_matvecs=budget, max_memory=memory, max_flops=float(flops))
    pilot = dict()
    sketch = GrowingSketch(op, sketch_gen, max_memory=memory, backend=backend)
    grow_kwargs = dict(rtol=rtol, atol=atol, block_size=min(n, FIRST_BLOCK), growth=_GROWTH,
                       oversample=OVERSAMPLE, max_memory=memory)

    def remaining():
        return budget - op.matvecs

    def run_sketch(width_cap, reason):
        result = grow_sketch(sketch, first=min(n, FIRST_BLOCK, width_cap), width_cap=width_cap,
                             max_matvecs=budget, cap_reason=f"sketch width reached the cap "
                             f"{width_cap} (budget/memory/flops)", **grow_kwargs)
        est = sketch_result(sketch, result, rtol=rtol, atol=atol, oversample=OVERSAMPLE)
        return est, reason

    def finish_sketch(est, reason):
        return dataclasses.replace(est, method="auto", info=dict(
            choice="sketch", reason=reason, pilot=pilot, caps=caps, detail=est.info,
            threshold_source=est.info.get("threshold_source")))

    def run_exact(seconds, reason):
        est = exact_rank(op, rtol=rtol, atol=atol)
        return dataclasses.replace(est, method="auto", info=dict(
            choice="exact", reason=f"{reason} (predicted {seconds:.2g} s, "
            f"{exact_bytes(n) / 2**20:.0f} MiB)", pilot=pilot, caps=caps, detail=est.info,
            threshold_source=est.info["threshold_source"]))

    half = remaining() // 2
    first = min(n, FIRST_BLOCK)
    explicit = op.kind in ("dense", "sparse")
    exact_seconds = exact_fits(op, max_matvecs=budget, max_memory=memory)
    seconds_per_product = 0.0
    # 1. first block: small ranks are revealed at once, for a fraction of eigvalsh's cost
    if sketch_bytes(n, first, first) <= memory and first <= half \
            and not (exact_seconds is not None and n <= 4 * FIRST_BLOCK):
        start = time.perf_counter()
        sketch.grow(first)
        seconds_per_product = (time.perf_counter() - start) / first
        pilot["first_block"] = dict(width=sketch.width, rank=sketch.rank)
        if sketch.width - sketch.rank >= OVERSAMPLE or sketch.width >= n:
            est, reason = run_sketch(sketch.width, "the first sketch block is rank deficient")
            return finish_sketch(est, reason + f" (rank {sketch.rank} of {sketch.width} columns)")
    # 2. explicit matrices: dense eigvalsh whenever it fits (exact at every threshold, and
    #    for these sizes no matrix-free method is much cheaper)
    if explicit and exact_seconds is not None:
        sketch = None
        return run_exact(exact_seconds, "dense eigvalsh fits")
    exact_seconds = exact_fits(op, max_matvecs=budget, max_memory=memory,
                               seconds_per_product=seconds_per_product)
    why = None
    # 3. a full-width sketch fits every cap: nothing to decide
    if sketch_flops(n, n) <= flops and sketch_bytes(n, n, math.ceil(n / 3)) <= memory \
            and n - sketch.width <= half:
        est, reason = run_sketch(n, f"a full-width sketch (n = {n}) fits the budgets "
                                    "(products, memory, flops)")
        if est.converged:
            return finish_sketch(est, reason + f"; rank revealed with width "
                                               f"{est.info['sketch_width']}")
        why = f"full-width sketch did not converge ({sketch.width} columns)"
    # 4. cheap pilot: single-chain BAOAB gives a rough rank (counts lambda >~ 4e-3 lambda_max)
    if why is None:
        pilot_budget = op.matvecs + min(PILOT_STEPS + 100, max(0, remaining() // 10))
        rough = None
        if pilot_budget - op.matvecs >= 60:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                try:
                    p = langevin_rank(op, rtol=rtol, atol=atol, rng=pilot_gen, scheme="baoab",
                                      n_chains=1, max_matvecs=int(pilot_budget), target_rse=0.05,
                                      lanczos_steps=min(n, 30),
                                      backend=PILOT_BACKEND if backend is None else backend)
                    rough = (p.estimate, p.stderr)
                    pilot["langevin"] = dict(estimate=p.estimate, stderr=p.stderr,
                                             matvecs=p.matvecs, resolution=p.resolution)
                except ValueError as exc:  # budget too small for a pilot
                    pilot["langevin_error"] = str(exc)
        if rough is None and exact_seconds is not None:
            return run_exact(exact_seconds, "no room for a pilot; dense eigvalsh fits")
        if rough is None:
            why = "no room for a pilot; BAOAB Langevin on the remaining budget"
        else:
            predicted = int(math.ceil(1.25 * (rough[0] + 2 * rough[1]))) + 2 * OVERSAMPLE
            predicted = max(predicted, sketch.width + 1)
            pilot["predicted_width"] = predicted
            width_cap = _largest_width(n, remaining() // 2 + sketch.width, memory, flops)
            pilot["width_cap"] = width_cap
            fits = dict(products=predicted - sketch.width <= remaining() // 2,
                        memory=sketch_bytes(n, predicted, math.ceil(predicted / 3)) <= memory,
                        flops=sketch_flops(n, predicted) <= flops)
            pilot["fits"] = fits
            sketch_seconds = (predicted * seconds_per_product
                              + sketch_flops(n, predicted) / DENSE_FLOPS_PER_SECOND)
            sketch_fits = all(fits.values()) and width_cap > sketch.width
            if exact_seconds is not None and (not sketch_fits or exact_seconds < sketch_seconds):
                return run_exact(exact_seconds, f"pilot rank ~{rough[0]:.0f}: dense eigvalsh is "
                                 f"cheaper than a sketch (predicted {sketch_seconds:.2g} s)"
                                 if sketch_fits else f"pilot rank ~{rough[0]:.0f}: a sketch does "
                                 "not fit the budgets, dense eigvalsh does")
            if sketch_fits:
                est, reason = run_sketch(min(width_cap, n), (
                    f"pilot rank ~{rough[0]:.0f} +- {rough[1]:.0f}: predicted sketch width "
                    f"{predicted} fits the budgets (products, memory, flops)"))
                if est.converged:
                    return finish_sketch(est, reason)
                if exact_seconds is not None:
                    return run_exact(exact_seconds, "the sketch did not converge; dense "
                                     "eigvalsh fits")
                why = (f"sketch reached its cap of {sketch.width} columns without revealing "
                       f"the rank (lower bound {est.rank}); BAOAB Langevin on the remaining "
                       "budget")
            else:
                failed = [k for k, ok in fits.items() if not ok]
                why = (f"pilot rank ~{rough[0]:.0f} +- {rough[1]:.0f}: a sketch of width "
                       f"{predicted} would exceed the {', '.join(failed)} budget "
                       f"(memory {sketch_bytes(n, predicted, math.ceil(predicted / 3)):.3g} B, "
                       f"flops {sketch_flops(n, predicted):.3g}); BAOAB Langevin is cheaper")
    pilot["sketch_matvecs"] = sketch.width
    sketch = None  # release the basis before the long run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = langevin_rank(op, rtol=rtol, atol=atol, rng=run_gen, scheme="baoab",
                            max_matvecs=budget, target_rse=target_rse, backend=backend,
                            progress=progress)
    for w in caught:  # one warning: Langevin's own, with what auto knows about the alternatives
        message = str(w.message)
        if issubclass(w.category, ConvergenceWarning):
            message += "; " + _exact_advice(n, memory)
        warnings.warn(message, w.category, stacklevel=3)
    return dataclasses.replace(est, method="auto", info=dict(
        choice="langevin", reason=why, pilot=pilot, caps=caps, detail=est.info,
        threshold_source=est.info.get("threshold_source")))


def _exact_advice(n, memory):
    """What method="exact" would cost, for the warning of an unresolved Langevin run."""
    seconds = EIGVALSH_SECONDS_PER_N3 * n ** 3
    need = exact_bytes(n)
    fits = "fits" if need <= memory else "exceeds"
    return (f"method='exact' would answer exactly in about {seconds:.2g} s on 2 cores with "
            f"{need / 2**30:.2g} GiB of memory ({fits} max_memory={memory / 2**30:.2g} GiB)")
