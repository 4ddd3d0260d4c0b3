"""Langevin-dynamics rank estimation (Bar, Mulayoff, Michaeli & Talmon, AAAI 2024)."""

from ._dynamics import run_euler_maruyama
from ._estimator import DEFAULT_MAX_MATVECS, PAPER_SETTINGS, langevin_rank
from ._gradient import NonQuadraticWarning, adam_preconditioner, hessian_rank

__all__ = ["DEFAULT_MAX_MATVECS", "PAPER_SETTINGS", "langevin_rank", "run_euler_maruyama"]
__all__ += ["NonQuadraticWarning", "adam_preconditioner", "hessian_rank"]
