"""The chain drivers' journal (checkpoint by deterministic replay), at the driver level."""

import numpy as np
import pytest

from lmatrank import CheckpointError
from lmatrank._checkpoint import load_checkpoint
from lmatrank.backends import NumpyBackend
from lmatrank.langevin._dynamics import BaoabChains, DivergedRun, run_euler_maruyama
from lmatrank.langevin._journal import open_journal
from lmatrank.langevin._record import TraceRecorder
from lmatrank.operators import as_operator, as_preconditioner

LAM = np.r_[np.linspace(0.5, 1.0, 6), np.zeros(4)]


def _op():
    return as_operator(np.diag(LAM), check_symmetry=False)


def _chains(op, gen, journal, h=1.0):
    return BaoabChains(op, NumpyBackend(), n_chains=3, h=h, friction=0.8, temperature=0.5,
                       precond=as_preconditioner(None, op.n), noise="rademacher", gen=gen,
                       journal=journal)


def _journal(op, gen, path, **settings):
    return open_journal(op, gen, path, every_seconds=0.0, settings=settings)


def _baoab_segments(path, segments, stop_after=None):
    op, gen = _op(), np.random.default_rng(4)
    journal = _journal(op, gen, path)
    chains = _chains(op, gen, journal)
    rows = []
    for i, k in enumerate(segments):
        rows.append(chains.advance(k))
        if stop_after is not None and i + 1 == stop_after:
            journal.save(chains._state())  # the save a due writer makes after a segment
            return rows, op, chains, journal
    journal.finish()
    return rows, op, chains, journal


def test_baoab_replay_returns_logged_rows_counts_products_and_restores_the_state(tmp_path):
    segments = [5, 7, 4]
    ref_rows, ref_op, ref_chains, _ = _baoab_segments(tmp_path / "ref.ckpt", segments)
    path = tmp_path / "run.ckpt"
    _baoab_segments(path, segments, stop_after=2)  # "killed" after two segments
    saved = load_checkpoint(path)
    assert [e["rows"] for e in saved.progress["entries"]] == [5, 7]
    assert saved.progress["state"]["meta"]["steps"] == 12
    rows, op, chains, journal = _baoab_segments(path, segments)
    assert journal.resumed
    for a, b in zip(rows, ref_rows):
        assert np.array_equal(a, b)
    assert op.matvecs == ref_op.matvecs == 3 * sum(segments)
    assert np.array_equal(chains.q, ref_chains.q) and np.array_equal(chains.p, ref_chains.p)


def test_replay_that_departs_from_the_log_is_refused(tmp_path):
    path = tmp_path / "run.ckpt"
    _baoab_segments(path, [5, 7], stop_after=2)
    op, gen = _op(), np.random.default_rng(4)
    chains = _chains(op, gen, _journal(op, gen, path))
    with pytest.raises(CheckpointError, match=r"segment 0 \(baoab, 5 steps\) does not match "
                                              r"this run \(baoab, 6 steps\)"):
        chains.advance(6)
    op, gen = _op(), np.random.default_rng(4)
    journal = _journal(op, gen, path)
    chains = _chains(op, gen, journal)
    op.count(1)  # one product more before the first segment than in the saved run
    with pytest.raises(CheckpointError, match="started after 0 products, this run after 1"):
        chains.advance(5)


def test_em_replay_and_divergence_replay(tmp_path):
    def run(path, **kw):
        op, gen = _op(), np.random.default_rng(9)
        journal = _journal(op, gen, path)
        rec = run_euler_maruyama(op, NumpyBackend(), n_chains=2, n_steps=40, eta=1.0,
                                 sigma2=1.0, precond=as_preconditioner(None, op.n),
                                 noise="rademacher", gen=gen, recorder=TraceRecorder(2),
                                 journal=journal, **kw)
        journal.finish()
        return rec, op, gen

    ref, ref_op, ref_gen = run(tmp_path / "a.ckpt")
    again, op, gen = run(tmp_path / "a.ckpt")  # finished: everything replayed
    assert np.array_equal(again.pieces()[0], ref.pieces()[0])
    assert op.matvecs == ref_op.matvecs and gen.random() == ref_gen.random()

    path = tmp_path / "d.ckpt"
    op, gen = _op(), np.random.default_rng(9)
    journal = _journal(op, gen, path)
    chains = _chains(op, gen, journal, h=2.5)  # h^2 lambda_max > 4: diverges
    with pytest.raises(DivergedRun) as first:
        chains.advance(200)
    journal.save(None)
    op2, gen2 = _op(), np.random.default_rng(9)
    chains = _chains(op2, gen2, _journal(op2, gen2, path), h=2.5)
    with pytest.raises(DivergedRun) as again_exc:
        chains.advance(200)  # replayed: no product computed, same divergence
    assert (again_exc.value.step, again_exc.value.value) == (first.value.step,
                                                             first.value.value)
    assert op2.matvecs == op.matvecs and gen2.random() == gen.random()
