"""Operators: input normalisation with product counting, preconditioners, and
structured operators (Kronecker products, linear-network Hessians)."""

from ._base import CountingOperator, SquaredOperator, as_operator, check_symmetric
from ._preconditioner import Preconditioner, as_preconditioner

__all__ = ["CountingOperator", "Preconditioner", "SquaredOperator", "as_operator",
           "as_preconditioner", "check_symmetric"]
from ._kronecker import KroneckerProduct
from ._linear_network import LinearNetworkHessian, random_minimum

__all__ += ["KroneckerProduct", "LinearNetworkHessian", "random_minimum"]
