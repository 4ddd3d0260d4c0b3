"""Tests of the linear-network Hessian (paper eqs. 22-26, Mulayoff & Michaeli 2020)."""

from functools import reduce

import numpy as np
import pytest

from lmatrank.operators._base import as_operator
from lmatrank.operators._linear_network import LinearNetworkHessian, random_minimum

SEEDS = [0, 1, 2]
EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------- helpers
def _spd(rng, d):
    G = rng.standard_normal((d, d))
    return G @ G.T / d + 0.5 * np.eye(d)


def _sqrtm_spd(S):
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(w)) @ V.T


def _random_network(rng, widths):
    """Layers W_k of shape (widths[k], widths[k-1]) with spectral norm 1 (so that the
    derivative bounds below stay O(1))."""
    Ws = []
    for k in range(1, len(widths)):
        W = rng.standard_normal((widths[k], widths[k - 1]))
        Ws.append(W / np.linalg.norm(W, 2))
    return Ws


def _product(mats):
    """mats[-1] @ ... @ mats[0] (identity-free: caller handles empty)."""
    return reduce(lambda acc, W: W @ acc, mats[1:], mats[0])


def _hessian_eq_24_25(Ws, sigma_x):
    """H = 2 Phi Phi^T with Phi_k = (W_{k-1}...W_1 Sigma^1/2) kron (W_M...W_{k+1})^T,
    formed literally with np.kron (column-major vec of every W_k)."""
    d_x, d_y = Ws[0].shape[1], Ws[-1].shape[0]
    root = _sqrtm_spd(sigma_x)
    blocks = []
    for k in range(len(Ws)):
        right = _product(Ws[:k]) if k > 0 else np.eye(d_x)          # W_{k-1}...W_1
        left = _product(Ws[k + 1:]) if k < len(Ws) - 1 else np.eye(d_y)  # W_M...W_{k+1}
        blocks.append(np.kron(right @ root, left.T))
    Phi = np.vstack(blocks)
    return 2.0 * Phi @ Phi.T


def _weight_scale(H, *thetas):
    """w = max(1, largest spectral norm of any layer at any of the given points)."""
    norms = [1.0]
    for theta in thetas:
        norms += [np.linalg.norm(W, 2) for W in H.unpack(theta)]
    return max(norms)


def _case(kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "square-I":
        return LinearNetworkHessian(_random_network(rng, [3, 3, 3, 3]))
    if kind == "rect-sigma":
        return LinearNetworkHessian(_random_network(rng, [3, 4, 2, 5]), _spd(rng, 3))
    if kind == "wide-sigma":
        return LinearNetworkHessian(_random_network(rng, [2, 5, 3, 4]), _spd(rng, 2))
    if kind == "depth1-sigma":
        return LinearNetworkHessian(_random_network(rng, [3, 2]), _spd(rng, 3))
    if kind == "paper":
        return random_minimum(3, depth=4, rng=rng)
    raise AssertionError(kind)


CASES = ["square-I", "rect-sigma", "wide-sigma", "depth1-sigma", "paper"]


# ------------------------------------------------------------ the operator
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("b", [1, 6])
def test_matmat_matches_todense(seed, kind, b):
    H = _case(kind, seed)
    D = H.todense()
    X = np.random.default_rng(seed + 100).standard_normal((H.n_params, b))
    Y = H.matmat(X)
    assert Y.shape == (H.n_params, b) and Y.dtype == H.dtype
    # rounding: both sides are sums of O(M) products of chains of length <= 2M + 1
    # rounding: both sides are sums of M products of chains of at most 2M + 1 factors
    # of order <= d_max; allow for cancellation through the ||D||_2 max|X| term
    d_max = max([H.d_x] + [shape[0] for shape in H.layer_shapes])
    tol = 10 * (2 * H.depth + 2) * d_max * EPS
    scale = np.abs(D) @ np.abs(X) + np.linalg.norm(D, 2) * np.abs(X).max()
    assert np.all(np.abs(Y - D @ X) <= tol * scale)
    assert np.allclose(H @ X[:, 0], Y[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("identity_sigma", [True, False])
def test_todense_matches_paper_eqs_24_25(seed, d, depth, identity_sigma):
    rng = np.random.default_rng(seed)
    Ws = _random_network(rng, [d] * (depth + 1))
    sigma = np.eye(d) if identity_sigma else _spd(rng, d)
    H = LinearNetworkHessian(Ws, None if identity_sigma else sigma)
    reference = _hessian_eq_24_25(Ws, sigma)
    assert np.allclose(H.todense(), reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())
    X = rng.standard_normal((H.n_params, 3))
    assert np.allclose(H @ X, reference @ X, rtol=1e-12,
                       atol=1e-12 * np.abs(reference).max() * np.abs(X).sum(axis=0).max())


@pytest.mark.parametrize("seed", SEEDS)
def test_eq_25_with_sigma_in_both_factors_is_not_the_hessian(seed):
    """Documents the reading of eq. (25): Sigma_x^1/2 belongs to the input side only."""
    rng = np.random.default_rng(seed)
    Ws = _random_network(rng, [3, 3, 3])
    sigma = _spd(rng, 3)
    root = _sqrtm_spd(sigma)
    Phi = np.vstack([np.kron(root, (Ws[1] @ root).T), np.kron(Ws[0] @ root, root.T)])
    literal_both = 2 * Phi @ Phi.T
    H = LinearNetworkHessian(Ws, sigma).todense()
    assert not np.allclose(H, literal_both, rtol=1e-3)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["square-I", "rect-sigma", "paper"])
def test_todense_is_second_derivative_of_loss(seed, kind):
    """Central 4-point differences of `loss` (batched over all (i, j) pairs at once).

    Truncation: |err| <= h^2/3 max|4th derivative|; the 4th derivative of
    ||(A - T) Sigma^1/2||^2 in unit directions is a sum of at most (2M)^4 terms each
    bounded by w^(2M-4) ||Sigma|| (w = largest layer norm, >= 1). Rounding: the loss
    differences are O(h) * M eps w^(2M) ||Sigma||, divided by h^2.
    """
    H = _case(kind, seed)
    P, M = H.n_params, H.depth
    h = 1e-4
    theta = H.theta_min
    E = np.eye(P)
    I, J = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    I, J = I.ravel(), J.ravel()
    plus_i, plus_j = h * E[:, I], h * E[:, J]
    loss = H.loss
    f = (loss(theta[:, None] + plus_i + plus_j) - loss(theta[:, None] + plus_i - plus_j)
         - loss(theta[:, None] - plus_i + plus_j) + loss(theta[:, None] - plus_i - plus_j))
    fd = (f / (4 * h * h)).reshape(P, P)
    w = _weight_scale(H, theta) + 2 * h
    s = np.linalg.norm(H.sigma_x, 2)
    tol = h**2 / 3 * (2 * M) ** 4 * w ** (2 * M - 4) * s + 8 * M * EPS * w ** (2 * M) * s / h
    err = np.abs(fd - H.todense()).max()
    assert err <= tol, (err, tol)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", CASES)
def test_gradient_matches_finite_differences(seed, kind):
    """Central differences at a point away from the minimum.

    |err| <= h^2/6 max|3rd derivative| <= h^2/6 (2M)^3 w^(2M) ||Sigma|| (the residual
    A - T is bounded by 2 w^M), plus rounding M eps w^(2M) ||Sigma|| / h.
    """
    H = _case(kind, seed)
    rng = np.random.default_rng(seed + 10)
    theta = H.theta_min + 0.3 * rng.standard_normal(H.n_params)
    h = 1e-5
    E = h * np.eye(H.n_params)
    fd = (H.loss(theta[:, None] + E) - H.loss(theta[:, None] - E)) / (2 * h)
    g = H.gradient(theta)
    assert g.shape == (H.n_params,)
    M = H.depth
    w = _weight_scale(H, theta, H.theta_min) + h
    s = np.linalg.norm(H.sigma_x, 2)
    tol = h**2 / 6 * (2 * M) ** 3 * 4 * w ** (2 * M) * s + 8 * M * EPS * w ** (2 * M) * s / h
    assert np.abs(fd - g).max() <= tol


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", CASES)
def test_minimum_has_zero_loss_and_gradient(seed, kind):
    H = _case(kind, seed)
    w = _weight_scale(H, H.theta_min)
    s = np.linalg.norm(H.sigma_x, 2)
    residual_bound = 4 * H.depth * EPS * w ** H.depth * np.sqrt(H.d_x * H.d_y)
    assert 0.0 <= H.loss(H.theta_min) <= residual_bound**2 * s
    assert np.abs(H.gradient(H.theta_min)).max() <= 2 * residual_bound * w ** H.depth * s
    # a batch containing the minimum several times
    batch = np.repeat(H.theta_min[:, None], 3, axis=1)
    assert np.all(H.loss(batch) <= residual_bound**2 * s)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", CASES)
def test_batched_loss_and_gradient_equal_per_column(seed, kind):
    H = _case(kind, seed)
    rng = np.random.default_rng(seed + 20)
    thetas = H.theta_min[:, None] + 0.2 * rng.standard_normal((H.n_params, 5))
    losses, grads = H.loss(thetas), H.gradient(thetas)
    assert losses.shape == (5,) and grads.shape == (H.n_params, 5)
    for c in range(5):
        assert np.isclose(losses[c], H.loss(thetas[:, c]), rtol=1e-13, atol=0)
        assert np.allclose(grads[:, c], H.gradient(thetas[:, c]), rtol=1e-13,
                           atol=1e-13 * np.abs(grads[:, c]).max())
    # Gauss-Newton at the minimum: for small steps the loss is the quadratic form / 2
    delta = 1e-6 * rng.standard_normal((H.n_params, 4))
    quad = 0.5 * np.einsum("pc,pc->c", delta, H @ delta)
    assert np.allclose(H.loss(H.theta_min[:, None] + delta), quad, rtol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", CASES)
def test_symmetry(seed, kind):
    H = _case(kind, seed)
    rng = np.random.default_rng(seed + 30)
    X, Y = rng.standard_normal((H.n_params, 3)), rng.standard_normal((H.n_params, 3))
    lhs, rhs = X.T @ (H @ Y), (H @ X).T @ Y
    assert np.allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * np.abs(lhs).max())
    as_operator(H, rng=seed)                       # passes the probe symmetry test


def test_vec_convention_is_column_major():
    rng = np.random.default_rng(0)
    Ws = _random_network(rng, [2, 3, 4])
    H = LinearNetworkHessian(Ws)
    assert np.array_equal(H.theta_min, np.concatenate([W.ravel(order="F") for W in Ws]))
    # W_2[p, q] sits at offset 6 + q * 4 + p
    assert H.theta_min[6 + 1 * 4 + 3] == Ws[1][3, 1]
    for W, U in zip(Ws, H.unpack(H.theta_min)):
        assert np.array_equal(W, U)
    thetas = rng.standard_normal((H.n_params, 3))
    stacks = H.unpack(thetas)
    assert [S.shape for S in stacks] == [(3, 3, 2), (3, 4, 3)]
    assert np.array_equal(H.pack(stacks), thetas)
    assert np.array_equal(stacks[1][2], thetas[6:, 2].reshape(3, 4).T)


# ------------------------------------------------------------------ rank
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3, 4])
def test_paper_minimum_rank_is_d_squared(seed, d):
    H = random_minimum(d, depth=5, rng=seed)
    assert H.theoretical_rank == d * d
    assert np.linalg.matrix_rank(H.todense()) == d * d
    assert H.n_params == 5 * d * d and H.shape == (5 * d * d, 5 * d * d)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 4])
@pytest.mark.parametrize("depth", [1, 2, 5])
def test_paper_minimum_construction(seed, d, depth):
    H = random_minimum(d, depth, rng=np.random.default_rng(seed))
    R = np.random.default_rng(seed).standard_normal((d, d))
    T = R @ R.T / np.sqrt(d)
    product = _product(list(H.weights))
    tol = 10 * depth * d * EPS * np.linalg.norm(T)
    assert np.linalg.norm(product - T) <= tol
    assert np.linalg.norm(H.target - T) <= tol
    assert np.array_equal(H.sigma_x, np.eye(d))
    assert np.allclose(H.sigma_yx, T, atol=tol)
    if depth >= 2:
        # all layers have the same singular values T^(1/M) (orthogonal P)
        root_sv = np.linalg.svd(H.weights[0], compute_uv=False)
        for W in H.weights:
            assert np.allclose(np.linalg.svd(W, compute_uv=False), root_sv,
                               rtol=0, atol=tol)


def test_random_minimum_rng_contract():
    a = random_minimum(4, rng=5)
    b = LinearNetworkHessian.random_minimum(4, rng=np.random.default_rng(5))
    for Wa, Wb in zip(a.weights, b.weights):
        assert np.array_equal(Wa, Wb)
    c = random_minimum(4, rng=6)
    assert not np.array_equal(a.weights[0], c.weights[0])
    assert random_minimum(3, rng=None).depth == 5
    f32 = random_minimum(3, 3, rng=1, dtype=np.float32)
    assert f32.dtype == np.float32 and (f32 @ np.ones(27)).dtype == np.float32
    f64 = random_minimum(3, 3, rng=1)
    x = np.random.default_rng(0).standard_normal(27)
    assert np.allclose(f32 @ x, f64 @ x, rtol=0,
                       atol=100 * np.finfo(np.float32).eps * np.abs(f64.todense()) .sum(1).max()
                       * np.abs(x).max())


@pytest.mark.parametrize("seed", SEEDS)
def test_rank_of_rectangular_networks(seed):
    rng = np.random.default_rng(seed)
    # full-rank end-to-end map, d_x < d_y and d_x > d_y: rank d_x d_y
    for widths in ([2, 3, 4], [4, 5, 3, 2], [3, 3, 5]):
        H = LinearNetworkHessian(_random_network(rng, widths), _spd(rng, widths[0]))
        assert H.theoretical_rank == widths[0] * widths[-1]
        assert np.linalg.matrix_rank(H.todense()) == widths[0] * widths[-1]
    # bottleneck narrower than min(d_x, d_y): T is rank deficient, rank not d_x d_y
    H = LinearNetworkHessian(_random_network(rng, [3, 4, 2, 5]))
    assert H.theoretical_rank is None
    assert np.linalg.matrix_rank(H.todense()) < 15
    # depth 1: H = 2 Sigma_x kron I
    sigma = _spd(rng, 3)
    H = LinearNetworkHessian([rng.standard_normal((2, 3))], sigma)
    assert H.theoretical_rank == 6
    assert np.allclose(H.todense(), 2 * np.kron(sigma, np.eye(2)), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("seed", SEEDS)
def test_paper_spectrum_d8(seed):
    """rank 64 at d = 8: count eigenvalues above n * eps * lambda_max.

    The threshold is the rounding level of a dense symmetric eigensolver on an
    order-n matrix; the true nonzero eigenvalues sit well above it and the
    rounded null eigenvalues below it.
    """
    H = random_minimum(8, depth=5, rng=seed)
    lam = np.linalg.eigvalsh(H.todense())[::-1]
    n = H.n_params
    threshold = n * EPS * lam[0]
    assert np.sum(lam > threshold) == 64 == H.theoretical_rank
    print(f"\nseed {seed}: lambda_max {lam[0]:.3g}, lambda_64/lambda_max {lam[63] / lam[0]:.3g}, "
          f"|lambda_65|/lambda_max {abs(lam[64]) / lam[0]:.3g}, threshold/lambda_max "
          f"{threshold / lam[0]:.3g}")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", CASES)
def test_gram_eigenvalues_are_the_nonzero_spectrum(seed, kind):
    H = _case(kind, seed)
    lam_H = np.linalg.eigvalsh(H.todense())[::-1]
    lam_G = H.gram_eigenvalues()
    m = H.d_x * H.d_y
    assert lam_G.shape == (m,)
    # dense eigensolver accuracy: n * eps * lambda_max on both sides
    tol = 2 * H.n_params * EPS * lam_H[0]
    assert np.allclose(lam_G, lam_H[:m], rtol=0, atol=tol)
    assert np.all(np.abs(lam_H[m:]) <= tol)


def test_large_block_product_equals_column_products():
    """d = 64, b = 32: the batched block product equals one product per column (speed: bench/)."""
    H = random_minimum(64, depth=5, rng=0)
    X = np.random.default_rng(1).standard_normal((H.n_params, 32))
    Y = H @ X
    cols = np.stack([H @ X[:, j] for j in range(0, 32, 8)], axis=1)
    np.testing.assert_allclose(Y[:, ::8], cols, rtol=1e-12, atol=1e-12 * np.abs(cols).max())
    # H is PSD: x^T H x >= 0 for every column, and > 0 for generic x
    assert np.all(np.einsum("ij,ij->j", X, Y) > 0)


# ------------------------------------------------------------- bad inputs
def test_bad_inputs():
    rng = np.random.default_rng(0)
    Ws = _random_network(rng, [3, 3, 3])
    with pytest.raises(ValueError, match="weights is empty"):
        LinearNetworkHessian([])
    with pytest.raises(TypeError, match="sequence of 2-D matrices"):
        LinearNetworkHessian(np.eye(3))
    with pytest.raises(ValueError, match="incompatible layer shapes"):
        LinearNetworkHessian([np.ones((3, 2)), np.ones((4, 4))])
    with pytest.raises(ValueError, match=r"weights\[1\] must be a 2-D matrix"):
        LinearNetworkHessian([np.ones((3, 3)), np.ones(3)])
    with pytest.raises(TypeError, match="complex"):
        LinearNetworkHessian([Ws[0] + 1j, Ws[1]])
    bad = Ws[1].copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"weights\[1\] contains non-finite"):
        LinearNetworkHessian([Ws[0], bad])
    with pytest.raises(ValueError, match=r"sigma_x must have shape \(3, 3\)"):
        LinearNetworkHessian(Ws, np.eye(2))
    with pytest.raises(ValueError, match="sigma_x must be symmetric"):
        LinearNetworkHessian(Ws, np.eye(3) + np.triu(np.ones((3, 3)), 1))
    with pytest.raises(ValueError, match="positive definite"):
        LinearNetworkHessian(Ws, np.diag([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="sigma_x contains non-finite"):
        LinearNetworkHessian(Ws, np.full((3, 3), np.nan))
    H = LinearNetworkHessian(Ws)
    with pytest.raises(ValueError, match=r"block of shape \(18, b\)"):
        H.matmat(np.ones((17, 2)))
    with pytest.raises(ValueError, match=r"theta of shape \(18,\)"):
        H.loss(np.ones(17))
    with pytest.raises(ValueError, match=r"theta of shape \(18,\)"):
        H.gradient(np.ones((18, 2, 1)))
    with pytest.raises(ValueError, match="d must be a positive integer"):
        random_minimum(0)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        random_minimum(3, 0)
    with pytest.raises(ValueError, match="todense\\(\\) refused"):
        random_minimum(64, depth=5, rng=0).todense()


@pytest.mark.parametrize("with_sigma", [False, True])
def test_to_device_runs_the_host_product_on_moved_factors(with_sigma):
    rng = np.random.default_rng(12)
    weights = [rng.standard_normal((4, 3)), rng.standard_normal((5, 4)),
               rng.standard_normal((2, 5))]
    M = rng.standard_normal((3, 3))
    H = LinearNetworkHessian(weights, M @ M.T + 3 * np.eye(3) if with_sigma else None)
    moved = []

    def move(F):
        moved.append(F.shape)
        return F.copy()
    dev = H.to_device(np, move)
    # L_1, L_2 and their transposes, R_2, R_3 and the Sigma_x R_k^T (3 with Sigma_x, else 2)
    assert len(moved) == 2 + 2 + 2 + (3 if with_sigma else 2)
    X = rng.standard_normal((H.n_params, 4))
    np.testing.assert_array_equal(dev.matmat(X), H @ X)
    assert dev.shape == H.shape and dev.dtype == H.dtype
