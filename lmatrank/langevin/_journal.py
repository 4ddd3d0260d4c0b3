"""Checkpoint and resume of Langevin runs by deterministic replay.

Everything a Langevin run does before and between its chain segments (symmetry probes,
Lanczos bounds, planning, the statistics of the stopping rule) is a deterministic
function of the input, the options and the random generator's state. Only the chain
segments are expensive. A :class:`RunJournal` therefore logs, for every segment a chain
driver runs (one :meth:`~._dynamics.BaoabChains.advance` call, or a stretch of an
Euler–Maruyama run):

- the observables it returned (``steps x chains`` float64, exactly as pushed into the
  record),
- the products it cost and the product count before it,
- the random generator's state after it,
- for a segment that diverged, the step and value of the divergence;

and, at each save, the chain state after the last logged segment (positions, velocities,
``S q`` or ``theta``, step count). A rerun with the same checkpoint runs the same control
flow: a driver call that the log covers returns the logged observables, adds the logged
products to the operator's count and sets the generator to the logged state without
computing anything; at the last logged segment the chains take the saved state and the
run continues live. The result is therefore bit-identical to an uninterrupted run with
the same ``rng`` (on a deterministic backend: numpy, numba). A driver call that does not
match the next logged segment (another kind, another length, another product count
before it) raises :class:`~lmatrank.CheckpointError`: the saved run was made by other code
or settings.

The file format, its atomic writes and the compatibility checks are those of
:mod:`lmatrank._checkpoint`; docs/checkpoint.md describes the guarantees and limits.
"""

from __future__ import annotations

import numpy as np

from .._checkpoint import (Checkpoint, CheckpointWriter, check_resumable, load_checkpoint,
                           operator_fingerprint, to_json)
from .._errors import CheckpointError, DivergedRun

__all__ = ["KIND", "RunJournal", "open_journal"]

#: ``Checkpoint.kind`` of a Langevin run.
KIND = "langevin"


def _uncounted(op):
    """``op``'s product without changing its product count (for the fingerprint)."""
    def apply(X):
        before = op.matvecs
        try:
            return op.matmat(X)
        finally:
            op.matvecs = before
    return apply


def open_journal(op, gen, path, *, every_seconds, settings, kind=KIND):
    """The journal of a run of `op` saved to `path` (resuming the file when it exists).

    `settings` (JSON values) identify the run together with the operator's fingerprint
    and the generator's state at the start; a file written for another matrix or other
    settings, or by another `kind` of run, raises :class:`~lmatrank.CheckpointError`.
    `op` needs ``n``, ``dtype``, ``matmat`` and a settable ``matvecs`` (its product count).
    """
    fingerprint = operator_fingerprint(_uncounted(op), op.n, op.dtype)
    settings = dict(settings, rng_state=to_json(gen.bit_generator.state),
                    matvecs_at_start=int(op.matvecs))
    saved = load_checkpoint(path)
    if saved is not None:
        check_resumable(saved, kind, fingerprint, settings)
    writer = CheckpointWriter(path, every_seconds)
    return RunJournal(op, gen, writer=writer, fingerprint=fingerprint, settings=settings,
                      saved=saved, kind=kind)


class RunJournal:
    """Log of a Langevin run's chain segments; replays a saved log (module docstring).

    Parameters
    ----------
    op : CountingOperator
        The operator whose product count the run reports (``S``; a run on ``S**2``
        counts on it too).
    gen : numpy.random.Generator
        The run's generator (its state is logged after every segment).
    writer : lmatrank._checkpoint.CheckpointWriter
    fingerprint, settings : dict
        Stored in every save.
    saved : lmatrank._checkpoint.Checkpoint or None
        A checkpoint of the same run to replay.
    kind : str
        ``Checkpoint.kind`` of the saves.
    """

    def __init__(self, op, gen, *, writer, fingerprint, settings, saved=None, kind=KIND):
        self.op, self.gen, self.writer, self.kind = op, gen, writer, kind
        self.fingerprint, self.settings = fingerprint, settings
        self.entries, self.rows = [], []
        self._calls = 0
        self._live = 0  # entries logged by this process (not replayed)
        self._queue, self._queue_rows, self._state = [], [], None
        self.finished = False
        if saved is not None:
            self._load(saved)
        self.resumed = bool(self._queue)

    # ------------------------------------------------------------------ loading
    def _load(self, saved):
        progress = saved.progress
        try:
            entries = list(progress["entries"])
            log = np.asarray(saved.arrays.get("log", np.zeros(0)), dtype=np.float64)
            offset = 0
            for entry in entries:
                size = int(entry["rows"]) * int(entry["chains"])
                self._queue_rows.append(log[offset:offset + size].reshape(
                    int(entry["rows"]), int(entry["chains"])))
                offset += size
            if offset != log.size:
                raise ValueError(f"log holds {log.size} values, entries describe {offset}")
            state = progress.get("state")
            if state is not None:
                arrays = {name: saved.arrays["state_" + name] for name in state["arrays"]}
                self._state = (int(state["entry"]), dict(state["meta"]), arrays)
            self.finished = bool(progress.get("finished", False))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {self.writer.path!r} has an inconsistent "
                                  f"progress record ({type(exc).__name__}: {exc})") from None
        self._queue = entries

    # ------------------------------------------------------------------ replay
    def open_call(self):
        """A new driver call's id (chains object or EM run); ids follow the control flow."""
        self._calls += 1
        return self._calls - 1

    @property
    def replaying(self):
        """Whether logged segments remain to be replayed."""
        return len(self.entries) < len(self._queue)

    def matvecs(self):
        return int(self.op.matvecs)

    def take(self, call, kind, n_rows=None):
        """Replay the next logged segment of driver call `call`, or None (run it live).

        Returns ``(rows, state)``: the logged observables and, when this segment is the
        last one logged and the checkpoint holds the chain state after it, that state
        (``(meta, arrays)``; otherwise None). A logged divergence is replayed by raising
        :class:`DivergedRun`. A segment that does not match (another call, kind or
        length, another product count before it) raises :class:`CheckpointError`.
        """
        i = len(self.entries)
        if i >= len(self._queue):
            return None
        entry, rows = self._queue[i], self._queue_rows[i]
        if int(entry["call"]) != call:
            return None
        if entry["kind"] not in (kind, "diverged") or (
                entry["kind"] == kind and n_rows is not None and int(entry["rows"]) != n_rows):
            raise CheckpointError(
                f"the checkpoint's segment {i} ({entry['kind']}, {entry['rows']} steps) does "
                f"not match this run ({kind}, {n_rows} steps): it was written by other code "
                "or settings; delete it to start afresh")
        before = self.matvecs()
        if before != int(entry["matvecs_before"]):
            raise CheckpointError(
                f"the checkpoint's segment {i} started after {entry['matvecs_before']} "
                f"products, this run after {before}: it was written by other code or "
                "settings; delete it to start afresh")
        self.op.matvecs = before + int(entry["products"])
        self.gen.bit_generator.state = entry["gen_state"]
        self.entries.append(entry)
        self.rows.append(rows)
        if entry["kind"] == "diverged":
            raise DivergedRun(int(entry["step"]), float(entry["value"]))
        state = None
        if self._state is not None and self._state[0] == i and not self.replaying:
            state = self._state[1:]
        return rows, state

    # ------------------------------------------------------------------ recording
    def record(self, call, kind, rows, matvecs_before, state, *, may_save=True):
        """Log a segment run live; save the checkpoint if one is due (and `may_save`).

        `state` is a callable returning ``(meta, arrays)`` of the chains after the
        segment (host arrays; None: no state can be saved here), called only when a
        save happens.
        """
        rows = np.asarray(rows, dtype=np.float64)
        self._append(dict(call=call, kind=kind, rows=int(rows.shape[0]),
                          chains=int(rows.shape[1]), matvecs_before=int(matvecs_before),
                          products=self.matvecs() - int(matvecs_before)), rows)
        if may_save and self.writer.due():
            self.save(state())

    def record_divergence(self, call, matvecs_before, exc, n_chains):
        """Log a segment that raised :class:`DivergedRun` (`exc`); save if due (no chain
        state is needed: the diverged chains are never continued)."""
        self._append(dict(call=call, kind="diverged", rows=0, chains=int(n_chains),
                          matvecs_before=int(matvecs_before),
                          products=self.matvecs() - int(matvecs_before),
                          step=int(exc.step), value=float(exc.value)),
                     np.zeros((0, int(n_chains))))
        if self.writer.due():
            self.save(None)

    def _append(self, entry, rows):
        if self.replaying:  # cannot happen when the control flow is the saved one
            raise CheckpointError("a live segment was run while the checkpoint still had "
                                  "segments to replay: it was written by other code or "
                                  "settings; delete it to start afresh")
        entry["gen_state"] = to_json(self.gen.bit_generator.state)
        self.entries.append(entry)
        self.rows.append(rows)
        self._live += 1

    def save(self, state=None, *, finished=False):
        """Write the log (and the chains' `state` after its last segment) now."""
        arrays = {"log": np.concatenate([r.ravel() for r in self.rows])
                  if self.rows else np.zeros(0)}
        state_record = None
        if state is not None:
            meta, chain_arrays = state
            for name, a in chain_arrays.items():
                arrays["state_" + name] = np.asarray(a)
            state_record = dict(entry=len(self.entries) - 1, meta=meta,
                                arrays=sorted(chain_arrays))
        progress = dict(entries=self.entries, state=state_record, finished=bool(finished),
                        matvecs=self.matvecs())
        self.writer.save(Checkpoint(self.kind, self.fingerprint, self.settings, progress,
                                    arrays))

    def finish(self):
        """The run ended: save the complete log (kept; a rerun replays it at once)."""
        if self.replaying:
            raise CheckpointError(f"the run ended with {len(self._queue) - len(self.entries)} "
                                  "logged segments not replayed: the checkpoint was written "
                                  "by other code or settings; delete it to start afresh")
        if self._live or not self.finished:
            self.save(finished=True)
            self.finished = True
