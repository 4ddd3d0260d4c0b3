"""Where the spectral methods keep their arrays: an array namespace ``xp`` and a product.

The spectral methods (Lanczos, Chebyshev/KPM, SLQ, sketch) are written against
an array namespace ``xp`` for everything of size ``n`` (probe blocks, Lanczos
bases, Chebyshev recurrences, sketch blocks) and bring only small results
(tridiagonal coefficients, moments, Gram and Rayleigh–Ritz matrices no larger
than the sketch width) to the host, with one explicit conversion, for the small
dense linear algebra done by scipy.

:func:`spectral_arrays` decides the namespace and the product from the
operator and the ``backend`` option; it never imports cupy or torch itself
(only :mod:`lmatrank.backends` does): a device namespace comes from the
backend object's ``xp``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from ..backends import get_backend, operator_device_namespace

__all__ = ["SpectralArrays", "spectral_arrays", "to_host"]


class SpectralArrays(NamedTuple):
    """Array namespace, product and host conversion used by a spectral method.

    Attributes
    ----------
    xp : module
        Array namespace of the blocks (numpy, or the backend's, e.g. cupy).
    apply : callable
        ``apply(X) -> S @ X`` for an ``xp`` block ``X`` of shape ``(n, b)``;
        counts ``b`` products on the operator.
    asnumpy : callable
        Explicit host copy of a (small) ``xp`` array.
    backend : object or None
        The backend doing the products (None: the operator's own host product).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import as_operator
    >>> from lmatrank.spectral._arrays import spectral_arrays
    >>> op = as_operator(np.eye(3), check_symmetry=False)
    >>> arrays = spectral_arrays(op)
    >>> arrays.xp is np, arrays.backend is None
    (True, True)
    """

    xp: Any
    apply: Callable
    asnumpy: Callable
    backend: Any


def to_host(xp, x):
    """Host (numpy) copy of an `xp` array: ``xp.asnumpy`` where the namespace has one.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.spectral._arrays import to_host
    >>> a = np.arange(3.0)
    >>> to_host(np, a) is a          # host arrays are not copied
    True
    """
    convert = getattr(xp, "asnumpy", None)
    return np.asarray(x) if convert is None else convert(x)


def spectral_arrays(op, backend=None):
    """Array namespace and counted product for running a spectral method on `op`.

    Parameters
    ----------
    op : CountingOperator
        The operator.
    backend : None, str or backend object
        ``None``: host numpy arrays and ``op.matmat`` for host inputs; for an
        input that lives on a CUDA device (CuPy, cupyx sparse, torch CUDA), the
        CuPy backend (:func:`lmatrank.backends.get_backend`) and its device
        product, so that no block crosses to the host. A name or backend object:
        that backend's ``xp`` (numpy when it has none, e.g. ``"numpy"``,
        ``"numba"``) and its ``matmat``.

    Returns
    -------
    SpectralArrays

    Raises
    ------
    ValueError
        Unknown backend name, an unavailable backend, or a device input without
        a usable CuPy backend.
    TypeError
        `backend` is neither a name nor a backend object.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.backends import CupyBackend
    >>> from lmatrank.operators import as_operator
    >>> from lmatrank.spectral._arrays import spectral_arrays
    >>> op = as_operator(np.diag([1.0, 2.0]), check_symmetry=False)
    >>> arrays = spectral_arrays(op, CupyBackend(xp=np))   # numpy standing in for cupy
    >>> arrays.apply(np.ones((2, 1))).ravel(), op.matvecs
    (array([1., 2.]), 1)
    """
    if backend is None and operator_device_namespace(op) is None:
        return SpectralArrays(np, op.matmat, np.asarray, None)
    be = get_backend(backend, op)
    xp = getattr(be, "xp", None) or np
    asnumpy = getattr(be, "asnumpy", None) or (lambda x: to_host(xp, x))
    matmat = be.matmat

    def apply(X):
        return matmat(op, X)

    return SpectralArrays(xp, apply, asnumpy, be)
