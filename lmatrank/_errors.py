"""Exceptions and warnings raised by lmatrank."""

__all__ = ["DivergenceError", "BudgetWarning", "ConvergenceWarning"]


class DivergenceError(ArithmeticError):
    """A stochastic run diverged (non-finite or exploding observable).

    Raised instead of returning a number the run cannot stand behind. The
    message says what was tried (step sizes, back-offs).
    """


class ConvergenceWarning(RuntimeWarning):
    """A method stopped before its stopping rule was met (``converged=False``)."""


BudgetWarning = ConvergenceWarning
