"""Progress display: callback interface, tqdm bar, terminal detection (real pty)."""

import io
import math
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lmatrank
from lmatrank._progress import ProgressBar, RunningChainMean, make_progress

REPO = Path(__file__).resolve().parents[1]


def test_running_chain_mean_matches_batch_statistics():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((50, 6)) + 10.0
    tracker = RunningChainMean(burn_in=20)
    for k, row in enumerate(rows):
        estimate, stderr = tracker.push(row)
        if k < 20:
            assert math.isnan(estimate) and math.isnan(stderr)
    window = rows[20:]
    assert estimate == pytest.approx(window.mean(), rel=1e-12)
    assert stderr == pytest.approx(window.mean(axis=0).std(ddof=1) / math.sqrt(6), rel=1e-12)
    single = RunningChainMean()
    assert math.isnan(single.push(np.array([4.0]))[1])


def test_make_progress_options():
    assert make_progress(None) is None
    assert make_progress(False) is None
    calls = []
    cb = make_progress(lambda *a: calls.append(a))
    cb(1, 2, 3.0, 4.0)
    assert calls == [(1, 2, 3.0, 4.0)]
    with pytest.raises(TypeError, match="progress must be True, False, None or a callable"):
        make_progress("yes")


def test_bar_silent_when_not_a_terminal():
    stream = io.StringIO()
    with ProgressBar(100, file=stream) as bar:
        bar(50, 100, 3.0, 0.1)
    assert not bar.enabled and stream.getvalue() == ""


def test_bar_draws_products_and_running_estimate_when_forced():
    stream = io.StringIO()
    bar = ProgressBar(1000, file=stream, force=True, min_interval=0.0, desc="langevin")
    assert bar.enabled
    bar(400, 1000, 12.345, 0.25)
    bar(1000, 1000, 12.5, math.nan)
    text = stream.getvalue()
    bar.close()
    assert "langevin" in text and "400/1000" in text and "rank 12.35 +- 0.25" in text
    assert "1000/1000" in text and "rank 12.50" in text


def test_bar_degrades_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    bar = ProgressBar(10, file=io.StringIO(), force=True)
    assert not bar.enabled
    bar(5, 10, 1.0, 0.1)  # a no-op, never an error
    bar.close()


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")  # the progress calls only
def test_estimator_calls_progress_with_running_estimate():
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.standard_normal((60, 12)))
    A = basis @ np.diag(np.linspace(1.0, 4.0, 12)) @ basis.T
    calls = []
    est = lmatrank.estimate_rank(A, method="langevin", rng=2, max_matvecs=2000, corrected=True,
                                 backend="numpy",
                                 progress=lambda *args: calls.append(args))
    matvecs = [c[0] for c in calls]
    assert matvecs == sorted(matvecs) and matvecs[-1] == est.matvecs
    budgets = {c[1] for c in calls}
    assert budgets == {est.matvecs}  # the plan spends exactly the announced budget
    final = calls[-1]
    assert final[2] == pytest.approx(est.estimate, rel=1e-12)
    assert final[3] == pytest.approx(est.stderr, rel=1e-9)  # 8 chains: chain-mean stderr
    burn = est.info["burn_in"]
    assert all(math.isnan(c[2]) for c in calls[:burn])


def test_progress_false_and_true_off_terminal_give_same_result():
    A = np.diag([3.0, 2.0, 1.0, 0.0, 0.0])
    quiet = lmatrank.estimate_rank(A, method="langevin", rng=0, max_matvecs=600,
                                   progress=False, backend="numpy")
    loud = lmatrank.estimate_rank(A, method="langevin", rng=0, max_matvecs=600,
                                  progress=True, backend="numpy")
    assert quiet.estimate == loud.estimate and quiet.matvecs == loud.matvecs


def _matrix_file(tmp_path):
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((300, 40)))
    np.save(tmp_path / "m.npy", basis @ np.diag(np.geomspace(0.01, 1.0, 40)) @ basis.T)
    return tmp_path / "m.npy"


def _cli_command(path):
    # the EM scheme (corrected=True) on the numpy backend: no JIT compilation to wait for
    return [sys.executable, "-m", "lmatrank", "estimate", str(path), "--max-matvecs", "8000",
            "--method", "langevin", "-o", "backend='numpy'", "-o", "corrected=True"]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120", TERM="xterm")


def test_progress_bar_appears_in_a_real_terminal(tmp_path):
    path = _matrix_file(tmp_path)
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(_cli_command(path), cwd=REPO, env=_env(), stdin=child_fd,
                            stdout=child_fd, stderr=child_fd, close_fds=True)
    os.close(child_fd)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(main_fd)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, screen
    assert "langevin:" in screen and re.search(r"\d+/\d+ \[", screen)  # products vs budget
    assert "\r" in screen  # redrawn in place
    assert "estimate" in screen and "products" in screen  # the result follows


def test_progress_bar_absent_when_piped(tmp_path):
    path = _matrix_file(tmp_path)
    proc = subprocess.run(_cli_command(path), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "langevin:" not in proc.stderr and "\r" not in proc.stderr + proc.stdout
    assert not re.search(r"\d+/\d+ \[", proc.stderr)
    assert "estimate" in proc.stdout
