"""Step schemes of preconditioned Langevin dynamics on a quadratic loss.

Euler–Maruyama (paper eq. 21 with ``grad L(theta) = S theta`` and
``Sigma = sigma^2 G^-1``)::

    theta <- theta - eta G S theta + sqrt(eta) sigma L xi,     L L^T = G

run on ``c`` chains at once (``theta`` is an ``(n, c)`` block, one block product
per step). The rank observable recorded at step ``k`` (before the update) is

    corrected:    (2 theta^T S theta - eta (S theta)^T G (S theta)) / sigma^2
    uncorrected:  2 theta^T S theta / sigma^2          (= 4 f(theta) / sigma^2, the paper's)

From ``theta_0 = 0`` the corrected observable has mean
``sum_i 1 - (1 - eta lambda_i)^(2k)`` exactly (``lambda_i`` the eigenvalues of
``G S``), which tends to ``rank(S)`` for every stable ``eta < 2 / lambda_max``;
the uncorrected one tends to ``sum_i 2 / (2 - eta lambda_i) >= rank`` (see
:mod:`lmatrank.theory` and notes/langevin_numerics.md §1).
"""

from __future__ import annotations

import numpy as np

from .._progress import RunningChainMean

__all__ = ["DivergedRun", "run_euler_maruyama"]


class DivergedRun(Exception):
    """Internal signal: the observable became non-finite or exploded at `step`."""

    def __init__(self, step, value):
        super().__init__(f"diverged at step {step} (observable {value!r})")
        self.step = step
        self.value = value


def run_euler_maruyama(op, backend, *, n_chains, n_steps, eta, sigma2, precond, noise, gen,
                       corrected=True, blowup=None, progress=None, burn_in=0, budget=None):
    """Simulate `n_steps` EM steps of `n_chains` chains from ``theta_0 = 0``.

    Returns
    -------
    trace : ndarray, shape (n_steps, n_chains), float64
        The rank observable of every chain at every step (row ``k`` is the
        state after ``k`` updates).

    `progress`, if not None, is called after every step as
    ``progress(op.matvecs, budget, estimate, stderr)`` with the running mean of
    the rows after `burn_in` (see :mod:`lmatrank._progress`).

    Raises
    ------
    DivergedRun
        When an observable is non-finite or exceeds `blowup` (default
        ``100 n + 1000``: a stable run's observable stays near ``rank <= n``).
    """
    n = op.n
    if blowup is None:
        blowup = 100.0 * n + 1000.0
    theta = np.zeros((n, n_chains), dtype=op.dtype)
    trace = np.empty((n_steps, n_chains), dtype=np.float64)
    noise_std = float(np.sqrt(eta * sigma2))
    inv_sigma2 = 1.0 / sigma2
    tracker = RunningChainMean(burn_in) if progress is not None else None
    for k in range(n_steps):
        s_theta = backend.matmat(op, theta)
        quad, gnorm = backend.em_update(theta, s_theta, eta=eta, noise_std=noise_std,
                                        precond=precond, noise=noise, gen=gen)
        row = 2.0 * quad - eta * gnorm if corrected else 2.0 * quad
        row *= inv_sigma2
        trace[k] = row
        worst = row.max()
        if not (worst < blowup) or not np.isfinite(row.min()):  # catches NaN too
            raise DivergedRun(k, float(worst))
        if tracker is not None:
            progress(op.matvecs, budget, *tracker.push(row))
    return trace
