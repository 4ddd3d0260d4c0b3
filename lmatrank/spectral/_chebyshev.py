r"""Chebyshev expansions of spectral functions: damping, step filters, moments, KPM DOS.

The building blocks of the Ubaru–Saad rank estimator and of the kernel
polynomial method (KPM) for the density of states (DOS), following

- S. Ubaru and Y. Saad, "Fast methods for estimating the numerical rank of
  large matrices", ICML 2016; S. Ubaru, Y. Saad and A.-K. Seghouane, Neural
  Computation 29(5), 2017 (arXiv:1608.05754);
- L. Lin, Y. Saad and C. Yang, "Approximating spectral densities of large
  matrices", SIAM Review 58(1), 2016 (Jackson / Lanczos sigma damping, KPM);
- A. Weiße, G. Wellein, A. Alvermann and H. Fehske, "The kernel polynomial
  method", Rev. Mod. Phys. 78, 2006 (moment doubling).

A symmetric ``A`` with spectrum in ``[lmin, lmax]`` is mapped to
``B = (A - c I) / h`` with ``c = (lmax + lmin) / 2``, ``h = (lmax - lmin) / 2``,
whose spectrum lies in ``[-1, 1]``. For a block of probes ``V`` (one column per
probe) the moments ``Y[k, l] = v_l^T T_k(B) v_l`` come from the three-term
recurrence ``W_{k+1} = 2 B W_k - W_{k-1}``: one block product per degree for all
probes together. The blocks ``W_k`` may live in any array namespace ``xp``
(e.g. CuPy, see :func:`chebyshev_moments`); the moments are reduced there and
cross to the host once, as one ``(m + 1, n_probes)`` array.
"""

from __future__ import annotations

import numpy as np

from ._arrays import to_host

__all__ = ["jackson_damping", "sigma_damping", "damping_coefficients", "step_coefficients",
           "chebyshev_moments", "chebyshev_series", "kpm_grid", "kpm_dos",
           "count_from_moments"]


def _check_degree(degree):
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
        raise ValueError(f"degree must be an integer >= 1, got {degree!r}")
    return int(degree)


def jackson_damping(degree):
    r"""Jackson damping factors ``g_0 .. g_m`` for a degree-``m`` expansion.

    With ``theta = pi / (m + 2)``::

        g_k = [(1 - k/(m+2)) sin(theta) cos(k theta) + cos(theta) sin(k theta)/(m+2)] / sin(theta)

    (Lin, Saad & Yang 2016, eq. 3.10). ``g_0 = 1`` and the factors decrease to
    nearly 0 at ``k = m``.

    Examples
    --------
    >>> from lmatrank.spectral import jackson_damping
    >>> g = jackson_damping(4)
    >>> float(g[0]), g.shape
    (1.0, (5,))
    """
    m = _check_degree(degree)
    k = np.arange(m + 1)
    theta = np.pi / (m + 2)
    return ((1 - k / (m + 2)) * np.sin(theta) * np.cos(k * theta)
            + np.cos(theta) * np.sin(k * theta) / (m + 2)) / np.sin(theta)


def sigma_damping(degree):
    r"""Lanczos sigma factors: ``g_0 = 1``, ``g_k = sin(k theta)/(k theta)``, ``theta = pi/(m+1)``.

    Examples
    --------
    >>> from lmatrank.spectral import sigma_damping
    >>> g = sigma_damping(3)
    >>> [round(float(x), 6) for x in g]
    [1.0, 0.900316, 0.63662, 0.300105]
    """
    m = _check_degree(degree)
    k = np.arange(1, m + 1)
    theta = np.pi / (m + 1)
    return np.concatenate(([1.0], np.sin(k * theta) / (k * theta)))


def damping_coefficients(degree, damping):
    """Damping factors by name: ``"jackson"``, ``"sigma"`` or ``"none"`` (all ones).

    Examples
    --------
    >>> from lmatrank.spectral import damping_coefficients
    >>> g = damping_coefficients(50, "jackson")
    >>> g.shape, float(g[0]), bool(g[-1] < 0.01)
    ((51,), 1.0, True)
    """
    if damping == "jackson":
        return jackson_damping(degree)
    if damping == "sigma":
        return sigma_damping(degree)
    if damping == "none":
        return np.ones(_check_degree(degree) + 1)
    raise ValueError(f"unknown damping {damping!r}; expected 'jackson', 'sigma' or 'none'")


def step_coefficients(degree, a, b):
    r"""Chebyshev coefficients of the indicator of ``[a, b]`` (a sub-interval of ``[-1, 1]``).

    ::

        gamma_0 = (arccos a - arccos b) / pi
        gamma_k = 2 (sin(k arccos a) - sin(k arccos b)) / (pi k),   k = 1..m

    `a` and `b` are clipped to ``[-1, 1]``; an empty interval gives zeros.
    Multiply by a damping sequence before use (Gibbs oscillations).

    Examples
    --------
    >>> from lmatrank.spectral import step_coefficients
    >>> c = step_coefficients(2, -1.0, 1.0)     # the constant 1
    >>> [round(float(x), 12) + 0.0 for x in c]
    [1.0, 0.0, 0.0]
    """
    m = _check_degree(degree)
    a, b = float(np.clip(a, -1.0, 1.0)), float(np.clip(b, -1.0, 1.0))
    if not a < b:
        return np.zeros(m + 1)
    alpha, beta = np.arccos(a), np.arccos(b)
    k = np.arange(1, m + 1)
    gam = 2.0 * (np.sin(k * alpha) - np.sin(k * beta)) / (np.pi * k)
    return np.concatenate(([(alpha - beta) / np.pi], gam))


def chebyshev_moments(matmat, V, degree, *, center, half_width, doubling=False, xp=None):
    r"""Moments ``Y[k, l] = v_l^T T_k(B) v_l`` for a block of probes, ``B = (A - c)/h``.

    Parameters
    ----------
    matmat : callable
        ``matmat(X) -> A @ X`` for a block ``X`` of shape ``(n, b)``; called once
        per degree with the whole block (``degree`` calls in all).
    V : ndarray, shape (n, n_probes)
        Probe vectors (not normalised here).
    degree : int
        Number of recurrence steps ``m`` (products per probe).
    center, half_width : float
        ``c`` and ``h`` of the map; ``h > 0``.
    doubling : bool, optional
        KPM doubling: also use ``T_{2k} = 2 T_k^2 - T_0`` and
        ``T_{2k+1} = 2 T_{k+1} T_k - T_1`` to return ``2 m + 1`` moments from ``m``
        products (Weiße et al. 2006).
    xp : module, optional
        Array namespace of the recurrence (default numpy): `V` is moved with
        ``xp.asarray`` once and `matmat` receives and returns ``xp`` blocks.

    Returns
    -------
    ndarray, shape (m + 1, n_probes) or (2 m + 1, n_probes)
        Moments in float64, on the host (one conversion at the end).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.spectral import chebyshev_moments
    >>> A = np.diag([0.0, 0.5, 1.0])
    >>> Y = chebyshev_moments(lambda X: A @ X, np.eye(3), 2, center=0.5, half_width=0.5)
    >>> Y[2]                            # T_2(t) = 2 t^2 - 1 at t = -1, 0, 1
    array([ 1., -1.,  1.])
    """
    m = _check_degree(degree)
    if not half_width > 0:
        raise ValueError(f"half_width must be > 0, got {half_width!r}")
    xp = np if xp is None else xp
    V = xp.asarray(V)
    if V.ndim != 2:
        raise ValueError(f"probes must be a 2-D block (n, n_probes), got shape {V.shape}")
    work_dtype = V.dtype
    W_prev = V.astype(np.float64)
    dot = lambda X, Z: xp.einsum("ij,ij->j", X, Z)  # noqa: E731 - column-wise inner products

    def apply_b(W):
        out = xp.asarray(matmat(W.astype(work_dtype, copy=False)), dtype=np.float64)
        out -= center * W
        out /= half_width
        return out

    n_mom = 2 * m + 1 if doubling else m + 1
    Y = xp.empty((n_mom, V.shape[1]), dtype=np.float64)   # reduced where the blocks live
    Y[0] = dot(W_prev, W_prev)
    W = apply_b(W_prev)
    Y[1] = dot(W_prev, W)
    if doubling:
        y0, y1 = Y[0].copy(), Y[1].copy()
        Y[2] = 2 * dot(W, W) - y0
    V0 = W_prev
    for k in range(1, m):
        W_next = apply_b(W)
        W_next *= 2
        W_next -= W_prev
        W_prev, W = W, W_next
        if doubling:  # W_prev = T_k v, W = T_{k+1} v
            Y[2 * k + 1] = 2 * dot(W, W_prev) - y1
            Y[2 * k + 2] = 2 * dot(W, W) - y0
        else:
            Y[k + 1] = dot(V0, W)
    return to_host(xp, Y)


def chebyshev_series(coefficients, t):
    r"""Evaluate ``sum_k c_k T_k(t)`` by the three-term recurrence (t in [-1, 1]).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.spectral import chebyshev_series
    >>> t = np.linspace(-1, 1, 5)
    >>> np.allclose(chebyshev_series([0.0, 0.0, 1.0], t), 2 * t**2 - 1)  # T_2
    True
    """
    c = np.asarray(coefficients, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    T_prev, T = np.ones_like(t), t.copy()
    out = c[0] * T_prev
    if len(c) > 1:
        out = out + c[1] * T
    for k in range(2, len(c)):
        T_prev, T = T, 2 * t * T - T_prev
        out = out + c[k] * T
    return out


def count_from_moments(Y, n, intervals, *, center, half_width, damping="sigma"):
    r"""Per-probe eigenvalue counts ``n v^T h(A) v`` for ``h`` the indicator of `intervals`.

    Parameters
    ----------
    Y : ndarray, shape (m + 1, n_probes)
        Moments of *unit* probes (or of probes with ``E[v v^T] = I / n``).
    n : int
        Order of the matrix.
    intervals : list of (lo, hi)
        Eigenvalue intervals (original scale) whose union is counted.
    center, half_width : float
        The map used for the moments.
    damping : str
        ``"sigma"`` (the published rank estimator), ``"jackson"`` or ``"none"``.

    Returns
    -------
    ndarray, shape (n_probes,)

    Examples
    --------
    Count the eigenvalues of ``diag(1..10)`` above 5.5 from degree-80 moments of
    all ten unit vectors (an exact trace, so only the filter's error remains):

    >>> import numpy as np
    >>> from lmatrank.spectral import chebyshev_moments, count_from_moments
    >>> A = np.diag(np.arange(1.0, 11.0))
    >>> Y = chebyshev_moments(lambda X: A @ X, np.eye(10), 80, center=5.5, half_width=4.6)
    >>> counts = count_from_moments(Y, 10, [(5.5, 10.1)], center=5.5, half_width=4.6)
    >>> round(float(counts.mean()), 1)
    5.0
    """
    m = Y.shape[0] - 1
    g = damping_coefficients(m, damping)
    coef = np.zeros(m + 1)
    for lo, hi in intervals:
        coef += step_coefficients(m, (lo - center) / half_width, (hi - center) / half_width)
    return n * ((g * coef) @ Y)


def kpm_grid(n_points):
    r"""The published KPM grid on ``[-1, 1]`` (Ubaru–Saad ``kpmchebdos_new``).

    ``h = 2/(N+1)``; points ``-1+h : h/2 : 0`` then ``h : 2h : 1-h`` (MATLAB
    colon ranges), i.e. twice as fine as uniform on the lower half and half as
    fine on the upper half. ``N = 100`` gives 125 points.

    Examples
    --------
    >>> from lmatrank.spectral import kpm_grid
    >>> t = kpm_grid(100)
    >>> len(t), round(float(t[0]), 6), round(float(t[1] - t[0]), 6)
    (125, -0.980198, 0.009901)
    """
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    h = 2.0 / (n_points + 1)
    n_low = int(np.floor((1.0 - h) / (0.5 * h) + 1e-9)) + 1
    n_high = int(np.floor((1.0 - 2 * h) / (2 * h) + 1e-9)) + 1
    low = -1.0 + h + 0.5 * h * np.arange(n_low)
    high = h + 2 * h * np.arange(n_high)
    return np.concatenate((low, high))


def kpm_dos(Y, *, lmin, lmax, n_points=100, damping="jackson", grid=None):
    r"""KPM density of states from Chebyshev moments, on the published grid.

    ``phi(t) = (1/sqrt(1 - t^2)) sum_k g_k mu_k T_k(t)`` with
    ``mu_k = (2 - delta_k0) mean_l(Y[k, l]) / pi``, mapped to
    ``lambda = c + w t`` with ``w = (lmax - lmin)/2 + 2 eps_machine`` and
    normalised as the published code does: ``yy / (sum(yy) * (xx[1] - xx[0]))``
    (a Riemann sum with the *fine* spacing, so it is unit area only up to the
    grid's non-uniformity).

    Note: the published code sizes the Jackson kernel by the number of
    moments (``m + 1``), i.e. ``theta = pi / (m + 3)``; this function does the
    same so that the DOS — and hence the published threshold — match.

    Returns
    -------
    xx, yy : ndarray
        Grid (eigenvalue scale) and density values.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.spectral import chebyshev_moments, kpm_dos
    >>> A = np.diag(np.r_[np.zeros(50), np.full(50, 4.0)])
    >>> V = np.random.default_rng(0).standard_normal((100, 40))
    >>> V /= np.linalg.norm(V, axis=0)
    >>> Y = chebyshev_moments(lambda X: A @ X, V, 40, center=2.0, half_width=2.001)
    >>> xx, yy = kpm_dos(Y, lmin=-0.001, lmax=4.001)
    >>> bool(yy[np.argmin(abs(xx - 2.0))] < 0.1 * yy.max())   # no eigenvalue near 2
    True
    """
    Y = np.asarray(Y, dtype=np.float64)
    n_mom = Y.shape[0]
    g = damping_coefficients(n_mom, damping)[:n_mom] if damping != "none" else np.ones(n_mom)
    mu = 2.0 * g * Y.mean(axis=1) / np.pi
    mu[0] /= 2.0
    t = kpm_grid(n_points) if grid is None else np.asarray(grid, dtype=np.float64)
    center = 0.5 * (lmax + lmin)
    width = 0.5 * (lmax - lmin) + 2 * np.finfo(np.float64).eps
    xx = center + width * t
    yy = chebyshev_series(mu, t) / np.sqrt(1.0 - t * t)
    yy = yy / (np.sum(yy) * (xx[1] - xx[0]))
    return xx, yy
