"""Tests of the PyTorch adapter (skipped without torch)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lmatrank  # noqa: E402
from lmatrank.operators import LinearNetworkHessian  # noqa: E402
from lmatrank.torch import ModelLoss, adam_preconditioner, as_linear_operator  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only add contention on shared CI cores


def _sum_squares(out, y):
    return ((out - y) ** 2).sum()


def _torch_linear_network(H):
    """The paper's linear network as a torch model whose full-batch loss equals H.loss."""
    d = H.d_x
    model = torch.nn.Sequential(*[torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
                                  for W in H.weights]).double()
    with torch.no_grad():
        for lin, W in zip(model, H.weights):
            lin.weight.copy_(torch.tensor(np.array(W)))
    X = torch.eye(d, dtype=torch.float64)             # Sigma_x = X^T X = I
    Y = X @ torch.tensor(np.array(H.target)).T
    return model, ModelLoss(model, _sum_squares, (X, Y))


def _to_torch_order(H, theta):
    """Column-major (LinearNetworkHessian) -> row-major (torch Linear.weight) flattening."""
    return np.concatenate([W.ravel() for W in H.unpack(theta)])


def test_model_loss_matches_linear_network_loss_gradient_and_hessian():
    H = LinearNetworkHessian.random_minimum(4, 3, rng=0)
    _, f = _torch_linear_network(H)
    assert f.n_params == H.n_params
    np.testing.assert_allclose(f.theta0, _to_torch_order(H, H.theta_min))
    theta = H.theta_min[:, None] + 0.1 * np.random.default_rng(1).standard_normal((H.n_params, 3))
    theta_t = np.stack([_to_torch_order(H, theta[:, j]) for j in range(3)], axis=1)
    np.testing.assert_allclose(f.loss(theta_t), H.loss(theta), rtol=1e-12)
    g = H.gradient(theta)
    g_t = np.stack([_to_torch_order(H, g[:, j]) for j in range(3)], axis=1)
    value, grad = f.value_and_grad(theta_t)
    np.testing.assert_allclose(grad, g_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(value, H.loss(theta), rtol=1e-12)
    assert f.loss(theta_t[:, 0]) == pytest.approx(float(H.loss(theta[:, 0])), rel=1e-12)
    # same spectrum: the HVP operator is the Hessian in permuted coordinates
    ev_t = np.linalg.eigvalsh(f.hessian())
    ev = np.linalg.eigvalsh(H.todense())
    np.testing.assert_allclose(ev_t, ev, atol=1e-9 * ev.max())
    assert lmatrank.estimate_rank(f.hessian_operator(), method="exact").rank == 16


def _torch_linear_network_check(d, n_steps, seed):
    H = LinearNetworkHessian.random_minimum(d, 5, rng=seed)
    _, f = _torch_linear_network(H)
    est = lmatrank.hessian_rank(f.loss, f.gradient, f.theta0, batched=True, n_steps=n_steps,
                                n_chains=8, rng=seed + 1)
    # a fixed run length does not resolve numpy's default threshold: an honest bracket and a
    # warning; the comparison is of the two estimates of the same filtered count
    with pytest.warns(lmatrank.ConvergenceWarning, match="not the threshold"):
        ref = lmatrank.estimate_rank(H, method="langevin", eta=est.info["eta"],
                                     n_steps=n_steps, n_avg=est.info["n_avg"], n_chains=8,
                                     noise="gaussian", rng=seed + 2, backend="numpy")
    assert not ref.converged and ref.interval[0] <= d * d <= ref.interval[1]
    assert abs(est.estimate - ref.estimate) <= 5 * math.hypot(est.stderr, ref.stderr), (est, ref)
    assert est.info["nonquadratic"] is False
    assert est.info["loss_evals"] == est.info["grad_evals"] - (est.matvecs - 1 - 8 * n_steps)
    return est


def test_hessian_rank_through_torch_agrees_with_operator_estimate_d8():
    _torch_linear_network_check(8, 600, seed=30)


@pytest.mark.slow
@pytest.mark.parametrize("d", [8, 16])
def test_hessian_rank_through_torch_agrees_with_operator_estimate_full(d):
    _torch_linear_network_check(d, 4000, seed=40 + d)


def test_spectral_peer_runs_on_the_same_model():
    H = LinearNetworkHessian.random_minimum(3, 3, rng=5)
    _, f = _torch_linear_network(H)
    op = f.hessian_operator()
    X = np.random.default_rng(0).standard_normal((f.n_params, 4))
    np.testing.assert_allclose(op @ X, f.hessian() @ X, rtol=1e-10, atol=1e-10)
    with pytest.warns(lmatrank.ConvergenceWarning, match="not the threshold"):
        est = lmatrank.estimate_rank(op, method="langevin", n_steps=800, rng=0)
    assert abs(est.estimate - 9) <= 5 * est.stderr + 1.0   # 1.0: filter bias of tiny modes
    assert not est.converged and est.interval[0] <= 9 <= est.interval[1]


def test_adam_preconditioner_from_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    X, y = torch.randn(20, 3), torch.randn(20, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.99), eps=1e-6)
    with pytest.raises(ValueError, match="take at least one Adam step"):
        adam_preconditioner(opt)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
    f = ModelLoss(model.eval(), torch.nn.functional.mse_loss, (X, y))
    G = f.adam_preconditioner(opt)
    manual = np.concatenate([
        1.0 / (np.sqrt(opt.state[p]["exp_avg_sq"].double().numpy().ravel() / (1 - 0.99**5))
               + 1e-6) for p in f.parameters])
    np.testing.assert_allclose(G, manual, rtol=1e-12)
    assert G.shape == (f.n_params,) and np.all(G > 0)


def test_hessian_rank_with_adam_preconditioner_on_a_small_network():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                                torch.nn.Linear(3, 1)).double()
    X = torch.randn(6, 2, dtype=torch.float64)
    y = torch.randn(6, 1, dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.999))
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=500, tolerance_grad=1e-13,
                              tolerance_change=0)

    def closure():
        lbfgs.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        return loss

    lbfgs.step(closure)
    f = ModelLoss(model, torch.nn.functional.mse_loss, (X, y))
    G = f.adam_preconditioner(opt)
    est = lmatrank.hessian_rank(f, None, f.theta0, preconditioner=G, batched=True,
                                n_steps=1500, rng=2)
    ev = np.linalg.eigvalsh(np.sqrt(G)[:, None] * f.hessian() * np.sqrt(G)[None, :])
    # what the filter counts at this step and run length (G H spectrum, exact)
    lam = ev[ev > 0]
    k = np.arange(est.info["burn_in"], 1500)[:, None]
    expected = np.mean(np.sum(1 - (1 - est.info["eta"] * lam[None, :]) ** (2 * k), axis=1))
    assert abs(est.estimate - expected) <= 5 * est.stderr + 0.02 * expected
    assert est.info["nonquadratic"] is False


def test_float32_mode_and_chunking():
    torch.manual_seed(2)
    model = torch.nn.Linear(3, 2)
    X, y = torch.randn(10, 3), torch.randn(10, 2)
    f64 = ModelLoss(model, torch.nn.functional.mse_loss, (X, y))
    f32 = ModelLoss(model, torch.nn.functional.mse_loss, (X, y), dtype=torch.float32)
    chunked = ModelLoss(model, torch.nn.functional.mse_loss, (X, y), chunk_size=3)
    v32, g32 = f32.value_and_grad(f32.theta0)
    assert g32.dtype == np.float32
    assert chunked.loss(f64.theta0) == pytest.approx(f64.loss(f64.theta0), rel=1e-12)
    np.testing.assert_allclose(chunked.gradient(f64.theta0), f64.gradient(f64.theta0),
                               rtol=1e-10)
    assert v32 == pytest.approx(f64.loss(f64.theta0), rel=1e-5)


def test_load_writes_parameters_back():
    model = torch.nn.Linear(2, 1).double()
    f = ModelLoss(model, torch.nn.functional.mse_loss,
                  (torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)))
    f.load(np.arange(3.0))
    np.testing.assert_array_equal(model.weight.detach().numpy().ravel(), [0.0, 1.0])
    assert float(model.bias.detach()) == 2.0


def test_torch_tensor_and_torch_operator_inputs():
    rng = np.random.default_rng(3)
    U, _ = np.linalg.qr(rng.standard_normal((12, 4)))
    A = torch.tensor(U @ np.diag([4.0, 3.0, 2.0, 1.0]) @ U.T)
    assert lmatrank.estimate_rank(as_linear_operator(A), method="exact").rank == 4

    class TorchOperator:                   # curvlinops-style: torch tensors in and out
        shape = (12, 12)
        dtype = torch.float64
        device = torch.device("cpu")

        def __matmul__(self, X):
            assert isinstance(X, torch.Tensor)
            return A @ X

    op = as_linear_operator(TorchOperator())
    np.testing.assert_allclose(op @ np.eye(12), A.numpy())
    assert lmatrank.estimate_rank(op, method="exact").rank == 4
    with pytest.raises(ValueError, match="square"):
        as_linear_operator(torch.zeros(2, 3))


def test_bad_inputs_are_refused():
    model = torch.nn.Linear(2, 1)
    X, y = torch.zeros(3, 2), torch.zeros(3, 1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ModelLoss(lambda x: x, torch.nn.functional.mse_loss, (X, y))
    with pytest.raises(TypeError, match="pair"):
        ModelLoss(model, torch.nn.functional.mse_loss, X)
    with pytest.raises(ValueError, match="different numbers of samples"):
        ModelLoss(model, torch.nn.functional.mse_loss, (X, torch.zeros(4, 1)))
    with pytest.raises(ValueError, match="dtype must be"):
        ModelLoss(model, torch.nn.functional.mse_loss, (X, y), dtype="float16")
    f = ModelLoss(model, torch.nn.functional.mse_loss, (X, y))
    with pytest.raises(ValueError, match="expected theta of shape"):
        f.loss(np.zeros(5))
