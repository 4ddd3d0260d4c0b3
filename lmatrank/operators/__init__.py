"""Operators: input normalisation with product counting, preconditioners, and
structured operators (Kronecker products, linear-network Hessians)."""

from ._base import CountingOperator, SquaredOperator, as_operator, check_symmetric
from ._preconditioner import Preconditioner, as_preconditioner

__all__ = ["CountingOperator", "Preconditioner", "SquaredOperator", "as_operator",
           "as_preconditioner", "check_symmetric"]

try:  # structured operators (added alongside; keep the core importable while they land)
    from ._kronecker import KroneckerProduct  # noqa: F401
    from ._linear_network import LinearNetworkHessian, random_minimum  # noqa: F401

    __all__ += ["KroneckerProduct", "LinearNetworkHessian", "random_minimum"]
except ImportError:  # pragma: no cover
    pass
