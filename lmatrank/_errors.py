"""Exceptions and warnings raised by lmatrank."""

__all__ = ["BudgetError", "BudgetWarning", "ConvergenceWarning", "DivergenceError"]


class DivergenceError(ArithmeticError):
    """A stochastic run diverged (non-finite or exploding observable).

    Raised instead of returning a number the run cannot stand behind. The
    message says what was tried (step sizes, back-offs).
    """


class BudgetError(ValueError):
    """The product budget (``max_matvecs``) is too small to produce any answer.

    A ``ValueError`` subclass: the budget is an argument the caller chose.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> try:
    ...     lmatrank.estimate_rank(np.eye(50), method="langevin", max_matvecs=20)
    ... except lmatrank.BudgetError as exc:
    ...     print("budget too small")
    budget too small
    """


class ConvergenceWarning(RuntimeWarning):
    """A method stopped before its stopping rule was met (``converged=False``)."""


BudgetWarning = ConvergenceWarning
