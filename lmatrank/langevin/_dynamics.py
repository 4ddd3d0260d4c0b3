"""Step schemes of preconditioned Langevin dynamics on a quadratic loss.

Euler–Maruyama (paper eq. 21 with ``grad L(theta) = S theta`` and
``Sigma = sigma^2 G^-1``)::

    theta <- theta - eta G S theta + sqrt(eta) sigma L xi,     L L^T = G

run on ``c`` chains at once (``theta`` is an ``(n, c)`` block, one block product
per step). The rank observable recorded at step ``k`` (before the update) is

    corrected:    (2 theta^T S theta - eta (S theta)^T G (S theta)) / sigma^2
    uncorrected:  2 theta^T S theta / sigma^2          (= 4 f(theta) / sigma^2, the paper's)

BAOAB kinetic Langevin (Leimkuhler & Matthews, AMRX 2013, arXiv:1203.5428),
preconditioned by the substitution ``phi = L^-1 q`` (mass matrix ``G^-1``), on
positions ``q`` and velocities ``p``::

    p -= h/2 G S q;  q += h/2 p;  p = c p + sqrt(T (1 - c^2)) L xi;  q += h/2 p;  p -= h/2 G S q

with ``c = exp(-gamma h)`` and temperature ``T = sigma^2 / 2`` (the EM walk's
stationary law ``exp(-theta^T S theta / sigma^2)``). ``S q`` is shared by the
closing and the next opening half kick: one product per step. Its rank
observable ``q^T S q / T`` uses positions only and has stationary mean exactly
``rank(G S)`` for every stable step ``h^2 lambda_max < 4`` and every friction.
Starting from ``q_0 = 0`` and ``p_0 = sqrt(T) L xi`` its mean after ``k`` steps
is given per mode by a 2x2 linear recursion (:mod:`._modes`).

From ``theta_0 = 0`` the corrected EM observable has mean
``sum_i 1 - (1 - eta lambda_i)^(2k)`` exactly (``lambda_i`` the eigenvalues of
``G S``), which tends to ``rank(S)`` for every stable ``eta < 2 / lambda_max``;
the uncorrected one tends to ``sum_i 2 / (2 - eta lambda_i) >= rank`` (see
:mod:`lmatrank.theory` and docs/theory.md).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from .._errors import CheckpointError
from .._errors import DivergedRun  # re-exported: the drivers' divergence signal
from .._progress import RunningChainMean

__all__ = ["BaoabChains", "DivergedRun", "run_euler_maruyama"]


#: Rows of an EM run buffered before they are streamed into a recorder.
_EM_CHUNK = 2048


def run_euler_maruyama(op, backend, *, n_chains, n_steps, eta, sigma2, precond, noise, gen,
                       corrected=True, blowup=None, progress=None, burn_in=0, budget=None,
                       recorder=None, journal=None):
    """Simulate `n_steps` EM steps of `n_chains` chains from ``theta_0 = 0``.

    Returns
    -------
    trace : ndarray, shape (n_steps, n_chains), float64
        The rank observable of every chain at every step (row ``k`` is the
        state after ``k`` updates).

    With a `recorder` (:class:`._record.TraceRecorder`) the rows are streamed into it
    in chunks and the recorder is returned instead of the trace: memory independent
    of `n_steps` (except on a device backend, whose trace is recorded at the end).

    `progress`, if not None, is called after every step as
    ``progress(op.matvecs, budget, estimate, stderr)`` with the running mean of
    the rows after `burn_in` (see :mod:`lmatrank._progress`).

    With a `journal` (:class:`._journal.RunJournal`) the rows are logged and the
    checkpoint saved when due (the state ``theta`` after the last logged row); rows the
    journal already holds are replayed without products (deterministic replay).

    Raises
    ------
    DivergedRun
        When an observable is non-finite or exceeds `blowup` (default
        ``100 n + 1000``: a stable run's observable stays near ``rank <= n``).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.backends import NumpyBackend
    >>> from lmatrank.langevin import run_euler_maruyama
    >>> from lmatrank.operators import as_operator, as_preconditioner
    >>> op = as_operator(np.diag([1.0, 0.5, 0.0]), check_symmetry=False)
    >>> trace = run_euler_maruyama(op, NumpyBackend(), n_chains=64, n_steps=300, eta=1.0,
    ...                            sigma2=1.0, precond=as_preconditioner(None, 3),
    ...                            noise="rademacher", gen=np.random.default_rng(0))
    >>> trace.shape, float(trace[0, 0])          # theta_0 = 0
    ((300, 64), 0.0)
    >>> bool(abs(trace[100:].mean() - 2.0) < 0.1)  # rank 2 (corrected observable)
    True
    """
    call = journal.open_call() if journal is not None else None
    device_run = getattr(backend, "run_euler_maruyama", None)
    if device_run is not None:  # e.g. the CuPy backend keeps chains and trace on the device
        trace = _device_em(journal, call, n_chains, lambda: device_run(
            op, n_chains=n_chains, n_steps=n_steps, eta=eta, sigma2=sigma2, precond=precond,
            noise=noise, gen=gen, corrected=corrected, blowup=blowup, progress=progress,
            burn_in=burn_in, budget=budget))
        if recorder is not None:
            recorder.push(trace)
            return recorder
        return trace
    n = op.n
    if blowup is None:
        blowup = 100.0 * n + 1000.0
    theta = np.zeros((n, n_chains), dtype=op.dtype)
    chunk = n_steps if recorder is None else min(n_steps, _EM_CHUNK)
    trace = np.empty((chunk, n_chains), dtype=np.float64)
    noise_std = float(np.sqrt(eta * sigma2))
    inv_sigma2 = 1.0 / sigma2
    tracker = RunningChainMean(burn_in) if progress is not None else None
    fused_step = getattr(backend, "em_step", None)  # product + noise + update in one kernel
    log = _EmLog(journal, call, n_chains, n_steps)
    if log.state is not None:
        theta = np.array(log.state["theta"], dtype=op.dtype)
    for k in range(n_steps):
        if k < log.replayed:
            row = log.replay_rows[k]
        else:
            if fused_step is not None:
                theta, quad, gnorm = fused_step(op, theta, eta=eta, noise_std=noise_std,
                                                precond=precond, noise=noise, gen=gen)
            else:
                s_theta = backend.matmat(op, theta)
                quad, gnorm = backend.em_update(theta, s_theta, eta=eta, noise_std=noise_std,
                                                precond=precond, noise=noise, gen=gen)
            row = 2.0 * quad - eta * gnorm if corrected else 2.0 * quad
            row *= inv_sigma2
            worst = row.max()
            if not (worst < blowup and row.min() > -blowup):  # NaN fails both; EM with eta*lambda > 2 runs to -inf
                exc = DivergedRun(k, float(worst))
                log.diverged(exc)
                raise exc
            log.push(row, k, theta)
        trace[k % chunk] = row
        if tracker is not None:
            progress(op.matvecs, budget, *tracker.push(row))
        if recorder is not None and (k + 1) % chunk == 0:
            recorder.push(trace)
    log.close(theta)
    if recorder is not None:
        rest = n_steps % chunk if chunk else 0
        if rest:
            recorder.push(trace[:rest])
        return recorder
    return trace


def _device_em(journal, call, n_chains, run):
    """A device backend's whole EM run as one journal segment (replayed or run live)."""
    if journal is None:
        return run()
    taken = journal.take(call, "em")
    if taken is not None:
        return taken[0]
    before = journal.matvecs()
    try:
        trace = run()
    except DivergedRun as exc:
        journal.record_divergence(call, before, exc, n_chains)
        raise
    journal.record(call, "em", trace, before, lambda: None)
    return trace


class _EmLog:
    """The journal side of one host EM run: replayed rows, restored state, live logging."""

    def __init__(self, journal, call, n_chains, n_steps):
        self.journal, self.call, self.c = journal, call, n_chains
        self.replayed, self.replay_rows, self.state = 0, None, None
        self.pending = []
        if journal is None:
            return
        blocks = []
        while True:  # the segments of this run, in order (a logged divergence raises)
            taken = journal.take(call, "em")
            if taken is None:
                break
            blocks.append(taken[0])
            if taken[1] is not None:
                self.state = taken[1][1]
        if blocks:
            self.replay_rows = np.concatenate(blocks)
            self.replayed = self.replay_rows.shape[0]
            if self.replayed < n_steps and self.state is None:
                raise CheckpointError(
                    f"the checkpoint logs {self.replayed} of {n_steps} Euler-Maruyama steps "
                    "but not the state after them: it was written by other code or "
                    "settings; delete it to start afresh")
        self.mark = journal.matvecs()

    def push(self, row, k, theta):
        """Log the live row of step `k`; save when due (the state after step ``k + 1``)."""
        if self.journal is None:
            return
        self.pending.append(row)
        if self.journal.writer.due():
            self._record(lambda: (dict(steps=k + 1), dict(theta=np.asarray(theta))))

    def diverged(self, exc):
        if self.journal is not None:
            if self.pending:
                self._record(lambda: None, save=False)
            self.journal.record_divergence(self.call, self.mark, exc, self.c)

    def close(self, theta):
        if self.journal is not None and self.pending:
            self._record(lambda: None, save=False)

    def _record(self, state, save=True):
        rows = np.array(self.pending, dtype=np.float64).reshape(len(self.pending), self.c)
        self.pending = []
        self.journal.record(self.call, "em", rows, self.mark, state, may_save=save)
        self.mark = self.journal.matvecs()


class BaoabChains:
    """``n_chains`` BAOAB chains advanced in segments (for sequential stopping).

    Parameters
    ----------
    op : CountingOperator
        ``S`` (or ``S**2``).
    backend : backend object
        Provides ``matmat``, ``noise`` and ``baoab_update``, optionally
        ``baoab_step`` (product and update in one call). A backend with an
        array namespace ``xp`` whose ``on_device`` is true (the CuPy backend)
        keeps the chains, their observables and the trace of a segment on the
        device; it provides ``asnumpy`` and ``apply_precond_factor``.
    n_chains, h, friction, temperature, precond, noise, gen
        See :meth:`lmatrank.backends.NumpyBackend.baoab_update`; ``friction``
        is ``c = exp(-gamma h)``.
    blowup : float, optional
        Observable above which the run counts as diverged (default ``100 n + 1000``).
    check_every : int, optional
        Rows between divergence checks (and progress reports). Default: every
        row on the host; every 64 rows on a device, where each check is a
        device-to-host copy and a synchronisation.
    journal : lmatrank.langevin._journal.RunJournal, optional
        Logs every :meth:`advance` (and saves the checkpoint when due, with the state
        after it); an advance the journal already holds is replayed without products,
        and after the last logged one the saved state is restored.

    Notes
    -----
    Row ``k`` of the traces returned by :meth:`advance` (counting across calls)
    is the observable after ``k + 1`` steps; the initial state ``q_0 = 0`` has
    observable 0 and costs no product.
    """

    def __init__(self, op, backend, *, n_chains, h, friction, temperature, precond, noise, gen,
                 blowup=None, check_every=None, journal=None):
        self.op, self.backend = op, backend
        self.h, self.friction, self.temperature = float(h), float(friction), float(temperature)
        self.precond, self.noise_kind, self.gen = precond, noise, gen
        n = op.n
        self.blowup = 100.0 * n + 1000.0 if blowup is None else blowup
        self.xp = getattr(backend, "xp", np)
        on_device = bool(getattr(backend, "on_device", False))
        self.check_every = max(1, int(check_every if check_every is not None
                                      else (64 if on_device else 1)))
        self._to_host = backend.asnumpy if on_device else np.asarray
        self.q = self.xp.zeros((n, n_chains), dtype=op.dtype)
        self.s_q = self.xp.zeros_like(self.q)  # S @ 0: no product needed
        xi = backend.noise(gen, self.q.shape, noise, op.dtype)
        factor = getattr(backend, "apply_precond_factor", None)
        coloured = factor(precond, xi) if factor is not None else precond.apply_factor(xi)
        self.p = (math.sqrt(self.temperature) * coloured).astype(op.dtype, copy=False)
        self.steps = 0
        # the segment-end product reuses one buffer when the backend can write into it
        self._spare = None
        self._matmat_has_out = "out" in inspect.signature(backend.matmat).parameters
        self.journal = journal
        self._call = journal.open_call() if journal is not None else None
        self._stale = False

    def set_friction(self, friction):
        """Change ``c = exp(-gamma h)``; the stationary law does not depend on it."""
        self.friction = float(friction)

    def advance(self, n_steps, *, progress=None, tracker=None, budget=None):
        """Run `n_steps` steps; return their observables, shape ``(n_steps, n_chains)``,
        as a host float64 array.

        Costs exactly `n_steps` products (see :meth:`_advance_live`). With a journal the
        call is logged, or replayed when the journal holds it (no product is computed;
        the logged ones are counted).
        """
        journal = self.journal
        if journal is None:
            return self._advance_live(n_steps, progress, tracker, budget)
        taken = journal.take(self._call, "baoab", n_steps)
        if taken is not None:
            rows, state = taken
            if state is not None:
                self._restore(*state)
            elif not journal.replaying:  # the log ends here without the state after it
                self._stale = True
            if progress is not None and tracker is not None:
                for row in rows:
                    progress(self.op.matvecs, budget, *tracker.push(row))
            return rows
        before = journal.matvecs()
        try:
            trace = self._advance_live(n_steps, progress, tracker, budget)
        except DivergedRun as exc:
            journal.record_divergence(self._call, before, exc, self.q.shape[1])
            raise
        journal.record(self._call, "baoab", trace, before, self._state)
        return trace

    def _state(self):
        """``(meta, host arrays)`` of the chains (positions, velocities, ``S q``)."""
        arrays = dict(q=self._to_host(self.q), p=self._to_host(self.p))
        if self.s_q is not None:
            arrays["s_q"] = self._to_host(self.s_q)
        return dict(steps=int(self.steps), friction=self.friction), arrays

    def _restore(self, meta, arrays):
        """Take a saved state (the inverse of :meth:`_state`)."""
        xp, dtype = self.xp, self.q.dtype
        if arrays["q"].shape != self.q.shape:
            raise CheckpointError(f"the checkpoint's chains have shape {arrays['q'].shape}, "
                                  f"this run's {self.q.shape}")
        self.q = xp.array(arrays["q"], dtype=dtype)
        self.p = xp.array(arrays["p"], dtype=dtype)
        self.s_q = xp.array(arrays["s_q"], dtype=dtype) if "s_q" in arrays else None
        self._spare = None
        self.steps = int(meta["steps"])

    def _advance_live(self, n_steps, progress, tracker, budget):
        """:meth:`advance` without the journal.

        Costs exactly `n_steps` products. With a backend that has a full-step
        method (``baoab_step``: product and update in one call, e.g. the Numba
        backend's fused kernel) the product ``S q`` of each state is taken at
        the start of the step that leaves it, and the last state's product
        once at the end of the segment; otherwise after every update.
        """
        if self._stale:
            raise CheckpointError("the checkpoint logs this run's chains but not their state "
                                  "after the last logged segment; delete it to start afresh")
        xp = self.xp
        trace = np.empty((n_steps, self.q.shape[1]), dtype=np.float64)
        # rows are written where the chains live and brought to the host at each check
        rows = trace if xp is np and self.check_every == 1 else xp.empty(trace.shape, np.float64)
        inv_t = 1.0 / self.temperature
        full_step = getattr(self.backend, "baoab_step", None)
        kw = dict(h=self.h, friction=self.friction, temperature=self.temperature,
                  precond=self.precond, noise=self.noise_kind, gen=self.gen)
        first_step = self.steps
        checked = 0
        for j in range(n_steps):
            if self.s_q is None:  # only with full_step: the product is part of the step
                self.q, quad = full_step(self.op, self.q, self.p, **kw)
            else:
                quad = self.backend.baoab_update(self.q, self.p, self.s_q, **kw)
                self._spare, self.s_q = self.s_q, None
            if j > 0:  # quad is the observable of the state the step started from
                rows[j - 1] = quad * inv_t
                if j - checked >= self.check_every:
                    checked = self._check(trace, rows, checked, j, first_step, progress,
                                          tracker, budget)
            if full_step is None:
                self.s_q = self.backend.matmat(self.op, self.q)
            self.steps += 1
        if n_steps > 0:
            if self.s_q is None:
                self.s_q = self._segment_end_product()
            rows[n_steps - 1] = xp.einsum("ij,ij->j", self.q, self.s_q,
                                          dtype=np.float64) * inv_t
            self._check(trace, rows, checked, n_steps, first_step, progress, tracker, budget)
        return trace

    def _segment_end_product(self):
        spare = self._spare
        if (self._matmat_has_out and spare is not None and spare.shape == self.q.shape
                and spare.dtype == self.q.dtype):
            return self.backend.matmat(self.op, self.q, out=spare)
        return self.backend.matmat(self.op, self.q)

    def _check(self, trace, rows, start, stop, first_step, progress, tracker, budget):
        """Bring rows ``[start, stop)`` to the host, test them for divergence and report
        progress; returns `stop`."""
        if rows is not trace:
            trace[start:stop] = self._to_host(rows[start:stop])
        chunk = trace[start:stop]
        bad = ~((chunk.max(axis=1) < self.blowup) & (chunk.min(axis=1) > -self.blowup))
        if bad.any():  # NaN fails both tests
            first = int(np.argmax(bad))
            raise DivergedRun(first_step + start + first + 1, float(chunk[first].max()))
        if progress is not None and tracker is not None:
            for row in chunk:
                progress(self.op.matvecs, budget, *tracker.push(row))
        return stop
