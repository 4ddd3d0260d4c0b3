"""Array-namespace helpers: where an input lives, and host products of foreign objects.

A leaf module (it imports no other lmatrank module), so that the operator layer
can recognise GPU arrays and PyTorch objects without importing the backends or
the PyTorch adapter. Detection works from the object alone -- its module name,
``__array_namespace__``, ``device`` or ``__dlpack_device__`` -- and never
imports cupy or torch; the product helpers look the library up (in
``sys.modules`` first) only when the first product is taken.

Examples
--------
>>> import numpy as np
>>> from lmatrank._xp import device_namespace
>>> device_namespace(np.eye(3)) is None
True
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
from scipy.sparse.linalg import LinearOperator

__all__ = ["device_host_apply", "device_namespace", "host_linear_operator", "load_cupy",
           "root_module"]

# DLPack device types that are CUDA memory (kDLCUDA, kDLCUDAManaged)
_DLPACK_CUDA = (2, 13)


def root_module(obj) -> str:
    """Top-level package name of the type of `obj` (``"torch"``, ``"cupy"``, ``"numpy"``...)."""
    return type(obj).__module__.split(".", 1)[0]


def _module(name):
    """The library `name`, from ``sys.modules`` when already imported."""
    return sys.modules.get(name) or importlib.import_module(name)


def load_cupy():
    """Import cupy and check that a CUDA device is usable.

    Raises
    ------
    ImportError
        When cupy is not installed, or installed without a usable device or
        driver (the message says which).
    """
    try:
        cp = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        raise ImportError(f"cupy is not importable ({type(exc).__name__}: {exc}); install the "
                          "extra lmatrank[gpu] (see docs/gpu.md)") from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy_backends.cuda.api.runtime.CUDARuntimeError
        raise ImportError(f"cupy is installed but no CUDA device is usable ({exc})") from None
    if count < 1:
        raise ImportError("cupy is installed but no CUDA device is present")
    return cp


def device_namespace(A):
    """Name of the device namespace `A` lives in: ``"cupy"``, ``"torch"`` or None (host).

    Decided from the object alone, without importing cupy or torch: CuPy arrays,
    cupyx sparse matrices and cupyx LinearOperators (module ``cupy``/``cupyx``),
    objects whose ``__array_namespace__()`` is cupy, PyTorch tensors or
    operators on a CUDA device (``.device.type == "cuda"``), and any object
    whose ``__dlpack_device__()`` is CUDA memory.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank._xp import device_namespace
    >>> device_namespace(np.eye(3)) is None
    True
    >>> class FakeCupyMatrix:
    ...     __module__ = "cupyx.scipy.sparse"
    >>> device_namespace(FakeCupyMatrix())
    'cupy'
    """
    root = root_module(A)
    if root in ("cupy", "cupyx"):
        return "cupy"
    namespace = getattr(A, "__array_namespace__", None)
    if callable(namespace):
        try:
            name = getattr(namespace(), "__name__", "")
        except Exception:
            name = ""
        if name.split(".", 1)[0] in ("cupy", "cupyx"):
            return "cupy"
    device = getattr(A, "device", None)
    if device is not None and root_module(device) == "torch" \
            and getattr(device, "type", None) == "cuda":
        return "torch"
    dlpack_device = getattr(A, "__dlpack_device__", None)
    if callable(dlpack_device):
        try:
            kind = int(dlpack_device()[0])
        except Exception:
            kind = None
        if kind in _DLPACK_CUDA:
            return "torch" if root == "torch" else "cupy"
    return None


def _apply_of(A):
    return A.matmat if hasattr(A, "matmat") else (lambda X: A @ X)


def device_host_apply(A):
    """``X -> A @ X`` for a device matrix `A`, taking and returning *host* blocks.

    Serves only the set-up products of an estimate (symmetry probes, Lanczos
    bounds): each call moves one block to the device and back. The Langevin
    dynamics on the CuPy backend never use it. cupy/torch are looked up on first
    use, so wrapping a device object is free; a device input on a machine
    without a usable cupy fails on its first product with a ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank._xp import device_host_apply
    >>> class FakeCupyMatrix:          # anything from the cupy namespace counts as a device input
    ...     __module__ = "cupy"
    ...     shape = (2, 2)
    >>> apply = device_host_apply(FakeCupyMatrix())   # lazy: nothing imported or moved yet
    >>> callable(apply)
    True
    """
    space = device_namespace(A)
    apply = _apply_of(A)

    def host_matmat(X):
        if space == "torch":
            torch = _module("torch")
            block = torch.from_numpy(np.ascontiguousarray(X)).to(A.device)
            return apply(block).cpu().numpy()
        try:
            cp = load_cupy()
        except ImportError as exc:
            raise ValueError(f"the input lives on a CUDA device but cupy is not usable here: "
                             f"{exc}") from None
        return cp.asnumpy(apply(cp.asarray(X)))

    return host_matmat


def host_linear_operator(A):
    """A torch tensor or torch-based operator as a scipy ``LinearOperator`` on numpy blocks.

    `A` is a square ``torch.Tensor`` or any object with ``shape`` and ``@`` /
    ``matmat`` that takes and returns torch tensors (curvlinops' operators).
    Each product converts the numpy block to a tensor of the operator's dtype
    on its device, applies `A` without autograd, and returns a numpy block.
    torch itself is looked up when the first product is taken. The public face
    of this helper is :func:`lmatrank.torch.as_linear_operator`.

    Raises
    ------
    ValueError
        `A` is not square and 2-D.
    TypeError
        `A`'s dtype is not float32 or float64.
    """
    shape = tuple(getattr(A, "shape", ()))
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"operator must be square and 2-D, got shape {shape}")
    dtype = getattr(A, "dtype", None)
    name = "torch.float64" if dtype is None or root_module(dtype) != "torch" else str(dtype)
    if name not in ("torch.float32", "torch.float64"):
        raise TypeError(f"unsupported operator dtype {dtype}; expected float32 or float64")
    np_dtype = np.float32 if name == "torch.float32" else np.float64
    device = getattr(A, "device", "cpu")
    apply = _apply_of(A)

    def matmat(X):
        torch = _module("torch")
        Xt = torch.as_tensor(np.ascontiguousarray(X), dtype=getattr(torch, name[6:]),
                             device=device)
        with torch.no_grad():
            Y = apply(Xt)
        return Y.detach().cpu().numpy()

    return LinearOperator(shape, matvec=lambda x: matmat(np.reshape(x, (-1, 1)))[:, 0],
                          matmat=matmat, dtype=np_dtype)
