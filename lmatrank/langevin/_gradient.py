r"""Gradient-only Hessian rank of a general loss near a minimum (Algorithm 1).

Bar, Mulayoff, Michaeli & Talmon, "The Expected Loss of Preconditioned Langevin
Dynamics Reveals the Hessian Rank", AAAI 2024, section "Application to Hessian
Rank Estimation", eqs. (20)-(21) and Algorithm 1.

The dynamics run on the *real* loss ``L`` (not on a quadratic model), and need
only its value and gradient -- no Hessian-vector products:

    theta_{k+1} = theta_k - eta G grad L(theta_k) + sqrt(eta) sigma G^(1/2) xi_k      (eq. 21,
                                                                   Sigma = sigma^2 G^-1)

and the rank is read from the loss increase (eq. 20)

    r_hat = (4 / sigma^2) (<L(theta_k)> - L(theta_0)).

Discretisation correction (derivation; also docs/theory_gradient.md)
--------------------------------------------------------------------
Near a minimum write ``delta = theta - theta_0``, ``L(theta) - L(theta_0) =
0.5 delta^T H delta`` and ``grad L(theta) = H delta``. With ``phi = G^(-1/2)
delta`` and ``A = G^(1/2) H G^(1/2)`` (same spectrum as ``G H``, same rank as
``H``) the Euler-Maruyama step is ``phi' = (I - eta A) phi + sqrt(eta) sigma xi``.
In an eigenbasis of ``A`` each mode with ``lambda > 0`` is an AR(1) process with
coefficient ``a = 1 - eta lambda`` whose stationary variance solves
``c = a^2 c + eta sigma^2``, i.e. ``c = sigma^2 / (lambda (2 - eta lambda))``
(stable for ``eta lambda < 2``). Hence, summing over the ``r`` modes with
``lambda > 0`` (null modes contribute nothing to either term)

    E[L(theta) - L(theta_0)]      = 0.5 sum lambda c   = (sigma^2/4) sum 2 / (2 - eta lambda),
    E[(eta/4) g^T G g]             = (eta/4) sum lambda^2 c = (sigma^2/4) sum eta lambda / (2 - eta lambda),

with ``g = grad L(theta) = H delta`` (so ``g^T G g = phi^T A^2 phi``). Their
difference is exactly ``sigma^2 r / 4`` for every stable step. The corrected
estimator is therefore

    r_hat = (4 / sigma^2) < L(theta_k) - L(theta_0) - (eta/4) g_k^T G g_k >,

and the correction costs one dot product: ``g_k`` is the gradient the step
computes anyway. Started at ``theta_0`` the corrected mean after ``k`` steps is
``sum_i 1 - (1 - eta lambda_i)^(2k)`` exactly (the same polynomial filter as the
operator-based estimator), while the paper's uncorrected (20) tends to
``sum_i 2 / (2 - eta lambda_i) >= r`` -- a relative bias of about
``eta lambda_mean / 2``, large near the stability limit. On a non-quadratic loss
both are exact to second order; the cubic and quartic terms give a relative
bias ``O(sigma^2)`` (the walk's extent grows with ``sigma``), which the
quadratic-regime check below measures.

Quadratic-regime check
----------------------
For a quadratic loss the normalised observable's law does not depend on
``sigma`` (``theta - theta_0`` scales with ``sigma``). The chains are therefore
split into two independent groups run at ``sigma^2`` and ``sigma^2 / 4``; their
estimates must agree. When they differ by more than
``3 sqrt(se_1^2 + se_2^2)`` the loss is not quadratic on the scale the walk
explores (``sigma^2`` too large), or ``theta_0`` is not a stationary point (a
residual gradient ``g_0`` biases the estimate by about
``-(2/sigma^2) g_0^T H^+ g_0``, which also scales like ``1 / sigma^2``):
``info["nonquadratic"]`` is set, a :class:`NonQuadraticWarning` is issued and
the estimate of the smaller noise level is returned (``info["extrapolated"]``
holds the Richardson extrapolation ``(4 r(sigma^2/4) - r(sigma^2)) / 3``,
exact when the bias is linear in ``sigma^2``). Otherwise all chains are pooled.

Step size
---------
Default ``eta = 1.5 / (1.05 lambda_max(G H))`` -- below the stability limit
``2 / lambda_max`` with a margin for the curvature changing along the walk --
with ``lambda_max`` from Lanczos on ``G^(1/2) H G^(1/2)`` whose products are
central finite differences of the gradient,

    H v ~ (grad L(theta_0 + t v) - grad L(theta_0 - t v)) / (2 t),

``t ||v|| = eps^(1/3) max(||theta_0||, 1)`` with ``eps`` the machine epsilon of
the gradient's dtype (the usual optimal step of a central difference; error
``O(t^2)``; the gradient at ``theta_0`` cancels). Each such product costs two
gradient evaluations. A run that diverges with the automatic step is repeated
with the step halved (up to three times); with a user step it raises
:class:`lmatrank.DivergenceError`. A run never returns a number after a
non-finite or exploding loss.

Counting
--------
``RankEstimate.matvecs`` counts gradient evaluations (a block of ``c`` chains
counts ``c``), the products of this method; loss evaluations are reported in
``info["loss_evals"]``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._checkpoint import array_digest, operator_fingerprint
from .._checks import check_nonnegative_float
from .._errors import DivergedRun, DivergenceError
from .._result import RankEstimate, rounded_rank
from ..operators import as_preconditioner
from ..spectral import lanczos_extremes
from ._dynamics import _EmLog
from ._journal import open_journal

__all__ = ["NonQuadraticWarning", "adam_preconditioner", "hessian_rank"]

#: Default noise power sigma^2 (the paper's denoising-network value).
DEFAULT_SIGMA2 = 1e-5
#: Default number of steps per chain, K_tot, and of averaged steps, K_avg = 2/3 K_tot (paper ratio).
DEFAULT_N_STEPS = 3000
#: Automatic step: eta = STEP_FACTOR / (LAMBDA_MAX_INFLATION * lambda_max(G H)).
STEP_FACTOR = 1.5
LAMBDA_MAX_INFLATION = 1.05
#: Two-level disagreement (in combined standard errors) that flags a non-quadratic regime.
NONQUADRATIC_Z = 3.0
_MAX_BACKOFFS = 3


class NonQuadraticWarning(RuntimeWarning):
    """The estimate depends on ``sigma^2``: the quadratic model of the loss does not hold.

    Examples
    --------
    A quartic bowl is far from quadratic at ``sigma^2 = 2``:

    >>> import warnings, numpy as np, lmatrank
    >>> loss = lambda th: float(np.sum(th ** 2 + th ** 4))
    >>> grad = lambda th: 2 * th + 4 * th ** 3
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = lmatrank.hessian_rank(loss, grad, np.zeros(3), sigma2=2.0, rng=0)
    >>> est.info["nonquadratic"], any(issubclass(w.category, lmatrank.langevin.NonQuadraticWarning)
    ...                               for w in caught)
    (True, True)
    """


def adam_preconditioner(exp_avg_sq, *, step=None, beta2=0.999, eps=1e-8):
    """Adam's diagonal preconditioner ``G = 1 / (sqrt(v_hat) + eps)``.

    Parameters
    ----------
    exp_avg_sq : array_like
        Adam's second-moment state ``v`` (flattened in the parameter order of
        the loss), e.g. ``torch.optim.Adam``'s ``exp_avg_sq``.
    step : int, optional
        Number of Adam steps taken; when given, ``v`` is bias-corrected,
        ``v_hat = v / (1 - beta2**step)``. None: `exp_avg_sq` is already ``v_hat``.
    beta2, eps : float
        Adam's hyper-parameters.

    Returns
    -------
    ndarray
        The positive vector ``G`` for ``hessian_rank(..., preconditioner=G)``.

    Examples
    --------
    >>> from lmatrank.langevin import adam_preconditioner
    >>> adam_preconditioner([4.0, 0.0], eps=0.5).tolist()
    [0.4, 2.0]
    >>> adam_preconditioner([0.001], step=1, beta2=0.999, eps=0.0).round(6).tolist()
    [1.0]
    """
    v = np.asarray(exp_avg_sq, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"exp_avg_sq must be a non-empty 1-D array, got shape {v.shape}")
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError("exp_avg_sq must be finite and non-negative")
    if not (0.0 <= beta2 < 1.0):
        raise ValueError(f"beta2 must lie in [0, 1), got {beta2}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    if step is not None:
        if not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step must be a positive integer (Adam steps taken), got {step!r}")
        v = v / (1.0 - beta2 ** int(step))
    denominator = np.sqrt(v) + eps
    if np.any(denominator == 0):
        raise ValueError("exp_avg_sq has zero entries and eps = 0: G = 1/(sqrt(v_hat)+eps) is infinite")
    return 1.0 / denominator


class _Objective:
    """Loss and gradient on ``(P, c)`` blocks, counting gradient and loss evaluations."""

    def __init__(self, loss, grad, n_params, batched):
        if not callable(loss):
            raise TypeError(f"loss must be callable, got {type(loss).__name__}")
        if grad is not None and not callable(grad):
            raise TypeError(f"grad must be callable or None, got {type(grad).__name__}")
        self.loss, self.grad, self.n, self.batched = loss, grad, n_params, bool(batched)
        self.grad_evals = 0
        self.loss_evals = 0
        self.grad_dtype = None

    def _check_grad(self, G, c):
        G = np.asarray(G)
        if self.grad_dtype is None:
            self.grad_dtype = G.dtype
        G = G.astype(np.float64, copy=False)
        if self.batched:
            if G.shape != (self.n, c):
                raise ValueError(f"grad returned shape {G.shape} for a block of {c} chains; "
                                 f"expected ({self.n}, {c}) (batched=True)")
        elif G.shape != (self.n,):
            raise ValueError(f"grad returned shape {G.shape}, expected ({self.n},)")
        return G

    def _check_loss(self, v, c):
        v = np.asarray(v, dtype=np.float64)
        if self.batched:
            if v.shape != (c,):
                raise ValueError(f"loss returned shape {v.shape} for a block of {c} chains; "
                                 f"expected ({c},) (batched=True)")
        elif v.size != 1:
            raise ValueError(f"loss must return a scalar, got shape {v.shape}")
        return v.reshape(-1)

    def _call(self, Theta, need_loss):
        c = Theta.shape[1]
        if self.grad is None:  # loss returns (value, gradient)
            if self.batched:
                out = self.loss(Theta)
                values, grads = self._unpack(out)
                return self._check_loss(values, c), self._check_grad(grads, c)
            vals, cols = [], []
            for j in range(c):
                value, g = self._unpack(self.loss(Theta[:, j]))
                vals.append(self._check_loss(value, 1)[0])
                cols.append(self._check_grad(g, 1))
            return np.array(vals), np.stack(cols, axis=1)
        if self.batched:
            grads = self._check_grad(self.grad(Theta), c)
            values = self._check_loss(self.loss(Theta), c) if need_loss else None
            return values, grads
        grads = np.stack([self._check_grad(self.grad(Theta[:, j]), 1) for j in range(c)], axis=1)
        values = (np.array([self._check_loss(self.loss(Theta[:, j]), 1)[0] for j in range(c)])
                  if need_loss else None)
        return values, grads

    @staticmethod
    def _unpack(out):
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("with grad=None, loss(theta) must return a pair (value, gradient)")
        return out

    def values_and_gradients(self, Theta):
        values, grads = self._call(Theta, True)
        self.grad_evals += Theta.shape[1]
        self.loss_evals += Theta.shape[1]
        return values, grads

    def gradients(self, Theta):
        _, grads = self._call(Theta, False)
        self.grad_evals += Theta.shape[1]
        if self.grad is None:
            self.loss_evals += Theta.shape[1]
        return grads


class _Diverged(Exception):
    def __init__(self, step, value):
        super().__init__(f"diverged at step {step}")
        self.step, self.value = step, value


def _validate(theta0, sigma2, eta, n_steps, n_avg, n_chains, noise, corrected, check_quadratic):
    theta0 = np.asarray(theta0)
    if theta0.dtype.kind not in "biuf":
        raise TypeError(f"theta0 must be a real numeric vector, got dtype {theta0.dtype}")
    if theta0.ndim != 1 or theta0.size == 0:
        raise ValueError(f"theta0 must be a non-empty 1-D parameter vector, got shape {theta0.shape}")
    theta0 = theta0.astype(np.float64)
    if not np.all(np.isfinite(theta0)):
        raise ValueError("theta0 contains non-finite values (NaN or Inf)")
    for name, value in (("n_steps", n_steps), ("n_avg", n_avg), ("n_chains", n_chains)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("sigma2", sigma2), ("eta", eta)):
        if value is not None and not (isinstance(value, (int, float, np.floating, np.integer))
                                      and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if n_steps is not None and n_avg is not None and n_avg > n_steps:
        raise ValueError(f"n_avg={n_avg} exceeds n_steps={n_steps}")
    if n_steps is None and n_avg is not None and n_avg > DEFAULT_N_STEPS:
        raise ValueError(f"n_avg={n_avg} exceeds the default n_steps={DEFAULT_N_STEPS}; "
                         "pass n_steps too")
    if noise not in ("gaussian", "rademacher"):
        raise ValueError(f"noise must be 'gaussian' or 'rademacher', got {noise!r}")
    if not isinstance(corrected, (bool, np.bool_)):
        raise TypeError(f"corrected must be a bool, got {type(corrected).__name__}")
    if not isinstance(check_quadratic, (bool, np.bool_)):
        raise TypeError(f"check_quadratic must be a bool, got {type(check_quadratic).__name__}")
    return theta0


def _stderr(window):
    """Standard error of the grand mean of an ``(n_avg, c)`` block (chain or batch means)."""
    n_avg, c = window.shape
    if c >= 8:
        means = window.mean(axis=0)
        return float(means.std(ddof=1) / math.sqrt(c)), "chain means"
    batches = min(max(2, math.ceil(16 / c)), n_avg)
    if batches * c < 2:
        return math.nan, "none (one sample)"
    usable = (n_avg // batches) * batches
    means = window[n_avg - usable:].reshape(batches, usable // batches, c).mean(axis=1).ravel()
    return float(means.std(ddof=1) / math.sqrt(means.size)), f"batch means ({batches} per chain)"


def _resolution(eta, k):
    """Eigenvalue of ``G H`` whose mode is half counted after `k` steps."""
    if k <= 0:
        return math.inf
    return -math.expm1(math.log(0.5) / (2 * k)) / eta


def _curvature(obj, theta0, precond, gen, lanczos_steps, grad_dtype_eps, fd_step):
    """Lanczos on ``G^(1/2) H G^(1/2)`` with finite-difference Hessian products."""
    rel = np.cbrt(grad_dtype_eps) if fd_step is None else float(fd_step)
    scale = max(float(np.linalg.norm(theta0)), 1.0)

    def apply(X):
        V = precond.apply_factor(X.astype(np.float64))
        out = np.empty_like(V)
        for j in range(V.shape[1]):
            v = V[:, j]
            t = rel * scale / max(float(np.linalg.norm(v)), 1e-300)
            pair = np.stack([theta0 + t * v, theta0 - t * v], axis=1)
            G = obj.gradients(pair)
            out[:, j] = (G[:, 0] - G[:, 1]) / (2.0 * t)
        return precond.apply_factor_transpose(out)

    return lanczos_extremes(apply, theta0.size, rng=gen, n_steps=lanczos_steps)


def _run(obj, theta0, loss0, precond, eta, sig2_cols, n_steps, noise, corrected, gen,
         journal=None):
    """Euler-Maruyama chains from ``theta_0``; returns the rank observable and loss increase.

    With a `journal` each step's observables and loss increases are logged (one row of
    ``2 c`` values) and rows already logged are replayed (checkpoint and resume).
    """
    n, c = theta0.size, sig2_cols.size
    Theta = np.repeat(theta0[:, None], c, axis=1)
    trace = np.empty((n_steps, c))
    dloss = np.empty((n_steps, c))
    scale_obs = 4.0 / sig2_cols
    noise_std = np.sqrt(eta * sig2_cols)
    blowup = 100.0 * n + 1000.0
    try:
        log = _EmLog(journal, journal.open_call() if journal is not None else None, 2 * c,
                     n_steps)
    except DivergedRun as exc:  # a logged divergence, replayed
        raise _Diverged(exc.step, exc.value) from None
    if log.state is not None:
        Theta = np.array(log.state["theta"], dtype=np.float64)
    for k in range(log.replayed):
        trace[k], dloss[k] = log.replay_rows[k, :c], log.replay_rows[k, c:]
    for k in range(log.replayed, n_steps):
        values, grads = obj.values_and_gradients(Theta)
        Gg = precond.apply(grads)
        rise = values - loss0
        obs = scale_obs * rise
        if corrected:
            obs -= (eta / sig2_cols) * np.einsum("ij,ij->j", grads, Gg)
        worst = float(np.max(np.abs(obs)))
        if not (worst < blowup) or not np.all(np.isfinite(grads)):
            log.diverged(DivergedRun(k, worst))
            raise _Diverged(k, worst)
        trace[k] = obs
        dloss[k] = rise
        if noise == "gaussian":
            xi = gen.standard_normal((n, c))
        else:
            xi = gen.integers(0, 2, size=(n, c)).astype(np.float64) * 2.0 - 1.0
        Theta -= eta * Gg
        Theta += precond.apply_factor(xi) * noise_std
        log.push(np.concatenate([obs, rise]), k, Theta)
    log.close(Theta)
    return trace, dloss


class _Evaluations:
    """An objective seen by the checkpoint journal as an operator: its evaluation count
    (gradients; the walk evaluates the loss with every gradient) and, for the
    fingerprint, gradients at seeded points near ``theta_0`` (not counted)."""

    def __init__(self, obj, theta0):
        self.obj, self.theta0 = obj, theta0
        self.n, self.dtype = theta0.size, np.dtype(np.float64)
        self.delta = 1e-3 * max(1.0, float(np.max(np.abs(theta0))))

    @property
    def matvecs(self):
        return self.obj.grad_evals

    @matvecs.setter
    def matvecs(self, value):
        step = int(value) - self.obj.grad_evals
        self.obj.grad_evals += step
        self.obj.loss_evals += step

    def matmat(self, X):
        counts = self.obj.grad_evals, self.obj.loss_evals
        try:
            return self.obj.gradients(self.theta0[:, None] + self.delta * X)
        finally:
            self.obj.grad_evals, self.obj.loss_evals = counts


def _open_journal(checkpoint, every, obj, theta0, loss0, gen, precond, settings):
    """The journal of a gradient-only run (None without `checkpoint`)."""
    if checkpoint is None:
        return None
    evaluations = _Evaluations(obj, theta0)
    settings = dict(settings, theta0=array_digest(theta0), loss0=float(loss0),
                    preconditioner=None if precond.is_identity else operator_fingerprint(
                        precond.apply, theta0.size, np.float64))
    return open_journal(evaluations, gen, checkpoint,
                        every_seconds=check_nonnegative_float("checkpoint_every", every),
                        settings=settings, kind="hessian_langevin")


def hessian_rank(loss, grad, theta0, *, preconditioner=None, sigma2=None, eta=None,
                 n_steps=None, n_avg=None, n_chains=8, rng=None, batched=False,
                 noise="gaussian", corrected=True, check_quadratic=True,
                 lanczos_steps=None, fd_step=None, checkpoint=None, checkpoint_every=5.0):
    r"""Estimate the rank of the Hessian of `loss` at the minimum `theta0` from gradients only.

    Runs Algorithm 1 of Bar et al. (AAAI 2024): preconditioned Langevin dynamics
    (eq. 21) on the real loss with noise covariance ``sigma^2 G^-1``, and the
    estimator (20) with the exact discretisation correction (module docstring).

    Parameters
    ----------
    loss : callable
        ``loss(theta) -> float`` for ``theta`` of shape ``(P,)``; with
        ``batched=True``, ``loss(Theta) -> (c,)`` for ``Theta`` of shape
        ``(P, c)`` (one chain per column). With ``grad=None`` it must return the
        pair ``(value, gradient)`` (saves a forward pass in autodiff frameworks).
    grad : callable or None
        ``grad(theta) -> (P,)`` (batched: ``(P, c) -> (P, c)``), full-batch gradient.
    theta0 : array_like, shape (P,)
        The (approximate) minimum, e.g. trained network weights.
    preconditioner : None, positive 1-D array, SPD array or Preconditioner
        ``G`` (None: identity). For Adam's state use :func:`adam_preconditioner`
        (``G = 1 / (sqrt(v_hat) + eps)``) or :func:`lmatrank.torch.adam_preconditioner`.
    sigma2 : float
        Noise power ``sigma^2`` (default 1e-5, the paper's value for its denoising
        network). It must keep the walk in the quadratic region (paper: ``~ 1/d``);
        the quadratic-regime check tells when it does not.
    eta : float
        Step size (default ``1.5 / lambda_max(G H)`` from finite-difference Lanczos).
    n_steps, n_avg : int
        ``K_tot`` (default 3000) and ``K_avg`` (default ``2/3 K_tot``): steps per
        chain and steps averaged at the end.
    n_chains : int
        Independent chains (default 8). With `check_quadratic` the first
        ``ceil(c/2)`` run at ``sigma^2`` and the rest at ``sigma^2 / 4``.
    rng : seed or numpy.random.Generator
        Lanczos start vector and the Langevin noise (SPEC 7).
    batched : bool
        `loss` / `grad` accept ``(P, c)`` blocks of chains (one call per step).
    noise : {"gaussian", "rademacher"}
        Law of the unit-variance noise (same mean of the observable to second
        order; Gaussian is the paper's).
    corrected : bool
        Subtract the discretisation correction ``(eta/4) g^T G g`` (default
        True). False gives the paper's (20), biased up by ``sum 2/(2 - eta lambda_i)``.
    check_quadratic : bool
        Run the two-noise-level quadratic-regime check (needs ``n_chains >= 2``).
    lanczos_steps : int, optional
        Lanczos steps for ``lambda_max`` (default ``min(P, max(30, 2 sqrt P), 80)``).
        Only used when `eta` is None.
    fd_step : float, optional
        Relative finite-difference step ``t ||v|| / max(||theta_0||, 1)`` (default
        ``eps^(1/3)`` of the gradient's dtype).
    checkpoint : str or os.PathLike, optional
        File in which the walk is saved every `checkpoint_every` seconds (default 5)
        and at the end, and from which a rerun continues: bit-identical to an
        uninterrupted run with the same `rng` when `loss` and `grad` are deterministic
        (docs/checkpoint.md). The file records gradients at seeded points near
        `theta0`, a digest of `theta0`, the loss there and the options; a file written
        for another objective or other options raises :class:`~lmatrank.CheckpointError`.
        Needs a reproducible `rng` (not None).

    Returns
    -------
    RankEstimate
        ``method="hessian_langevin"``, ``matvecs`` = gradient evaluations
        (Lanczos included), ``threshold`` = eigenvalue of ``G H`` half counted at
        the start of the averaging window. ``info``: ``eta``, ``sigma2``,
        ``sigma2_levels``, ``estimates`` / ``stderrs`` per level, ``nonquadratic``
        (bool or None when unchecked), ``extrapolated``, ``lambda_max``,
        ``lambda_min`` (of ``G H``, None with a user `eta`), ``loss0``,
        ``grad_norm0``, ``rank_curve``, ``loss_curve`` (mean ``L - L_0`` per step),
        ``drift`` / ``drift_stderr``, ``burn_in``, ``n_steps``, ``n_avg``,
        ``n_chains``, ``grad_evals``, ``loss_evals``, ``backoffs``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments or callables returning the wrong shapes; non-finite loss
        or gradient at `theta0`.
    lmatrank.DivergenceError
        The walk diverged (with a user `eta`, or despite halving the automatic one).

    Warns
    -----
    NonQuadraticWarning
        The two noise levels disagree (see module docstring).

    Examples
    --------
    A loss whose Hessian at 0 is ``diag(3, 2, 1, 0, 0, 0)`` plus quartic terms:

    >>> import numpy as np
    >>> from lmatrank import hessian_rank
    >>> lam = np.array([3.0, 2.0, 1.0, 0.0, 0.0, 0.0])
    >>> loss = lambda t: 0.5 * lam @ t**2 + 0.1 * np.sum(lam * t**4)
    >>> grad = lambda t: lam * t + 0.4 * lam * t**3
    >>> est = hessian_rank(loss, grad, np.zeros(6), n_steps=1500, rng=0)
    >>> est.rank, bool(abs(est.estimate - 3) < 5 * est.stderr), est.info["nonquadratic"]
    (3, True, False)
    """
    theta0 = _validate(theta0, sigma2, eta, n_steps, n_avg, n_chains, noise, corrected,
                       check_quadratic)
    gen = np.random.default_rng(rng)
    n = theta0.size
    sigma2 = DEFAULT_SIGMA2 if sigma2 is None else float(sigma2)
    n_steps = DEFAULT_N_STEPS if n_steps is None else int(n_steps)
    n_avg = (2 * n_steps) // 3 if n_avg is None else int(n_avg)
    n_avg = max(n_avg, 1)
    burn = n_steps - n_avg
    c = int(n_chains)
    precond = as_preconditioner(preconditioner, n, np.float64)
    obj = _Objective(loss, grad, n, batched)

    values0, grads0 = obj.values_and_gradients(theta0[:, None])
    loss0, g0 = float(values0[0]), grads0[:, 0]
    if not (np.isfinite(loss0) and np.all(np.isfinite(g0))):
        raise ValueError("loss or gradient at theta0 is not finite")
    if checkpoint is not None and rng is None:
        raise ValueError("checkpoint needs a reproducible rng (an int seed, a SeedSequence or "
                         "a Generator)")
    journal = _open_journal(checkpoint, checkpoint_every, obj, theta0, loss0, gen, precond,
                            dict(sigma2=sigma2, eta=None if eta is None else float(eta),
                                 n_steps=n_steps, n_avg=n_avg, n_chains=c, batched=bool(batched),
                                 noise=noise, corrected=bool(corrected),
                                 check_quadratic=bool(check_quadratic),
                                 lanczos_steps=lanczos_steps,
                                 fd_step=None if fd_step is None else float(fd_step)))
    # finite-difference step from the precision the gradient is computed in
    grad_eps = float(np.finfo(np.float32 if obj.grad_dtype == np.float32 else np.float64).eps)

    bounds = None
    if eta is None:
        bounds = _curvature(obj, theta0, precond, gen, lanczos_steps, grad_eps, fd_step)
        if bounds["ritz_max"] <= 0.0:
            return RankEstimate(
                rank=0, estimate=0.0, stderr=0.0, threshold=0.0, matvecs=obj.grad_evals,
                method="hessian_langevin", converged=True,
                info=dict(reason="finite-difference Lanczos found no positive curvature at theta0",
                          lanczos=bounds, loss0=loss0, grad_norm0=float(np.linalg.norm(g0)),
                          grad_evals=obj.grad_evals, loss_evals=obj.loss_evals))
        if bounds["lambda_min"] < -1e-3 * bounds["lambda_max"]:
            warnings.warn(
                f"theta0 does not look like a minimum: the Hessian has negative curvature "
                f"(lambda_min(G H) ~ {bounds['lambda_min']:.3g}, lambda_max ~ "
                f"{bounds['lambda_max']:.3g}); the walk will leave it", RuntimeWarning, stacklevel=2)

    two_levels = check_quadratic and c >= 2
    n_high = (c + 1) // 2 if two_levels else c
    sig2_cols = np.full(c, sigma2)
    if two_levels:
        sig2_cols[n_high:] = sigma2 / 4.0

    attempts = []
    backoff = 1.0
    while True:
        step = float(eta) if eta is not None else \
            STEP_FACTOR / (LAMBDA_MAX_INFLATION * bounds["lambda_max"]) / backoff
        try:
            trace, dloss = _run(obj, theta0, loss0, precond, step, sig2_cols, n_steps, noise,
                                corrected, gen, journal)
            break
        except _Diverged as exc:
            attempts.append(dict(eta=step, step=exc.step, observable=exc.value))
            if eta is not None:
                raise DivergenceError(
                    f"Langevin walk diverged at step {exc.step} with eta={step:.4g} (rank "
                    f"observable {exc.value:.3g}): eta is too large for the curvature "
                    "(eta lambda_max(G H) must stay < 2), sigma2 is too large, or theta0 is "
                    "not a minimum; try eta=None or a smaller sigma2") from None
            if len(attempts) > _MAX_BACKOFFS:
                raise DivergenceError(
                    f"Langevin walk diverged {len(attempts)} times despite halving the step; "
                    f"attempts: {attempts}; sigma2={sigma2:g} may be far too large or theta0 "
                    "not a minimum") from None
            backoff *= 2.0

    if journal is not None:
        journal.finish()
    return _summarise(trace, dloss, step, sigma2, sig2_cols, n_high, two_levels, burn, n_avg,
                      bounds, loss0, g0, obj, attempts, noise, corrected)


def _summarise(trace, dloss, eta, sigma2, sig2_cols, n_high, two_levels, burn, n_avg, bounds,
               loss0, g0, obj, attempts, noise, corrected):
    window = trace[burn:]
    pooled = float(window.mean())
    pooled_se, se_method = _stderr(window)
    info = dict(scheme="euler-maruyama", eta=eta, sigma2=sigma2, noise=noise, corrected=corrected,
                n_chains=trace.shape[1], n_steps=trace.shape[0], n_avg=n_avg, burn_in=burn,
                loss0=loss0, grad_norm0=float(np.linalg.norm(g0)),
                lambda_max=None if bounds is None else bounds["lambda_max"],
                lambda_min=None if bounds is None else bounds["lambda_min"],
                eta_lambda_max=None if bounds is None else eta * bounds["lambda_max"],
                rank_curve=trace.mean(axis=1), loss_curve=dloss.mean(axis=1),
                stderr_method=se_method, backoffs=attempts)
    estimate, stderr = pooled, pooled_se
    if two_levels:
        hi, lo = window[:, :n_high], window[:, n_high:]
        r_hi, r_lo = float(hi.mean()), float(lo.mean())
        se_hi, _ = _stderr(hi)
        se_lo, _ = _stderr(lo)
        combined = math.hypot(se_hi, se_lo)
        nonquadratic = bool(abs(r_hi - r_lo) > NONQUADRATIC_Z * combined)
        info.update(sigma2_levels=(sigma2, sigma2 / 4.0), estimates=(r_hi, r_lo),
                    stderrs=(se_hi, se_lo), nonquadratic=nonquadratic,
                    extrapolated=(4.0 * r_lo - r_hi) / 3.0,
                    extrapolated_stderr=math.hypot(4.0 * se_lo, se_hi) / 3.0)
        if nonquadratic:
            estimate, stderr = r_lo, se_lo
            warnings.warn(
                f"Hessian-rank estimate depends on sigma^2: {r_hi:.2f} +- {se_hi:.2f} at "
                f"sigma2={sigma2:g} vs {r_lo:.2f} +- {se_lo:.2f} at sigma2={sigma2 / 4:g}; the loss "
                "is not quadratic on the scale of the walk (lower sigma2) or theta0 is not a "
                "stationary point. Returning the smaller-sigma2 estimate.",
                NonQuadraticWarning, stacklevel=3)
    else:
        info.update(sigma2_levels=(sigma2,), estimates=(pooled,), stderrs=(pooled_se,),
                    nonquadratic=None, extrapolated=None, extrapolated_stderr=None)
    half = n_avg // 2
    if half >= 2:
        diff = window[n_avg - half:].mean(axis=0) - window[:half].mean(axis=0)
        info["drift"] = float(diff.mean())
        info["drift_stderr"] = float(diff.std(ddof=1) / math.sqrt(diff.size)) \
            if diff.size > 1 else math.nan
    else:
        info["drift"], info["drift_stderr"] = math.nan, math.nan
    info["grad_evals"], info["loss_evals"] = obj.grad_evals, obj.loss_evals
    return RankEstimate(rank=rounded_rank(estimate, obj.n), estimate=estimate, stderr=stderr,
                        threshold=_resolution(eta, burn), matvecs=obj.grad_evals,
                        method="hessian_langevin", converged=True, info=info)
