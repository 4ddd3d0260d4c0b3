"""Compute backends: numpy reference, Numba CPU kernels, CuPy GPU kernels.

Only this package runs numba or cupy kernels; algorithm code asks
:func:`get_backend` for an object implementing the interface documented on
:class:`NumpyBackend`. Backends are kernels on raw arrays: they see operators
through a protocol (``n``, ``dtype``, ``kind``, ``matrix``, ``count``,
``matmat`` and, for structured operators, ``to_device(xp, move)``), never the
operator classes, and they know nothing of the methods above them (see
``docs/architecture.md``). Recognising device inputs is the leaf
:mod:`lmatrank._xp`'s job (re-exported here as :func:`device_namespace` and
:func:`device_host_apply`).
"""

from __future__ import annotations

from ._numpy import NumpyBackend, rademacher
from ._counter_rng import CounterStream
from .._xp import device_host_apply, device_namespace
from ._cupy import CupyBackend, operator_device_namespace

__all__ = ["NumpyBackend", "available_backends", "get_backend", "rademacher", "register_backend"]


def _numba_factory(**options):
    """The Numba CPU backend; ImportError when numba cannot be imported."""
    from ._numba import NumbaBackend

    return NumbaBackend(**options)


_FACTORIES = {"numpy": NumpyBackend, "numba": _numba_factory}
# order in which backend=None tries backends for host (numpy) inputs
_AUTO_ORDER = ["numba", "numpy"]
# inputs living on a CUDA device (CuPy, torch CUDA, DLPack CUDA) go to this backend only
_FACTORIES["cupy"] = CupyBackend
__all__ += ["CounterStream", "CupyBackend", "NumbaBackend", "device_host_apply",
            "device_namespace"]


def __getattr__(name):
    # NumbaBackend is imported on first use: importing numba costs ~0.3 s
    if name == "NumbaBackend":
        from ._numba import NumbaBackend

        return NumbaBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_backend(name, factory):
    """Make ``backend=name`` available; ``factory()`` returns the backend or raises ImportError.

    Examples
    --------
    >>> from lmatrank.backends import NumpyBackend, get_backend, register_backend
    >>> class LoggingBackend(NumpyBackend):
    ...     name = "logging-numpy"
    >>> register_backend("logging-numpy", LoggingBackend)
    >>> get_backend("logging-numpy").name
    'logging-numpy'
    """
    _FACTORIES[name] = factory


def available_backends():
    """Names of the backends that can be instantiated here.

    Examples
    --------
    >>> from lmatrank.backends import available_backends
    >>> "numpy" in available_backends()
    True
    """
    names = []
    for name, factory in _FACTORIES.items():
        try:
            factory()
        except ImportError:
            continue
        names.append(name)
    return names


def get_backend(name=None, op=None):
    """Return a backend instance.

    Parameters
    ----------
    name : {None, "numpy", "numba", "cupy"} or backend object
        None picks the fastest available backend for `op`'s array namespace.
        A backend object (e.g. ``NumbaBackend(reorder=True)``, which is how
        backend options reach ``estimate_rank(..., backend=...)``) is returned
        as it is.
    op : CountingOperator, optional
        The operator the backend will drive.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.backends import get_backend
    >>> from lmatrank.operators import as_operator
    >>> get_backend("numpy").name
    'numpy'
    >>> get_backend(None, as_operator(np.eye(3))).name in ("numba", "numpy")  # host input
    True
    >>> be = NumpyBackend()
    >>> get_backend(be) is be
    True
    """
    if name is not None and not isinstance(name, str):
        missing = [m for m in ("matmat", "noise", "em_update") if not hasattr(name, m)]
        if missing:
            raise TypeError(f"backend must be a name or a backend object; {name!r} has no "
                            f"{', '.join(missing)}")
        return name
    if name is None and op is not None and operator_device_namespace(op) is not None:
        # device input: never copy it to the host behind the user's back
        try:
            return _FACTORIES["cupy"]()
        except ImportError as exc:
            raise ValueError("the input lives on a CUDA device but the cupy backend is "
                             f"not available here: {exc}") from None
    if name is None:
        for candidate in _AUTO_ORDER:
            if candidate in _FACTORIES:
                try:
                    return _FACTORIES[candidate]()
                except ImportError:
                    continue
        return NumpyBackend()
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(_FACTORIES)}")
    try:
        return _FACTORIES[name]()
    except ImportError as exc:
        raise ValueError(f"backend {name!r} is not available here: {exc}") from None
