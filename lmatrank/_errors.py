"""Exceptions and warnings raised by lmatrank."""

__all__ = ["BudgetError", "BudgetWarning", "CheckpointError", "ConvergenceWarning",
           "DivergenceError"]


class DivergenceError(ArithmeticError):
    """A stochastic run diverged (non-finite or exploding observable).

    Raised instead of returning a number the run cannot stand behind. The
    message says what was tried (step sizes, back-offs).

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> try:  # eta * lambda_max = 5 > 2: Euler-Maruyama is unstable
    ...     lmatrank.estimate_rank(np.diag([5.0, 1.0]), method="langevin", eta=1.0)
    ... except lmatrank.DivergenceError as exc:
    ...     print("refused:", str(exc).split(":")[0])
    refused: eta=1 is unstable
    """


class BudgetError(ValueError):
    """The product budget (``max_matvecs``) is too small to produce any answer.

    A ``ValueError`` subclass: the budget is an argument the caller chose.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> try:
    ...     lmatrank.estimate_rank(np.eye(50), method="langevin", max_matvecs=8)
    ... except lmatrank.BudgetError as exc:
    ...     print("budget too small")
    budget too small
    """


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: truncated, corrupt, or written by another run.

    Raised instead of silently restarting (or continuing with wrong data) when the file
    given as ``checkpoint=`` is not a complete lmatrank checkpoint, when a stored array
    does not match its recorded digest, or when it was written for another matrix or
    other settings (the message names what differs). A ``ValueError`` subclass: the file
    is an argument the caller chose.

    Examples
    --------
    >>> import os, tempfile, numpy as np, lmatrank
    >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
    >>> with open(path, "wb") as fh:
    ...     _ = fh.write(b"not a checkpoint")
    >>> try:
    ...     lmatrank.estimate_rank(np.eye(4), method="langevin", rng=0, checkpoint=path)
    ... except lmatrank.CheckpointError as exc:
    ...     print("refused")
    refused
    """


class ConvergenceWarning(RuntimeWarning):
    """A method stopped before its stopping rule was met (``converged=False``).

    Examples
    --------
    >>> import warnings, numpy as np, lmatrank
    >>> A = np.diag(np.geomspace(1e-4, 1.0, 30))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = lmatrank.estimate_rank(A, method="langevin", scheme="em", rtol=1e-4,
    ...                                  max_matvecs=2000, rng=0)
    >>> est.converged, any(issubclass(w.category, lmatrank.ConvergenceWarning) for w in caught)
    (False, True)
    """


class DivergedRun(Exception):
    """Internal signal: a run's observable became non-finite or exploded at `step`.

    Raised by the dynamics drivers (host and device) and caught by the
    estimators, which back off the step size or raise :class:`DivergenceError`.
    Not part of the public API (not in ``__all__``).
    """

    def __init__(self, step, value):
        super().__init__(f"diverged at step {step} (observable {value!r})")
        self.step = step
        self.value = value


BudgetWarning = ConvergenceWarning
