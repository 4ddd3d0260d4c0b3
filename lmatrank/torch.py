"""PyTorch adapter: Hessian rank of a model's full-batch loss (optional extra ``torch``).

PyTorch is imported lazily, only when a function of this module is called, so
``import lmatrank.torch`` works without it (and raises an ImportError naming
the extra on first use).

What it provides
----------------
- :class:`ModelLoss` / :func:`model_loss`: the full-batch loss of
  ``loss_fn(model(inputs), targets)`` and its gradient as functions of a flat
  parameter vector (numpy in, numpy out), batched over chains with
  ``torch.func.vmap`` -- exactly the callables :func:`lmatrank.hessian_rank`
  takes (``batched=True``). Parameters are flattened in ``model.named_parameters()``
  order (those with ``requires_grad``); :attr:`ModelLoss.theta0` is the current
  weights as a float64 vector.
- :func:`adam_preconditioner`: ``G = 1 / (sqrt(v_hat) + eps)`` from a
  ``torch.optim.Adam`` (bias-corrected ``exp_avg_sq``, per-group ``eps``).
- :meth:`ModelLoss.hessian_operator`: a Hessian-vector-product operator
  (reverse-over-reverse, ``torch.func.vjp`` of ``torch.func.grad``, vmapped over
  the block) with ``shape``, ``dtype`` and ``matmat`` on numpy blocks, so
  :func:`lmatrank.estimate_rank` and the spectral peers run on the same model.
- :func:`as_linear_operator`: a torch tensor, or a torch-based operator such as
  curvlinops' (anything with ``shape`` and ``@``/``matmat`` on torch tensors),
  as a ``scipy.sparse.linalg.LinearOperator`` on numpy arrays.

Precision
---------
By default the model is evaluated in float64 (parameters, floating buffers and
floating data are cast; the model object itself is not modified). The rank
estimator reads ``L(theta) - L(theta_0) ~ sigma^2 r / 4`` -- for the paper's
``sigma^2 = 1e-5`` a few 1e-4 -- as a difference of two losses of order one, so
float32 (``dtype=torch.float32``, about twice as fast) leaves only ~3 significant
digits in each sample; use it with larger ``sigma^2`` only.

The model must be a pure function of its parameters: put it in ``eval()`` mode
(batch-norm running statistics, no dropout) before building the loss.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._xp import host_linear_operator
from .langevin._gradient import adam_preconditioner as _adam_from_state

__all__ = ["HessianOperator", "ModelLoss", "adam_preconditioner", "as_linear_operator",
           "model_loss"]


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised only without torch
        raise ImportError("lmatrank.torch needs PyTorch: pip install 'lmatrank[torch]' "
                          "(torch >= 2.1)") from None
    return torch


def _torch_dtype(dtype):
    torch = _torch()
    if dtype in (None, "float64", np.float64, torch.float64):
        return torch.float64
    if dtype in ("float32", np.float32, torch.float32):
        return torch.float32
    raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")


class ModelLoss:
    """Full-batch loss of a PyTorch model as a function of a flat parameter vector.

    Parameters
    ----------
    model : torch.nn.Module
        The network (in ``eval()`` mode if it has batch norm or dropout).
    loss_fn : callable
        ``loss_fn(output, targets) -> scalar tensor`` with **mean** reduction
        (e.g. ``torch.nn.functional.mse_loss``) when `chunk_size` is used.
    data : tuple (inputs, targets)
        The whole training set as tensors (full-batch gradients, as Algorithm 1
        prescribes).
    dtype : {torch.float64, torch.float32}
        Precision of the evaluation (default float64, see module docstring).
    chunk_size : int, optional
        Evaluate the data in chunks of this many samples (memory); the loss is
        the size-weighted mean of the chunk losses.

    Attributes
    ----------
    theta0 : ndarray, shape (P,)
        The model's current trainable parameters, flattened (float64).
    n_params : int
    names : list of str
        Parameter names in flattening order.

    Examples
    --------
    >>> import torch, lmatrank
    >>> from lmatrank.torch import ModelLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(3, 1, bias=False)
    >>> X, y = torch.randn(50, 3), torch.randn(50, 1)
    >>> f = ModelLoss(model, torch.nn.functional.mse_loss, (X, y))
    >>> H = f.hessian_operator()
    >>> H.shape, lmatrank.estimate_rank(H, method="exact").rank
    ((3, 3), 3)
    """

    def __init__(self, model, loss_fn, data, *, dtype=None, chunk_size=None):
        torch = _torch()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn(output, targets) -> scalar")
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError("data must be a pair (inputs, targets) of tensors")
        self.dtype = _torch_dtype(dtype)
        self.np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        inputs, targets = (self._cast(torch.as_tensor(t)) for t in data)
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs and targets have different numbers of samples: "
                             f"{inputs.shape[0]} vs {targets.shape[0]}")
        if inputs.shape[0] == 0:
            raise ValueError("data is empty")
        n = inputs.shape[0]
        if chunk_size is None:
            chunk_size = n
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self._chunks = [(inputs[i:i + chunk_size], targets[i:i + chunk_size],
                         min(chunk_size, n - i) / n) for i in range(0, n, chunk_size)]
        self.model, self.loss_fn = model, loss_fn
        trainable = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("model has no trainable parameters")
        self.names = [k for k, _ in trainable]
        self.parameters = [p for _, p in trainable]
        self._shapes = [p.shape for p in self.parameters]
        self._sizes = [p.numel() for p in self.parameters]
        self.n_params = int(sum(self._sizes))
        self._constants = {k: self._cast(p.detach()) for k, p in model.named_parameters()
                           if not p.requires_grad}
        self._constants.update({k: self._cast(b.detach()) for k, b in model.named_buffers()})
        self.theta0 = torch.cat([p.detach().reshape(-1) for p in self.parameters]).to(
            torch.float64).cpu().numpy()
        self._device = self.parameters[0].device
        func = torch.func
        self._grad_and_value = func.grad_and_value(self._flat_loss)
        self._batched_grad_and_value = func.vmap(self._grad_and_value)
        self._batched_loss = func.vmap(self._flat_loss)
        self._last = None  # (theta, loss) of the last gradient pass

    def _cast(self, t):
        return t.to(self.dtype) if t.is_floating_point() else t

    def _flat_loss(self, theta):
        torch = _torch()
        params = {k: v.view(s) for k, v, s in
                  zip(self.names, torch.split(theta, self._sizes), self._shapes)}
        params.update(self._constants)
        total = 0.0
        for x, y, weight in self._chunks:
            out = torch.func.functional_call(self.model, params, (x,))
            total = total + weight * self.loss_fn(out, y)
        return total

    def _tensor(self, theta):
        torch = _torch()
        arr = np.asarray(theta)
        if arr.ndim not in (1, 2) or arr.shape[0] != self.n_params:
            raise ValueError(f"expected theta of shape ({self.n_params},) or "
                             f"({self.n_params}, c), got {arr.shape}")
        return torch.as_tensor(np.ascontiguousarray(arr), dtype=self.dtype, device=self._device)

    def _numpy(self, t):
        return t.detach().cpu().numpy().astype(self.np_dtype, copy=False)

    # ------------------------------------------------------------- callables
    def loss(self, theta):
        """Full-batch loss at ``theta`` (P,) -> float, or ``(P, c)`` -> ``(c,)``.

        Free right after :meth:`gradient` / :meth:`value_and_grad` at the same
        ``theta`` (the value of that pass is reused).
        """
        torch = _torch()
        cached = self._last
        if cached is not None and cached[0].shape == np.shape(theta) \
                and np.array_equal(cached[0], theta):
            return cached[1]
        t = self._tensor(theta)
        with torch.no_grad():
            if t.ndim == 1:
                return float(self._flat_loss(t))
            return self._numpy(self._batched_loss(t.T.contiguous()))

    def gradient(self, theta):
        """Full-batch gradient, ``(P,) -> (P,)`` or ``(P, c) -> (P, c)``."""
        return self.value_and_grad(theta)[1]

    def value_and_grad(self, theta):
        """``(loss, gradient)`` in one forward/backward pass (batched over columns)."""
        t = self._tensor(theta)
        if t.ndim == 1:
            g, v = self._grad_and_value(t)
            value, grad = float(v), self._numpy(g)
        else:
            g, v = self._batched_grad_and_value(t.T.contiguous())
            value, grad = self._numpy(v), self._numpy(g).T
        self._last = (np.array(theta, copy=True), value)
        return value, grad

    __call__ = value_and_grad

    def hessian_operator(self, theta=None):
        """Hessian-vector-product operator at `theta` (default :attr:`theta0`)."""
        return HessianOperator(self, self.theta0 if theta is None else theta)

    def hessian(self, theta=None, *, block=64):
        """Dense Hessian by automatic differentiation (``P`` HVPs in blocks), float64."""
        op = self.hessian_operator(theta)
        H = np.empty((self.n_params, self.n_params))
        eye = np.eye(self.n_params)
        for i in range(0, self.n_params, block):
            H[:, i:i + block] = op.matmat(eye[:, i:i + block])
        return 0.5 * (H + H.T)

    def adam_preconditioner(self, optimizer):
        """``G = 1 / (sqrt(v_hat) + eps)`` from `optimizer` in this loss's parameter order."""
        return adam_preconditioner(optimizer, self.parameters)

    def load(self, theta):
        """Write the flat vector `theta` into the model's parameters (in place)."""
        torch = _torch()
        t = self._tensor(np.asarray(theta).reshape(-1))
        with torch.no_grad():
            for p, chunk in zip(self.parameters, torch.split(t, self._sizes)):
                p.copy_(chunk.view(p.shape).to(p.dtype))


def model_loss(model, loss_fn, data, **options):
    """Shorthand for :class:`ModelLoss` (``model_loss(model, loss_fn, (X, y))``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from lmatrank.torch import model_loss
    >>> model = torch.nn.Linear(2, 1, bias=False)
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]]); y = torch.zeros(2, 1)
    >>> f = model_loss(model, torch.nn.functional.mse_loss, (X, y))
    >>> f.n_params, np.allclose(f.hessian(), np.diag([1.0, 4.0]))   # H = 2 X^T X / 2
    (2, True)
    """
    return ModelLoss(model, loss_fn, data, **options)


class HessianOperator:
    """``H @ X`` for the full-batch loss of a :class:`ModelLoss`, by automatic differentiation.

    Has ``shape``, ``dtype`` and ``matmat`` (numpy ``(P, b)`` blocks), so it can be
    passed to :func:`lmatrank.estimate_rank` with any method.

    Examples
    --------
    >>> import numpy as np, torch, lmatrank
    >>> from lmatrank.torch import ModelLoss
    >>> model = torch.nn.Linear(4, 1, bias=False)
    >>> X = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]).repeat(5, 1)
    >>> H = ModelLoss(model, torch.nn.functional.mse_loss, (X, torch.zeros(10, 1))).hessian_operator()
    >>> H.matmat(np.eye(4)).round(3)[:, 0]                  # first column of 2 X^T X / 10
    array([1., 1., 0., 0.])
    >>> est = lmatrank.estimate_rank(H, method="sketch", rtol=1e-8, rng=0)
    >>> est.rank, est.converged                        # X has rank 2
    (2, True)
    """

    def __init__(self, model_loss, theta):
        torch = _torch()
        self._f = model_loss
        self._theta = model_loss._tensor(np.asarray(theta, dtype=np.float64).reshape(-1))
        self.shape = (model_loss.n_params, model_loss.n_params)
        self.dtype = np.dtype(model_loss.np_dtype)
        # reverse-over-reverse: the gradient's graph is built once here, each block
        # is one vmapped backward pass through it (H symmetric: vjp = jvp). It avoids
        # forward-mode AD, which some PyTorch ops do not support.
        _, vjp_fn = torch.func.vjp(torch.func.grad(model_loss._flat_loss), self._theta)
        self._hvp = torch.func.vmap(lambda v: vjp_fn(v)[0])

    def matmat(self, X):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != self.shape[0]:
            raise ValueError(f"expected a block of shape ({self.shape[0]}, b), got {X.shape}")
        V = self._f._tensor(X).T.contiguous()
        return self._f._numpy(self._hvp(V)).T

    def __matmul__(self, X):
        X = np.asarray(X)
        return self.matmat(X[:, None])[:, 0] if X.ndim == 1 else self.matmat(X)

    def __repr__(self):
        return f"<HessianOperator n={self.shape[0]} dtype={self.dtype}>"


def adam_preconditioner(optimizer, params=None):
    """Adam's diagonal preconditioner ``G = 1 / (sqrt(v_hat) + eps)`` as a numpy vector.

    Parameters
    ----------
    optimizer : torch.optim.Adam (or AdamW)
        After at least one step. ``v_hat = exp_avg_sq / (1 - beta2**step)``
        (``max_exp_avg_sq`` with ``amsgrad``); ``beta2`` and ``eps`` per group.
    params : sequence of torch.nn.Parameter, optional
        Parameter order of the flat vector (use :meth:`ModelLoss.adam_preconditioner`
        to match a loss). Default: the optimizer's own order.

    Returns
    -------
    ndarray, float64, shape (P,)

    Examples
    --------
    >>> import torch
    >>> from lmatrank.torch import adam_preconditioner
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = torch.optim.Adam([w], lr=0.1, eps=1e-8)
    >>> (w ** 2).sum().backward(); opt.step()          # gradient (2, -4): v_hat = g^2
    >>> adam_preconditioner(opt).round(6)
    array([0.5 , 0.25])
    """
    _torch()
    groups = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            groups[id(p)] = group
    if params is None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
    parts = []
    for p in params:
        if id(p) not in groups:
            raise ValueError("a parameter of the model is not managed by the optimizer")
        group = groups[id(p)]
        state = optimizer.state.get(p, {})
        key = "max_exp_avg_sq" if group.get("amsgrad", False) else "exp_avg_sq"
        if key not in state:
            raise ValueError(f"optimizer has no {key!r} for a parameter of shape "
                             f"{tuple(p.shape)}: take at least one Adam step first")
        step = int(float(state["step"]))
        v = state[key].detach().reshape(-1).to("cpu").double().numpy()
        parts.append(_adam_from_state(v, step=step, beta2=float(group["betas"][1]),
                                      eps=float(group["eps"])))
    return np.concatenate(parts)


def as_linear_operator(A):
    """A torch tensor or torch-based operator as a scipy ``LinearOperator`` on numpy arrays.

    Accepts a square ``torch.Tensor``, or any object with ``shape`` and ``@`` /
    ``matmat`` that takes and returns torch tensors (curvlinops' operators,
    :class:`HessianOperator`-like objects). scipy ``LinearOperator``s and numpy
    arrays are returned unchanged (they already work with
    :func:`lmatrank.estimate_rank`).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from lmatrank.torch import as_linear_operator
    >>> A = as_linear_operator(torch.diag(torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)))
    >>> A.shape, A.matmat(np.ones((3, 1))).ravel()
    ((3, 3), array([1., 2., 0.]))
    """
    _torch()
    if isinstance(A, (LinearOperator, np.ndarray)) or isinstance(A, HessianOperator):
        return A
    return host_linear_operator(A)
