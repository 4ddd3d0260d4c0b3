"""Closed-form theory of preconditioned Langevin dynamics on a quadratic loss.

This module collects the exact, closed-form predictions behind the rank
estimator of

    Bar, Mulayoff, Michaeli, Talmon, "Preconditioned Langevin Dynamics Reveal
    the Hessian Rank" (AAAI 2024), referred to below as "the paper",

together with their exact discrete-time (Euler--Maruyama) counterparts. They
are used to choose parameters, to predict standard errors and to test the
stochastic estimators; nothing here draws random numbers.

Continuous time (the paper's eq. 3, with ``theta_0 = 0`` and
``f(theta) = 0.5 theta^T H theta``)::

    d theta = -G H theta dt + G Sigma^(1/2) dn

with ``G`` symmetric positive definite (SPD), ``Sigma`` the noise covariance
and ``H`` symmetric. Every formula is evaluated through the *symmetric
similarity* ``M = G^(1/2) H G^(1/2)`` (``G H = G^(1/2) M G^(-1/2)``) and the
transformed noise covariance ``Q = G^(1/2) Sigma G^(1/2)``; in the coordinates
``phi = G^(-1/2) theta`` the process is ``d phi = -M phi dt + Q^(1/2) dn`` and
``f = 0.5 phi^T M phi``. Only ``numpy.linalg.eigh`` is used, never a
non-symmetric eigensolver.

=============================  ==========================================
function                       paper
=============================  ==========================================
:func:`expected_loss`          Theorem 1, eq. (5) (corrected, see below)
:func:`stationary_loss`        Proposition 1, eqs. (6)-(7)
:func:`pd_stationary_loss`     Corollary 1, eq. (8)
:func:`rank_from_loss`         Corollary 2, eq. (9)
:func:`maximal_loss_preconditioner`  Corollary 3, eq. (15)
:func:`loss_rate`              eq. (13)
:func:`trace_slope`            eq. (14)
:func:`compare_preconditioners`  Proposition 3, eqs. (17)-(18), A.4
:func:`escape_time_bound`      Proposition 4, eq. (19)
=============================  ==========================================

Discrete time: the Euler--Maruyama (EM) recursion of eq. (21) with the
rank-revealing noise ``Sigma = sigma^2 G^-1``::

    theta_{k+1} = theta_k - eta G S theta_k + sqrt(eta) sigma G^(1/2) n_k

decouples, in the eigenbasis of ``M = G^(1/2) S G^(1/2)``, into independent
scalar AR(1) chains ``x' = a x + sqrt(eta) sigma xi`` with
``a = 1 - eta lambda``. :func:`em_expected_rank`, :func:`em_stationary_rank`,
:func:`em_filter`, :func:`em_resolution`, :func:`em_rank_variance` and
:func:`em_autocorrelation_time` are exact consequences of that recursion
(derivations in the docstrings, docs/theory.md and docs/numerics.md).

Note on Theorem 1 as printed
----------------------------
The paper prints ``E f(theta_t) = 1/4 Tr(Sigma G (I - exp(-2 G H t)))``. The
derivation in its appendix A.1 actually yields
``1/4 Tr(G Sigma (I - exp(-2 G H t)))``, which equals the symmetric form
``1/4 Tr(Q (I - exp(-2 M t)))`` used here. The printed and the correct forms
coincide when ``Sigma G = G Sigma`` (in particular for the rank-revealing
choice ``Sigma = sigma^2 G^-1``, for ``G = I`` and for ``t -> infinity`` with
``H`` positive definite) but differ for general ``G``, ``Sigma``.
"""

import math

import numpy as np

__all__ = [
    "expected_loss",
    "stationary_loss",
    "pd_stationary_loss",
    "rank_from_loss",
    "maximal_loss_preconditioner",
    "loss_rate",
    "trace_slope",
    "compare_preconditioners",
    "escape_time_bound",
    "em_filter",
    "em_resolution",
    "em_expected_rank",
    "em_stationary_rank",
    "em_rank_variance",
    "em_autocorrelation_time",
]

#: Relative asymmetry ``max|A - A^T| / max|A|`` above which a matrix is rejected.
_SYMMETRY_RTOL = 1e-10

#: ``n * u`` below which the stationary variance sum uses its power series.
_SERIES_THRESHOLD = 1e-3

_EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _as_real_array(value, name):
    """Return ``value`` as a float64 array, rejecting complex/non-numeric input."""
    array = np.asarray(value)
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, got complex dtype {array.dtype}")
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    return array.astype(np.float64)


def _as_square_matrix(value, name):
    matrix = _as_real_array(value, name)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got {matrix.ndim}-D")
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be square, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {matrix.shape})")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} contains non-finite values")
    return matrix


def _as_symmetric_matrix(value, name, size=None):
    """Validated, exactly symmetrised float64 copy of a symmetric matrix."""
    matrix = _as_square_matrix(value, name)
    if size is not None and matrix.shape[0] != size:
        raise ValueError(
            f"{name} has shape {matrix.shape}, expected ({size}, {size}) to match H"
        )
    scale = float(np.max(np.abs(matrix)))
    asymmetry = float(np.max(np.abs(matrix - matrix.T)))
    if asymmetry > _SYMMETRY_RTOL * scale:
        raise ValueError(
            f"{name} must be symmetric: max |{name} - {name}^T| = {asymmetry:.3g} "
            f"(max |{name}| = {scale:.3g})"
        )
    return 0.5 * (matrix + matrix.T)


def _rank_tolerance(eigenvalues):
    """numpy ``matrix_rank`` convention: ``n * eps * max|lambda|``."""
    if eigenvalues.size == 0:
        return 0.0
    return eigenvalues.size * _EPS * float(np.max(np.abs(eigenvalues)))


def _spd_eigh(value, name, size=None):
    """Eigen-decomposition of an SPD matrix; ValueError if not positive definite."""
    matrix = _as_symmetric_matrix(value, name, size)
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    if eigenvalues[0] <= _rank_tolerance(eigenvalues):
        raise ValueError(
            f"{name} must be positive definite: smallest eigenvalue is "
            f"{eigenvalues[0]:.3g} (largest {eigenvalues[-1]:.3g})"
        )
    return eigenvalues, eigenvectors


def _spd_sqrt(value, name, size=None):
    eigenvalues, eigenvectors = _spd_eigh(value, name, size)
    return (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T


def _psd_matrix(value, name, size=None):
    matrix = _as_symmetric_matrix(value, name, size)
    eigenvalues = np.linalg.eigvalsh(matrix)
    if eigenvalues[0] < -_rank_tolerance(eigenvalues):
        raise ValueError(
            f"{name} must be positive semidefinite: smallest eigenvalue is "
            f"{eigenvalues[0]:.3g}"
        )
    return matrix


def _positive_scalar(value, name):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive real number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return number


def _as_times(t):
    times = _as_real_array(t, "t")
    if not np.all(np.isfinite(times)):
        raise ValueError("t must be finite (use stationary_loss for t -> infinity)")
    if np.any(times < 0):
        raise ValueError(f"t must be >= 0, got min(t) = {float(np.min(times)):.3g}")
    return times


def _as_step_counts(k, name, minimum=0):
    steps = _as_real_array(k, name)
    if not np.all(np.isfinite(steps)) or np.any(steps != np.floor(steps)):
        raise ValueError(f"{name} must be integer-valued, got {k!r}")
    if np.any(steps < minimum):
        raise ValueError(f"{name} must be >= {minimum}, got {k!r}")
    return steps


def _as_eigenvalues(eigenvalues):
    values = np.atleast_1d(_as_real_array(eigenvalues, "eigenvalues"))
    if values.ndim != 1:
        raise ValueError(f"eigenvalues must be 1-D, got {values.ndim}-D")
    if not np.all(np.isfinite(values)):
        raise ValueError("eigenvalues contain non-finite values")
    return values


def _stable_step_products(eigenvalues, eta):
    """``eta * lambda`` checked to lie in the EM stability interval ``[0, 2)``."""
    products = eta * eigenvalues
    if products.size and np.min(products) < 0:
        raise ValueError(
            f"negative eigenvalue {float(np.min(eigenvalues)):.3g}: the EM chain diverges "
            "along it (no stationary state; use S^2 for indefinite S)"
        )
    if products.size and np.max(products) >= 2:
        raise ValueError(
            f"unstable step: eta * lambda_max = {float(np.max(products)):.6g} >= 2"
        )
    return products


# ---------------------------------------------------------------------------
# continuous time (paper, "Analyzing the Expected Loss" and after)
# ---------------------------------------------------------------------------


def _modal_quantities(H, G, Sigma, sigma2):
    """Eigenvalues ``lambda_i`` of ``M = G^(1/2) H G^(1/2)`` and ``q_i = u_i^T Q u_i``.

    ``u_i`` are the orthonormal eigenvectors of ``M`` and
    ``Q = G^(1/2) Sigma G^(1/2)`` (``Q = sigma2 I`` when ``Sigma`` is omitted).
    Every continuous-time formula is ``sum_i q_i phi(lambda_i)``.
    """
    H = _as_symmetric_matrix(H, "H")
    size = H.shape[0]
    if G is None:
        G_sqrt = None
        M = H
    else:
        G_sqrt = _spd_sqrt(G, "G", size)
        M = G_sqrt @ H @ G_sqrt
        M = 0.5 * (M + M.T)
    eigenvalues, eigenvectors = np.linalg.eigh(M)
    if Sigma is None:
        scale = 1.0 if sigma2 is None else _positive_scalar(sigma2, "sigma2")
        weights = np.full(size, scale)
    else:
        if sigma2 is not None:
            raise ValueError("give either Sigma or sigma2 (Sigma = sigma2 * G^-1), not both")
        Sigma = _psd_matrix(Sigma, "Sigma", size)
        Q = Sigma if G_sqrt is None else G_sqrt @ Sigma @ G_sqrt
        weights = np.einsum("ij,ij->j", eigenvectors, Q @ eigenvectors)
    return eigenvalues, weights


def _scalar_or_array(values, times):
    return float(values) if times.ndim == 0 else values


def expected_loss(H, t, *, G=None, Sigma=None, sigma2=None):
    """Expected loss of preconditioned Langevin dynamics at time ``t`` (Theorem 1).

    Exact value of ``E f(theta_t)`` for the SDE ``d theta = -G H theta dt +
    G Sigma^(1/2) dn`` started at ``theta_0 = 0`` with
    ``f(theta) = 0.5 theta^T H theta`` (paper, eq. 5, corrected)::

        E f(theta_t) = 1/4 Tr(Q (I - exp(-2 M t))),
        M = G^(1/2) H G^(1/2),  Q = G^(1/2) Sigma G^(1/2).

    Parameters
    ----------
    H : (n, n) array_like
        Symmetric Hessian; positive semidefinite or indefinite.
    t : float or array_like
        Time(s) ``>= 0``; the result is vectorised over ``t``.
    G : (n, n) array_like, optional
        SPD preconditioner. Default: identity.
    Sigma : (n, n) array_like, optional
        Symmetric positive semidefinite noise covariance. Default:
        ``sigma2 * G^-1`` (the rank-revealing choice, ``Q = sigma2 I``).
    sigma2 : float, optional
        Noise scale used when ``Sigma`` is omitted. Default 1.

    Returns
    -------
    float or ndarray
        ``E f(theta_t)``; a float for scalar ``t``, else an array shaped like ``t``.

    Raises
    ------
    ValueError
        If a matrix is not square, not symmetric, not finite or of mismatched
        size; if ``G`` is not positive definite or ``Sigma`` not positive
        semidefinite; if both ``Sigma`` and ``sigma2`` are given; if
        ``sigma2 <= 0``; if ``t`` is negative or not finite.

    Notes
    -----
    Derivation: with ``phi = G^(-1/2) theta`` the SDE becomes
    ``d phi = -M phi dt + Q^(1/2) dn`` and ``f = 0.5 phi^T M phi``. Ito's isometry
    gives ``Cov(phi_t) = int_0^t e^{-M s} Q e^{-M s} ds``, so, since ``M`` commutes
    with ``e^{-M s}``, ``E f = 1/2 Tr(Q int_0^t M e^{-2 M s} ds) =
    1/4 Tr(Q (I - e^{-2 M t}))``. With ``M = U diag(lambda) U^T`` this is
    ``1/4 sum_i q_i (1 - e^{-2 lambda_i t})``, ``q_i = u_i^T Q u_i``.

    The paper prints ``1/4 Tr(Sigma G (I - e^{-2 G H t}))``. Since
    ``e^{-2 G H t} G = G^(1/2) e^{-2 M t} G^(1/2)``, the correct general identity
    is ``1/4 Tr(G Sigma (I - e^{-2 G H t}))`` (which is also what appendix A.1
    computes); the two agree whenever ``Sigma G = G Sigma``, e.g. for
    ``Sigma = sigma^2 G^-1`` or ``G = I``, but not in general.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> H = np.diag([2.0, 1.0, 0.0])
    >>> theory.expected_loss(H, 0.0)
    0.0
    >>> np.round(theory.expected_loss(H, [0.5, 50.0]), 4)
    array([0.3742, 0.5   ])

    The large-``t`` value is ``sigma2 * rank(H) / 4`` (Corollary 2):

    >>> round(theory.expected_loss(H, 50.0, G=np.diag([1.0, 3.0, 0.5]), sigma2=2.0), 10)
    1.0
    """
    eigenvalues, weights = _modal_quantities(H, G, Sigma, sigma2)
    times = _as_times(t)
    with np.errstate(over="ignore"):
        filters = -np.expm1(-2.0 * times[..., None] * eigenvalues)
        values = 0.25 * (filters @ weights)
    return _scalar_or_array(values, times)


def loss_rate(H, t, *, G=None, Sigma=None, sigma2=None):
    """Time derivative of the expected loss (eq. 13).

    ``d/dt E f(theta_t) = 1/2 Tr(Q M exp(-2 M t))`` in the notation of
    :func:`expected_loss` (``M = G^(1/2) H G^(1/2)``, ``Q = G^(1/2) Sigma G^(1/2)``).

    Parameters
    ----------
    H : (n, n) array_like
        Symmetric Hessian (PSD or indefinite).
    t : float or array_like
        Time(s) ``>= 0``; vectorised.
    G, Sigma, sigma2
        As in :func:`expected_loss`.

    Returns
    -------
    float or ndarray
        The derivative at each ``t``.

    Raises
    ------
    ValueError
        As in :func:`expected_loss`.

    Notes
    -----
    Differentiating ``1/4 sum_i q_i (1 - e^{-2 lambda_i t})`` gives
    ``1/2 sum_i q_i lambda_i e^{-2 lambda_i t}``. The paper prints
    ``1/2 Tr(Sigma G G H e^{-2 G H t})``; as for Theorem 1 the general correct
    form is ``1/2 Tr(G Sigma G H e^{-2 G H t})``, and both agree when ``Sigma``
    and ``G`` commute. At ``t = 0`` the value is ``1/2 Tr(Sigma G H G)``, which
    for ``G = Sigma^(-1/2)`` is ``Tr(H)/2`` (eq. 14, :func:`trace_slope`).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> H = np.diag([2.0, 1.0, 0.0])
    >>> theory.loss_rate(H, 0.0)        # Tr(H)/2 for G = Sigma = I
    1.5
    >>> Sigma = np.diag([4.0, 1.0, 9.0])
    >>> G = np.diag([0.5, 1.0, 1.0 / 3.0])  # Sigma^(-1/2)
    >>> round(theory.loss_rate(H, 0.0, G=G, Sigma=Sigma), 12)
    1.5
    """
    eigenvalues, weights = _modal_quantities(H, G, Sigma, sigma2)
    times = _as_times(t)
    with np.errstate(over="ignore", invalid="ignore"):
        kernel = eigenvalues * np.exp(-2.0 * times[..., None] * eigenvalues)
        values = 0.5 * (kernel @ weights)
    return _scalar_or_array(values, times)


def trace_slope(H):
    """Initial slope of the expected loss for ``G = Sigma^(-1/2)`` (eq. 14): ``Tr(H)/2``.

    This is the value of :func:`loss_rate` (eq. 13) at ``t = 0`` with the
    preconditioner ``G = Sigma^(-1/2)``, for any SPD ``Sigma``; it links the
    expected loss to Hutchinson's trace estimator (paper, appendix C).

    Parameters
    ----------
    H : (n, n) array_like
        Symmetric matrix.

    Returns
    -------
    float
        ``Tr(H) / 2``.

    Raises
    ------
    ValueError
        If ``H`` is not a finite, square, symmetric real matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> theory.trace_slope(np.array([[2.0, 1.0], [1.0, -1.0]]))
    0.5
    """
    H = _as_symmetric_matrix(H, "H")
    return 0.5 * float(np.trace(H))


def stationary_loss(H, *, G=None, Sigma=None, sigma2=None, tol=None):
    """Large-time expected loss for a PSD Hessian (Proposition 1).

    ``lim_{t -> inf} E f(theta_t) = 1/4 Tr(Q P_+)`` where ``P_+`` is the
    orthogonal projector onto the range of ``M = G^(1/2) H G^(1/2)`` and
    ``Q = G^(1/2) Sigma G^(1/2)``.

    Parameters
    ----------
    H : (n, n) array_like
        Symmetric positive semidefinite Hessian.
    G, Sigma, sigma2
        As in :func:`expected_loss`.
    tol : float, optional
        Eigenvalues of ``M`` with ``|lambda| <= tol`` count as zero. Default: the
        ``numpy.linalg.matrix_rank`` convention ``n * eps * max|lambda|``.

    Returns
    -------
    float
        The stationary expected loss.

    Raises
    ------
    ValueError
        If ``H`` is indefinite (an eigenvalue of ``M`` below ``-tol``; the loss then
        diverges), if ``tol < 0``, or for the reasons listed in
        :func:`expected_loss`.

    Notes
    -----
    Paper eq. (6) writes ``1/4 Tr(Sigma G P J P^-1)`` with ``P`` the eigenvectors
    of ``G H``. Here ``P = G^(1/2) U`` and the correct limit of Theorem 1 is
    ``1/4 Tr(G^(1/2) Sigma G^(1/2) U J U^T) = 1/4 sum_{lambda_i > 0} q_i``; the
    printed form agrees with it when ``Sigma`` and ``G`` commute. For
    ``Sigma = sigma^2 G^-1`` it equals ``sigma^2 rank(H) / 4`` (Corollary 2).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> H = np.diag([3.0, 1e-3, 0.0, 0.0])
    >>> theory.stationary_loss(H, sigma2=2.0)     # sigma2 * rank / 4
    1.0
    >>> theory.stationary_loss(H, tol=1e-2)       # 1e-3 counted as zero
    0.25
    """
    eigenvalues, weights = _modal_quantities(H, G, Sigma, sigma2)
    if tol is None:
        tol = _rank_tolerance(eigenvalues)
    else:
        try:
            tol = float(tol)
        except (TypeError, ValueError):
            raise ValueError(f"tol must be a non-negative number, got {tol!r}") from None
        if not tol >= 0:
            raise ValueError(f"tol must be non-negative, got {tol!r}")
    if eigenvalues[0] < -tol:
        raise ValueError(
            "H must be positive semidefinite for a stationary loss: G^(1/2) H G^(1/2) has "
            f"eigenvalue {eigenvalues[0]:.3g} < -tol = {-tol:.3g} (the loss diverges; "
                "pass a larger tol if this is rounding)"
        )
    return 0.25 * float(np.sum(weights[eigenvalues > tol]))


def pd_stationary_loss(G, Sigma):
    """Stationary expected loss for a positive definite Hessian (Corollary 1, eq. 8).

    ``lim_{t -> inf} E f(theta_t) = Tr(Sigma G) / 4``, independent of ``H``.

    Parameters
    ----------
    G : (n, n) array_like
        SPD preconditioner.
    Sigma : (n, n) array_like
        Symmetric positive semidefinite noise covariance.

    Returns
    -------
    float
        ``Tr(Sigma G) / 4``.

    Raises
    ------
    ValueError
        If ``G`` is not SPD, ``Sigma`` is not symmetric PSD, or the shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> theory.pd_stationary_loss(np.eye(3), np.diag([1.0, 2.0, 5.0]))
    2.0
    """
    G_eigenvalues, G_eigenvectors = _spd_eigh(G, "G")
    G_matrix = (G_eigenvectors * G_eigenvalues) @ G_eigenvectors.T
    Sigma = _psd_matrix(Sigma, "Sigma", G_matrix.shape[0])
    return 0.25 * float(np.sum(Sigma * G_matrix))


def rank_from_loss(loss, sigma2):
    """Hessian rank implied by a stationary expected loss (Corollary 2, eq. 9).

    ``rank(H) = 4 E f / sigma^2`` when ``Sigma G = sigma^2 I``.

    Parameters
    ----------
    loss : float or array_like
        Stationary expected loss(es) (loss at the minimum already subtracted).
    sigma2 : float
        Noise scale ``sigma^2 > 0``.

    Returns
    -------
    float or ndarray
        ``4 * loss / sigma2`` (unrounded).

    Raises
    ------
    ValueError
        If ``sigma2 <= 0`` or ``loss`` is not finite.

    Examples
    --------
    >>> from lmatrank import theory
    >>> theory.rank_from_loss(0.5, 0.2)
    10.0
    """
    sigma2 = _positive_scalar(sigma2, "sigma2")
    losses = _as_real_array(loss, "loss")
    if not np.all(np.isfinite(losses)):
        raise ValueError("loss must be finite")
    ranks = 4.0 * losses / sigma2
    return float(ranks) if ranks.ndim == 0 else ranks


def maximal_loss_preconditioner(Sigma):
    """Unit-Frobenius preconditioner maximising the stationary loss (Corollary 3).

    ``argmax_{||G||_F = 1} Tr(Sigma G) = Sigma / ||Sigma||_F`` (the trace is the
    Frobenius inner product, so Cauchy--Schwarz gives the maximiser); the maximal
    value of :func:`pd_stationary_loss` is ``||Sigma||_F / 4``.

    Parameters
    ----------
    Sigma : (n, n) array_like
        SPD noise covariance (the result must itself be a valid, SPD preconditioner).

    Returns
    -------
    ndarray
        ``Sigma / ||Sigma||_F``.

    Raises
    ------
    ValueError
        If ``Sigma`` is not symmetric positive definite.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> theory.maximal_loss_preconditioner(np.diag([3.0, 4.0]))
    array([[0.6, 0. ],
           [0. , 0.8]])
    """
    _spd_eigh(Sigma, "Sigma")
    matrix = _as_symmetric_matrix(Sigma, "Sigma")
    return matrix / np.linalg.norm(matrix, "fro")


def compare_preconditioners(Sigma):
    """Stationary losses of ``G = I`` and ``G = Sigma^(-1/2)`` at equal norm (Proposition 3).

    Following the paper's appendix A.4, the identity is rescaled to
    ``G_1 = sqrt(Tr(Sigma^-1)/n) I`` so that ``||G_1||_F = ||G_2||_F`` with
    ``G_2 = Sigma^(-1/2)`` (both ``||.||_F^2 = Tr(Sigma^-1)``), and the
    PD-Hessian stationary losses (Corollary 1) are compared.

    Parameters
    ----------
    Sigma : (n, n) array_like
        SPD noise covariance.

    Returns
    -------
    dict
        ``"loss_identity"``: ``Tr(G_1 Sigma)/4 = sqrt(Tr(Sigma^-1)/n) Tr(Sigma)/4``;
        ``"loss_inverse_sqrt"``: ``Tr(Sigma^(1/2))/4``;
        ``"frobenius_norm"``: the common norm ``sqrt(Tr(Sigma^-1))``;
        ``"trace_exceeds_n"``: ``Tr(Sigma) > n`` (the paper's condition 17);
        ``"identity_larger"``: ``loss_identity > loss_inverse_sqrt`` beyond rounding;
        ``"unnormalised_loss_identity"``: ``Tr(Sigma)/4`` (``G = I``);
        ``"unnormalised_loss_inverse_sqrt"``: ``Tr(Sigma^(1/2))/4``;
        ``"unnormalised_identity_larger"``: whether ``Tr(Sigma) > Tr(Sigma^(1/2))``
        beyond rounding.

    Raises
    ------
    ValueError
        If ``Sigma`` is not symmetric positive definite.

    Notes
    -----
    Condition (17) does *not* decide the comparison at equal Frobenius norm.
    With ``s_i`` the eigenvalues of ``Sigma`` and means over ``i``,
    ``sqrt(mean(1/s)) mean(s) >= sqrt(mean(s)) >= mean(sqrt(s))`` (HM-AM, then
    Jensen), so ``loss_identity >= loss_inverse_sqrt`` for *every* SPD ``Sigma``,
    with equality iff ``Sigma`` is a multiple of ``I``. The paper's proof (39)
    ends at ``Tr(Sigma^(-1/2))`` where Corollary 1 gives ``Tr(Sigma^(1/2))`` for
    ``G_2``; its conclusion still holds, but for all ``Sigma``. The condition
    matters for the *unnormalised* pair ``G = I`` vs ``G = Sigma^(-1/2)``:
    ``Tr(Sigma^(1/2)) <= sqrt(n Tr(Sigma)) < Tr(Sigma)`` when ``Tr(Sigma) > n``
    (Cauchy--Schwarz), so there it is sufficient, though not necessary. The
    normalisation cancels in the comparison because the loss is linear in ``G``.
    The ``1/4`` of eq. (8) is kept (the paper's section drops it).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> result = theory.compare_preconditioners(np.diag([0.1, 0.2, 0.4]))
    >>> result["trace_exceeds_n"], result["identity_larger"]
    (False, True)
    >>> round(result["loss_identity"], 4), round(result["loss_inverse_sqrt"], 4)
    (0.4227, 0.349)
    """
    eigenvalues, _ = _spd_eigh(Sigma, "Sigma")
    size = eigenvalues.size
    rounding = 16 * size * _EPS
    scale = math.sqrt(float(np.mean(1.0 / eigenvalues)))
    trace = float(np.sum(eigenvalues))
    trace_sqrt = float(np.sum(np.sqrt(eigenvalues)))
    loss_identity = 0.25 * scale * trace
    loss_inverse_sqrt = 0.25 * trace_sqrt
    return {
        "loss_identity": loss_identity,
        "loss_inverse_sqrt": loss_inverse_sqrt,
        "frobenius_norm": math.sqrt(float(np.sum(1.0 / eigenvalues))),
        "trace_exceeds_n": bool(trace > size),
        "identity_larger": bool(loss_identity > loss_inverse_sqrt * (1 + rounding)),
        "unnormalised_loss_identity": 0.25 * trace,
        "unnormalised_loss_inverse_sqrt": loss_inverse_sqrt,
        "unnormalised_identity_larger": bool(trace > trace_sqrt * (1 + rounding)),
    }


def escape_time_bound(H, *, G=None, Sigma=None):
    """Upper bound on the escape time from a saddle point (Proposition 4, eq. 19).

    ``t_esc <= log(Tr(Sigma G) / lambda_min(Sigma G)) / |2 lambda_min(G H)|``:
    for every ``t`` above the bound, ``E f(theta_t) < f(theta_0) = 0``.

    Parameters
    ----------
    H : (n, n) array_like
        Symmetric Hessian with at least one negative eigenvalue (a saddle).
    G : (n, n) array_like, optional
        SPD preconditioner. Default: identity.
    Sigma : (n, n) array_like, optional
        SPD noise covariance. Default ``G^-1`` (the bound does not depend on the
        scale of ``Sigma``).

    Returns
    -------
    float
        The bound (0 when ``Sigma G`` is a multiple of ``I`` and ``n = 1``).

    Raises
    ------
    ValueError
        If ``G H`` has no negative eigenvalue (beyond rounding), if ``Sigma`` is
        not positive definite, or for the reasons listed in :func:`expected_loss`.

    Notes
    -----
    ``G H`` and ``Sigma G`` are evaluated through their symmetric similarities
    ``M = G^(1/2) H G^(1/2)`` and ``Q = G^(1/2) Sigma G^(1/2)``. The proof carries
    over to the corrected Theorem 1: ``Tr(Q e^{-2 M t}) > lambda_min(Q)
    lambda_max(e^{-2 M t})`` for ``n > 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> H = np.diag([1.0, -0.5])
    >>> bound = theory.escape_time_bound(H)        # log(2) / 1
    >>> round(bound, 6)
    0.693147
    >>> theory.expected_loss(H, 1.01 * bound) < 0
    True
    """
    H = _as_symmetric_matrix(H, "H")
    size = H.shape[0]
    if G is None:
        G_sqrt = None
        M = H
    else:
        G_sqrt = _spd_sqrt(G, "G", size)
        M = G_sqrt @ H @ G_sqrt
        M = 0.5 * (M + M.T)
    eigenvalues = np.linalg.eigvalsh(M)
    if not eigenvalues[0] < -_rank_tolerance(eigenvalues):
        raise ValueError(
            "H is not a saddle: G H has no negative eigenvalue "
            f"(smallest eigenvalue {eigenvalues[0]:.3g})"
        )
    if Sigma is None:
        noise_ratio = float(size)
    else:
        Sigma = _as_symmetric_matrix(Sigma, "Sigma", size)
        Q = Sigma if G_sqrt is None else G_sqrt @ Sigma @ G_sqrt
        noise_eigenvalues, _ = _spd_eigh(0.5 * (Q + Q.T), "Sigma G")
        noise_ratio = float(np.sum(noise_eigenvalues) / noise_eigenvalues[0])
    return math.log(noise_ratio) / abs(2.0 * float(eigenvalues[0]))


# ---------------------------------------------------------------------------
# discrete time: Euler--Maruyama (paper, eq. 21)
# ---------------------------------------------------------------------------


def _log_abs_contraction(products):
    """``log|1 - eta lambda|`` accurate for small and for near-2 ``eta lambda``."""
    result = np.empty_like(products)
    below = products < 1
    with np.errstate(divide="ignore"):
        result[below] = np.log1p(-products[below])
        result[~below] = np.log1p(products[~below] - 2.0)
    return result


def _one_minus_power(products, exponents):
    """``1 - |1 - eta lambda|^m`` with relative accuracy (``m = 0`` gives 0)."""
    log_abs = _log_abs_contraction(products)
    with np.errstate(invalid="ignore", over="ignore"):
        exponent = np.where(exponents == 0, 0.0, exponents * log_abs)
        return -np.expm1(exponent)


def em_filter(lam, eta, k):
    """EM spectral filter ``1 - (1 - eta lambda)^(2k)``.

    Mean contribution of an eigenvalue ``lambda`` of ``G S`` to the corrected
    rank observable after ``k`` EM steps from ``theta_0 = 0`` (see
    :func:`em_expected_rank`); the discrete counterpart of ``1 - exp(-2 lambda t)``.

    Parameters
    ----------
    lam : float or array_like
        Eigenvalue(s).
    eta : float
        Step size ``> 0``.
    k : int or array_like of int
        Number(s) of steps ``>= 0``; broadcast against ``lam``.

    Returns
    -------
    float or ndarray
        Filter values (in ``[0, 1]`` for ``0 <= eta lambda <= 2``).

    Raises
    ------
    ValueError
        If ``eta <= 0``, ``lam`` is not finite, or ``k`` is negative or not an integer.

    Notes
    -----
    Evaluated as ``-expm1(2 k log|1 - eta lambda|)``, which keeps full relative
    accuracy for ``eta lambda << 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> theory.em_filter([0.0, 0.25, 1.0], 1.0, 2)
    array([0.        , 0.68359375, 1.        ])
    """
    eta = _positive_scalar(eta, "eta")
    eigenvalues = _as_real_array(lam, "lam")
    if not np.all(np.isfinite(eigenvalues)):
        raise ValueError("lam contains non-finite values")
    steps = _as_step_counts(k, "k")
    products, steps = np.broadcast_arrays(eta * eigenvalues, steps)
    values = _one_minus_power(np.array(products, ndmin=1), 2.0 * np.array(steps, ndmin=1))
    return float(values[0]) if products.ndim == 0 else values.reshape(products.shape)


def em_resolution(eta, k, level=0.5):
    """Eigenvalue at which the EM filter after ``k`` steps equals ``level``.

    Solves ``1 - (1 - eta lambda)^(2k) = level`` on the monotone branch
    ``0 <= eta lambda <= 1``::

        lambda = (1 - (1 - level)^(1/(2k))) / eta  ~  log(1/(1-level)) / (2 eta k).

    Eigenvalues well above this count as 1, well below as 0.

    Parameters
    ----------
    eta : float
        Step size ``> 0``.
    k : int or array_like of int
        Number(s) of steps ``>= 1``.
    level : float, optional
        Filter level in ``(0, 1)``. Default 0.5.

    Returns
    -------
    float or ndarray
        The resolution eigenvalue(s), shaped like ``k``.

    Raises
    ------
    ValueError
        If ``eta <= 0``, ``k < 1`` or non-integer, or ``level`` is not in ``(0, 1)``.

    Examples
    --------
    >>> from lmatrank import theory
    >>> lam = theory.em_resolution(0.5, 100)
    >>> round(lam, 8)
    0.00691947
    >>> round(float(theory.em_filter(lam, 0.5, 100)), 12)
    0.5
    """
    eta = _positive_scalar(eta, "eta")
    steps = _as_step_counts(k, "k", minimum=1)
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}") from None
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    values = -np.expm1(math.log1p(-level) / (2.0 * steps)) / eta
    return float(values) if values.ndim == 0 else values


def em_expected_rank(eigenvalues, eta, k, *, corrected=True):
    """Exact mean of the EM rank observable after ``k`` steps from ``theta_0 = 0``.

    For the EM chain of eq. (21) with ``Sigma = sigma^2 G^-1``,

    * corrected observable
      ``(4/sigma^2) (0.5 theta^T S theta - (eta/4) (S theta)^T G (S theta))``:
      mean ``sum_i (1 - (1 - eta lambda_i)^(2k))``;
    * uncorrected observable ``(4/sigma^2) 0.5 theta^T S theta``:
      mean ``sum_i (1 - (1 - eta lambda_i)^(2k)) * 2 / (2 - eta lambda_i)``,

    where ``lambda_i`` are the eigenvalues of ``G S`` (compute them as
    ``eigvalsh(G^(1/2) S G^(1/2))`` or with Lanczos on that symmetric matrix).
    Zero eigenvalues contribute 0. Independent of ``sigma``.

    Parameters
    ----------
    eigenvalues : array_like, shape (n,)
        Eigenvalues of ``G S``.
    eta : float
        Step size ``> 0`` (any value: the transient formula holds also for
        unstable steps, where it grows without bound).
    k : int or array_like of int
        Step count(s) ``>= 0``.
    corrected : bool, optional
        Use the discretisation-corrected observable (default) or the plain one.

    Returns
    -------
    float or ndarray
        Mean of the observable, shaped like ``k``.

    Raises
    ------
    ValueError
        If ``eta <= 0``, the eigenvalues are not a finite 1-D array, or ``k`` is
        negative or not an integer.

    Notes
    -----
    In ``phi = G^(-1/2) theta`` the step is ``phi' = (I - eta M) phi +
    sqrt(eta) sigma xi`` with ``M = G^(1/2) S G^(1/2)``; per eigenmode
    ``x' = a x + sqrt(eta) sigma xi``, ``a = 1 - eta lambda``, so the variance
    obeys ``v_{k+1} = a^2 v_k + eta sigma^2``, ``v_0 = 0``, i.e.
    ``v_k = sigma^2 (1 - a^{2k}) / (lambda (2 - eta lambda))`` (using
    ``1 - a^2 = eta lambda (2 - eta lambda)``). Since
    ``theta^T S theta = phi^T M phi`` and ``(S theta)^T G (S theta) = phi^T M^2 phi``,
    the corrected observable weighs mode ``i`` by
    ``(4/sigma^2)(lambda/2 - eta lambda^2/4) = lambda (2 - eta lambda)/sigma^2``,
    which cancels the denominator exactly: mean ``1 - a^{2k}``. The
    uncorrected weight ``2 lambda/sigma^2`` leaves ``2/(2 - eta lambda)``
    (limit ``4k`` at ``eta lambda = 2``).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank import theory
    >>> lam = np.array([1.0, 0.5, 0.0])
    >>> theory.em_expected_rank(lam, 1.0, [0, 1, 3])
    array([0.      , 1.75    , 1.984375])
    >>> theory.em_expected_rank(lam, 1.0, 1, corrected=False)  # 1 * 2 + 0.75 * 4/3
    3.0
    """
    eta = _positive_scalar(eta, "eta")
    values = _as_eigenvalues(eigenvalues)
    steps = _as_step_counts(k, "k")
    products = eta * values
    two_k = 2.0 * steps[..., None]
    filters = _one_minus_power(products, two_k)
    if not corrected:
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = 2.0 / (2.0 - products)
            filters = np.where(products == 2.0, 2.0 * two_k, filters * gain)
    total = np.sum(filters, axis=-1)
    return float(total) if steps.ndim == 0 else total


def em_stationary_rank(eigenvalues, eta, *, corrected=True):
    """Stationary (``k -> infinity``) mean of the EM rank observable.

    Corrected observable: ``#{i: lambda_i > 0}`` = ``rank(S)`` exactly, for every
    stable step. Uncorrected: ``sum_{lambda_i > 0} 2 / (2 - eta lambda_i)``,
    biased upward and divergent as ``eta lambda_max -> 2``.

    Parameters
    ----------
    eigenvalues : array_like, shape (n,)
        Eigenvalues of ``G S``; must be ``>= 0``.
    eta : float
        Step size with ``0 < eta * lambda_max < 2``.
    corrected : bool, optional
        Corrected (default) or plain observable; see :func:`em_expected_rank`.

    Returns
    -------
    float
        The stationary mean.

    Raises
    ------
    ValueError
        If ``eta <= 0``, ``eta * lambda_max >= 2`` (unstable), an eigenvalue is
        negative (the chain diverges along it) or not finite.

    Notes
    -----
    Zero eigenvalues contribute exactly 0; any positive eigenvalue, however
    small, contributes in the limit, although the filter reaches it only after
    ``k >> 1/(eta lambda)`` steps (see :func:`em_resolution`).

    Examples
    --------
    >>> from lmatrank import theory
    >>> theory.em_stationary_rank([1.0, 0.5, 0.0], 1.5)
    2.0
    >>> theory.em_stationary_rank([1.0, 0.5, 0.0], 1.5, corrected=False)
    5.6
    """
    eta = _positive_scalar(eta, "eta")
    values = _as_eigenvalues(eigenvalues)
    products = _stable_step_products(values, eta)
    positive = products > 0
    if corrected:
        return float(np.count_nonzero(positive))
    return float(np.sum(2.0 / (2.0 - products[positive])))


def em_autocorrelation_time(eigenvalues, eta):
    """Integrated autocorrelation time of each mode of the EM rank observable.

    ``tau_i = (1 + a_i^2) / (1 - a_i^2)``, ``a_i = 1 - eta lambda_i``: the
    stationary lag-``l`` autocorrelation of the mode's contribution ``x_i^2`` is
    ``a_i^(2l)`` (Gaussian noise), and ``tau = 1 + 2 sum_{l>=1} a^(2l)``.
    ``tau ~ 1/(eta lambda)`` for small ``eta lambda``; ``tau = 1`` at ``eta lambda = 1``.

    Parameters
    ----------
    eigenvalues : array_like, shape (n,)
        Eigenvalues of ``G S`` (``>= 0``).
    eta : float
        Step size with ``eta * lambda_max < 2``.

    Returns
    -------
    ndarray
        ``tau_i`` per eigenvalue; ``inf`` for zero eigenvalues (those modes never
        equilibrate, although their corrected contribution is identically 0).

    Raises
    ------
    ValueError
        If ``eta <= 0``, the step is unstable, or an eigenvalue is negative.

    Examples
    --------
    >>> from lmatrank import theory
    >>> theory.em_autocorrelation_time([1.0, 0.5, 0.1], 1.0)
    array([1.        , 1.66666667, 9.52631579])
    """
    eta = _positive_scalar(eta, "eta")
    products = _stable_step_products(_as_eigenvalues(eigenvalues), eta)
    one_minus_r = products * (2.0 - products)
    with np.errstate(divide="ignore"):
        return (2.0 - one_minus_r) / one_minus_r


def _stationary_lag_sums(n_avg, one_minus_r, r, log_r):
    """``T = sum_{j,m=1..N} r^|j-m| = N + 2 sum_{l=1}^{N-1} (N - l) r^l`` per mode.

    Closed form ``(N u (1 + r) - 2 r (1 - r^N)) / u^2`` with ``u = 1 - r``; for
    ``N u < 1e-3`` (cancellation) the exact series
    ``2 sum_{j>=0} (-u)^j C(N+1, j+2) - N`` is summed instead.
    """
    u = one_minus_r
    result = np.empty_like(u)
    small = n_avg * u < _SERIES_THRESHOLD
    if np.any(~small):
        u_big, r_big = u[~small], r[~small]
        tail = -np.expm1(n_avg * log_r[~small])
        result[~small] = (n_avg * u_big * (1.0 + r_big) - 2.0 * r_big * tail) / u_big**2
    if np.any(small):
        u_small = u[small]
        term = np.full_like(u_small, 0.5 * n_avg * (n_avg + 1.0))  # C(N+1, 2)
        total = term.copy()
        for j in range(12):
            term = term * (-u_small) * (n_avg - 1.0 - j) / (j + 3.0)
            total += term
        result[small] = 2.0 * total - n_avg
    return result


def _transient_lag_deficit(k_burn, n_avg, one_minus_r, r, log_r):
    """``sum_{j,m in W} r^|j-m| z_min(j,m)``, ``z_j = 2 r^j - r^(2j)``, W = K..K+N-1."""
    u = one_minus_r
    last = k_burn + n_avg - 1.0

    def power(exponent):
        if exponent == 0:
            return np.ones_like(r)
        with np.errstate(invalid="ignore"):
            return np.exp(exponent * log_r)

    geometric_1 = -np.expm1(n_avg * log_r) / u  # sum_{l<N} r^l
    geometric_2 = -np.expm1(2.0 * n_avg * log_r) / (u * (1.0 + r))  # sum_{l<N} r^(2l)
    r_k = power(k_burn)
    sum_z = 2.0 * r_k * geometric_1 - r_k**2 * geometric_2
    sum_z_over_r = 2.0 * n_avg - r_k * geometric_1
    return ((1.0 + r) * sum_z - 2.0 * power(last + 1.0) * sum_z_over_r) / u


def _power_sum(exponent, upper):
    """``sum_{j=0}^{upper} j^exponent`` for exponent 2 or 3 (float, upper may be -1)."""
    if exponent == 2:
        return upper * (upper + 1.0) * (2.0 * upper + 1.0) / 6.0
    return (upper * (upper + 1.0) / 2.0) ** 2


def em_rank_variance(eigenvalues, eta, k_burn, n_avg, *, stationary=True):
    """Variance of one chain's time-averaged corrected rank observable (EM, Gaussian noise).

    The estimate is the average of the corrected observable
    ``(4/sigma^2)(0.5 theta^T S theta - (eta/4)(S theta)^T G (S theta))`` over the
    ``N = n_avg`` iterates ``theta_K, ..., theta_{K+N-1}`` (``K = k_burn``) of a
    single EM chain with Gaussian noise started at ``theta_0 = 0``.

    * ``stationary=True`` (default): the chain is taken to be in its stationary
      state during the window (accurate once ``k_burn * eta * lambda_min >> 1``;
      ``k_burn`` does not enter; a mode far from equilibrium counts as fully
      correlated, contributing up to 2)::

          Var = (2/N^2) sum_i [N + 2 sum_{l=1}^{N-1} (N - l) r_i^l],   r_i = a_i^2,

      summed in closed form ``(N u (1 + r) - 2 r (1 - r^N)) / u^2``,
      ``u = 1 - r = eta lambda (2 - eta lambda)``. For large ``N`` this is
      ``(2/N) sum_i tau_i`` (:func:`em_autocorrelation_time`).
    * ``stationary=False``: exact for the chain started at 0, including the
      burn-in transient (``Var`` then also depends on ``k_burn``).

    Parameters
    ----------
    eigenvalues : array_like, shape (n,)
        Eigenvalues of ``G S`` (``>= 0``).
    eta : float
        Step size with ``eta * lambda_max < 2``.
    k_burn : int
        Index of the first averaged iterate (``>= 0``).
    n_avg : int
        Number of averaged iterates (``>= 1``).
    stationary : bool, optional
        Stationary approximation (default) or exact transient formula.

    Returns
    -------
    float
        The variance, in rank units squared (independent of ``sigma``).

    Raises
    ------
    ValueError
        If ``eta <= 0``, the step is unstable, an eigenvalue is negative, or
        ``k_burn``/``n_avg`` are not integers in range.

    Notes
    -----
    Per mode the iterate ``x_j`` is Gaussian with variance ``v_j = s (1 - r^j)``
    (``s = sigma^2/(lambda(2 - eta lambda))``) and ``Cov(x_j, x_m) = a^(m-j) v_j``
    for ``m >= j``; Isserlis gives ``Cov(x_j^2, x_m^2) = 2 r^(m-j) v_j^2``. The
    corrected weight ``lambda(2 - eta lambda)/sigma^2 = 1/s`` normalises the mode
    to ``y_j = x_j^2/s`` with ``Cov(y_j, y_m) = 2 r^|j-m| (1 - r^min(j,m))^2``. So
    the formula above (also in docs/numerics.md, "Euler–Maruyama: variance and step size") is for the
    *corrected* observable: each stationary mode has variance exactly 2. The
    uncorrected observable weighs mode ``i`` by ``2/(2 - eta lambda_i)`` more, so
    its variance terms carry an extra factor ``4/(2 - eta lambda_i)^2``. Modes
    are independent because the noise is isotropic in the eigenbasis of
    ``G^(1/2) S G^(1/2)``. Zero eigenvalues contribute 0. With non-Gaussian
    noise (e.g. Rademacher) the fourth moments, hence the variance, differ
    (they are lower for Rademacher).

    The exact transient form subtracts from the stationary double sum
    ``sum_{j,m in W} r^|j-m| (2 r^min - r^(2 min))``, summed in closed form;
    modes with ``(K + N) u < 1e-3`` (far from equilibrium, contribution below
    ``2e-6``) use the leading term ``u^2 sum_{j,m in W} min(j,m)^2``.

    Examples
    --------
    >>> from lmatrank import theory
    >>> v = theory.em_rank_variance([1.0, 0.5, 0.1, 0.0], 1.0, 200, 1000)
    >>> round(v, 6)
    0.024294
    >>> round(2 / 1000 * float(theory.em_autocorrelation_time([1.0, 0.5, 0.1], 1.0).sum()), 6)
    0.024386
    """
    eta = _positive_scalar(eta, "eta")
    products = _stable_step_products(_as_eigenvalues(eigenvalues), eta)
    k_burn = float(_as_step_counts(k_burn, "k_burn"))
    n_avg = float(_as_step_counts(n_avg, "n_avg", minimum=1))
    products = products[products > 0]
    if products.size == 0:
        return 0.0
    one_minus_r = products * (2.0 - products)
    r = (1.0 - products) ** 2
    log_r = 2.0 * _log_abs_contraction(products)
    sums = _stationary_lag_sums(n_avg, one_minus_r, r, log_r)
    if not stationary:
        last = k_burn + n_avg - 1.0
        far = (last + 1.0) * one_minus_r < _SERIES_THRESHOLD
        near = ~far
        sums[near] -= _transient_lag_deficit(
            k_burn, n_avg, one_minus_r[near], r[near], log_r[near]
        )
        # far from equilibrium: T ~ u^2 sum_{j,m in W} min(j,m)^2
        #                        = u^2 sum_{j in W} j^2 (1 + 2 (last - j))
        square_sum = _power_sum(2, last) - _power_sum(2, k_burn - 1.0)
        cube_sum = _power_sum(3, last) - _power_sum(3, k_burn - 1.0)
        sums[far] = one_minus_r[far] ** 2 * ((2.0 * last + 1.0) * square_sum - 2.0 * cube_sum)
        sums = np.maximum(sums, 0.0)
    return float(2.0 / n_avg**2 * np.sum(sums))
