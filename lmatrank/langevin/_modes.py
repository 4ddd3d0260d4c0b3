"""Exact per-mode moments of the Langevin rank observable on a quadratic loss.

For ``S`` symmetric PSD (or ``G S`` with a preconditioner) every eigenmode of the
linear dynamics evolves independently, so the mean of the rank observable and
its stationary autocorrelation follow from a scalar (Euler–Maruyama) or 2x2
(BAOAB) linear recursion per eigenvalue. These closed forms are used

- by the tests, to check the simulated transient and stationary means;
- by the tuning rules (:mod:`lmatrank.langevin._kinetic`) and bench/scaling.py, to predict bias
  and variance of a run on a model spectrum;
- by the rank-vs-threshold curve, to map a step count to the eigenvalue the
  filter half counts.

BAOAB (Leimkuhler & Matthews, "Rational construction of stochastic numerical
methods for molecular sampling", AMRX 2013, arXiv:1203.5428) on one mode with
eigenvalue ``lam``, temperature ``T``, step ``h`` and ``c = exp(-gamma h)``::

    B: p -= h/2 lam q;  A: q += h/2 p;  O: p = c p + sqrt(T (1 - c^2)) xi;
    A: q += h/2 p;      B: p -= h/2 lam q

samples ``q`` exactly from ``N(0, T / lam)`` at stationarity for every stable
step ``h^2 lam < 4`` and every friction, so ``lam q^2 / T`` has stationary mean
exactly 1 (the rank observable ``q^T S q / T`` has mean ``rank(S)``).
Everything here is in units where ``T = 1`` (the observable is scale free).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["baoab_mean_curve", "baoab_step_matrices", "baoab_stationary_covariance",
           "baoab_integrated_autocorrelation", "em_mean_curve", "baoab_half_count_eigenvalue",
           "em_window_filters", "baoab_window_filters"]


def baoab_step_matrices(lam, h, c):
    """Linear map of one BAOAB step per mode: ``z' = M z + b xi`` with ``z = (q, p)``.

    Returns
    -------
    M : ndarray, shape (m, 2, 2)
    b : ndarray, shape (m, 2)
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    m = lam.size
    one, zero = np.ones(m), np.zeros(m)
    kick = np.stack([np.stack([one, zero], -1), np.stack([-0.5 * h * lam, one], -1)], -2)
    drift = np.array([[1.0, 0.5 * h], [0.0, 1.0]])
    ou = np.array([[1.0, 0.0], [0.0, c]])
    M = kick @ drift @ ou @ drift @ kick
    b = (kick @ drift) @ np.array([0.0, math.sqrt(max(0.0, 1.0 - c * c))])
    return M, b


def baoab_stationary_covariance(lam, h, c):
    """Stationary covariance of ``(q, p)`` per mode (discrete Lyapunov equation), shape (m, 2, 2)."""
    M, b = baoab_step_matrices(lam, h, c)
    m = M.shape[0]
    out = np.empty((m, 2, 2))
    eye4 = np.eye(4)
    for i in range(m):
        kron = np.kron(M[i], M[i])
        rhs = np.outer(b[i], b[i]).ravel()
        out[i] = np.linalg.solve(eye4 - kron, rhs).reshape(2, 2)
    return out


def baoab_mean_curve(lam, h, c, n_steps, *, p0_variance=1.0, per_mode=False):
    """Exact mean of ``lam q_k^2 / T`` after ``k = 1..n_steps`` BAOAB steps from ``q_0 = 0``.

    ``p_0 ~ N(0, p0_variance T)``. Returns the sum over modes, shape ``(n_steps,)``
    (or per mode, shape ``(n_steps, m)`` with ``per_mode=True``). Row ``k-1`` is
    the state after ``k`` steps, the convention of :func:`run_baoab`'s trace.
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    M, b = baoab_step_matrices(lam, h, c)
    bb = b[:, :, None] * b[:, None, :]
    Mt = np.swapaxes(M, 1, 2)
    sigma = np.zeros((lam.size, 2, 2))
    sigma[:, 1, 1] = p0_variance
    out = np.empty((n_steps, lam.size))
    for k in range(n_steps):
        sigma = M @ sigma @ Mt + bb
        out[k] = lam * sigma[:, 0, 0]
    return out if per_mode else out.sum(axis=1)


def baoab_integrated_autocorrelation(lam, h, c, *, max_lag=None):
    """Integrated autocorrelation time (in steps) of ``lam q^2`` at stationarity, per mode.

    For Gaussian noise ``Cov(q_{k+l}^2, q_k^2) = 2 (M^l Sigma)_{qq}^2``, so
    ``tau = 1 + 2 sum_{l >= 1} ((M^l Sigma)_qq / Sigma_qq)^2``. Summed until
    the terms fall below 1e-10 or `max_lag` (default ``50 / (1 - |rho|)`` style
    cut-off of 10^6 lags).
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    M, _ = baoab_step_matrices(lam, h, c)
    sigma = baoab_stationary_covariance(lam, h, c)
    var_q = sigma[:, 0, 0]
    tau = np.ones(lam.size)
    cur = sigma.copy()
    max_lag = 1_000_000 if max_lag is None else int(max_lag)
    active = np.ones(lam.size, dtype=bool)
    quiet = np.zeros(lam.size, dtype=int)
    for _ in range(max_lag):
        cur[active] = M[active] @ cur[active]
        rho2 = (cur[active, 0, 0] / var_q[active]) ** 2
        tau[active] += 2.0 * rho2
        small = rho2 < 1e-10
        idx = np.flatnonzero(active)
        quiet[idx] = np.where(small, quiet[idx] + 1, 0)
        active[idx[quiet[idx] > 8]] = False
        if not active.any():
            break
    return tau


def em_mean_curve(lam, eta, n_steps):
    """Exact mean of the corrected EM observable at ``k = 0..n_steps-1``: ``sum 1 - (1 - eta lam)^(2k)``."""
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    k = np.arange(n_steps)[:, None]
    return (1.0 - (1.0 - eta * lam[None, :]) ** (2 * k)).sum(axis=1)


def baoab_half_count_eigenvalue(h, c, n_steps, *, lam_max, p0_variance=1.0, grid=400):
    """Eigenvalue whose mode is counted half after ``k`` steps, for ``k = 1..n_steps``.

    The window-free (snapshot) half-count point of the exact mean
    ``lam q_k^2 / T`` started from ``q_0 = 0``: for each ``k`` the smallest
    ``lam`` on a log grid in ``[lam_max * 1e-14, lam_max]`` whose running
    average over steps ``1..k`` reaches 1/2 (the running average removes the
    oscillation of underdamped modes). Returns an array of shape (n_steps,)
    (``inf`` where no grid eigenvalue is half counted yet).
    """
    lams = lam_max * np.logspace(-14, 0, grid)
    curves = baoab_mean_curve(lams, h, c, n_steps, p0_variance=p0_variance, per_mode=True)
    running = np.cumsum(curves, axis=0) / np.arange(1, n_steps + 1)[:, None]
    half = running >= 0.5
    out = np.full(n_steps, np.inf)
    any_half = half.any(axis=1)
    first = np.argmax(half, axis=1)
    out[any_half] = lams[first[any_half]]
    return out


def em_window_filters(lam, eta, windows, *, corrected=True):
    """Expected window means of one EM mode's rank observable, shape ``(K, len(lam))``.

    Row ``k`` of an EM trace is the observable of the state after ``k`` updates from
    ``theta_0 = 0``; its mean per mode is ``phi_k = 1 - r^k`` with ``r = (1 - eta
    lam)^2`` (corrected observable) or ``2 (1 - r^k) / (2 - eta lam)`` (uncorrected:
    the paper's, biased upwards near the stability limit). Entry ``(j, i)`` is the mean
    of ``phi_k(lam_i)`` over the rows ``a_j <= k < b_j`` of ``windows[j] = (a_j, b_j)``
    (closed-form geometric sums; exact for negative ``lam`` too).

    >>> import numpy as np
    >>> lam = np.array([0.0, 0.3, 1.0])
    >>> f = em_window_filters(lam, 1.0, [(0, 1), (2, 3), (0, 4)])
    >>> rows = 1.0 - (1.0 - lam) ** (2 * np.arange(4))[:, None]
    >>> bool(np.allclose(f, [rows[0], rows[2], rows[:4].mean(axis=0)]))
    True
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    x = eta * lam
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lg = 2.0 * np.where(x < 1.0, np.log1p(-np.minimum(x, 1.0 - 1e-300)),
                            np.log(np.abs(x - 1.0)))  # log r (-inf at x = 1: r = 0)
    out = np.empty((len(windows), lam.size))
    for j, (a, b) in enumerate(windows):
        length = float(b - a)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            ratio = np.where(lg == 0.0, length, np.expm1(length * lg) / np.expm1(lg))
            ra = np.where(a == 0, 1.0, np.exp(a * lg))
            total = length - ra * ratio  # sum_{k=a}^{b-1} 1 - r^k
        total = np.where(np.isneginf(lg), length - (1.0 if a == 0 else 0.0), total)
        out[j] = total / length
    if not corrected:
        with np.errstate(divide="ignore", invalid="ignore"):
            out *= 2.0 / (2.0 - x)
    return out


def _affine_baoab(lam, h, c):
    """6x6 affine map of one BAOAB step on ``(vec Sigma, 1, running sum of lam Sigma_qq)``."""
    M, b = baoab_step_matrices(lam, h, c)
    m = lam.size
    K = np.einsum("mij,mkl->mikjl", M, M).reshape(m, 4, 4)  # vec(M X M^T) = (M kron M) vec X
    bb = (b[:, :, None] * b[:, None, :]).reshape(m, 4)
    A = np.zeros((m, 6, 6))
    A[:, :4, :4] = K
    A[:, :4, 4] = bb
    A[:, 4, 4] = 1.0
    A[:, 5, :4] = lam[:, None] * K[:, 0, :]
    A[:, 5, 4] = lam * bb[:, 0]
    A[:, 5, 5] = 1.0
    return A



def _advance(state, powers, delta):
    """``A^delta state`` for a batch of modes by binary powering; ``powers[k] = A^(2^k)``
    (extended in place as needed, so segments reuse the squarings)."""
    k = 0
    while delta:
        if k == len(powers):
            powers.append(powers[-1] @ powers[-1])
        if delta & 1:
            state = np.einsum("mij,mj->mi", powers[k], state)
        delta >>= 1
        k += 1
    return state

def baoab_window_filters(lam, h, segments, windows, *, p0_variance=1.0):
    """Expected window means of one BAOAB mode's rank observable, shape ``(K, len(lam))``.

    The run starts at ``q_0 = 0``, ``p_0 ~ N(0, p0_variance T)`` and row ``k`` of its
    trace is ``lam q^2 / T`` after ``k + 1`` steps (:class:`._dynamics.BaoabChains`).
    `segments` is a list of ``(steps, c)``: the friction ``c = exp(-gamma h)`` of each
    stretch of the run. Entry ``(j, i)`` is the mean of the exact per-mode mean over rows
    ``a_j <= k < b_j`` of ``windows[j] = (a_j, b_j)``: the covariance recursion
    ``Sigma' = M Sigma M^T + b b^T`` with a running sum, as one affine map whose powers
    are taken by repeated squaring (cost ``O(log steps)`` per window, any run length).

    >>> import numpy as np
    >>> lam = np.array([1e-4, 0.01, 0.5])
    >>> f = baoab_window_filters(lam, 1.9, [(300, 0.9)], [(0, 1), (99, 300)])
    >>> rows = baoab_mean_curve(lam, 1.9, 0.9, 300, per_mode=True)
    >>> bool(np.allclose(f, [rows[0], rows[99:].mean(axis=0)]))
    True
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    m = lam.size
    times = sorted({int(t) for w in windows for t in w})  # row index r <-> r steps done
    state = np.zeros((m, 6))
    state[:, 3] = p0_variance
    state[:, 4] = 1.0
    acc = {}
    done, ti = 0, 0
    while ti < len(times) and times[ti] <= 0:
        acc[times[ti]] = np.zeros(m)
        ti += 1
    for steps, c in segments:
        end = done + int(steps)
        if ti >= len(times):
            break
        A = _affine_baoab(lam, h, float(c))
        powers = [A]  # powers[k] = A^(2^k), built as needed
        while ti < len(times) and times[ti] <= end:
            state = _advance(state, powers, times[ti] - done)
            done = times[ti]
            acc[done] = state[:, 5].copy()
            ti += 1
        if done < end and ti < len(times):  # carry the state to the end of the segment
            state = _advance(state, powers, end - done)
            done = end
    out = np.empty((len(windows), m))
    for j, (a, b) in enumerate(windows):
        out[j] = (acc[int(b)] - acc[int(a)]) / float(b - a)
    return out
