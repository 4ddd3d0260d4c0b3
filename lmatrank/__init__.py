"""lmatrank: matrix-free rank estimation of large symmetric matrices.

The core method reads the rank from the expected loss of preconditioned
Langevin dynamics (Bar, Mulayoff, Michaeli & Talmon, AAAI 2024):
``rank(S) = lim (4 / sigma^2) E[0.5 theta^T S theta]``.

>>> import numpy as np, lmatrank
>>> lmatrank.estimate_rank(np.diag([2.0, 1.0, 0.0, 0.0]), method="exact").rank
2
"""

from ._api import available_methods, estimate_rank, register_method
from ._errors import BudgetError, CheckpointError, ConvergenceWarning, DivergenceError
from ._result import RankEstimate
from .langevin import hessian_rank  # gradient-only Hessian rank (the paper's Algorithm 1)
from . import operators, theory  # noqa: E402  (public submodules)

__version__ = "0.1.0"

__all__ = ["BudgetError", "CheckpointError", "ConvergenceWarning", "DivergenceError", "RankEstimate", "available_methods",
           "estimate_rank", "hessian_rank", "operators", "register_method", "theory", "__version__"]
