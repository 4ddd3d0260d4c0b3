"""Checkpoint files (lmatrank._checkpoint) and resumable Langevin runs.

A resumed run must be bit-identical to an uninterrupted one with the same rng: every
field of the result, every array of ``info``. Interruptions are made in-process (a
progress callback that raises at a chosen product count) and, in a subprocess, by
SIGKILL at several points (after the file first appears, after a later save).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import lmatrank
from lmatrank import CheckpointError
from lmatrank._checkpoint import (Checkpoint, CheckpointWriter, array_digest, check_resumable,
                                  fingerprints_match, load_checkpoint, operator_fingerprint,
                                  save_checkpoint)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- helpers
def canonical(value):
    """An exactly comparable form of a result: arrays by dtype, shape and SHA-256 of their
    bytes, floats by their hex form (NaN equals NaN, -0.0 differs from 0.0)."""
    if isinstance(value, lmatrank.RankEstimate):
        return {f: canonical(getattr(value, f)) for f in
                ("rank", "estimate", "stderr", "threshold", "matvecs", "method", "converged",
                 "resolution", "interval", "info")}
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        return ["array", a.dtype.str, list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value).hex()
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def _low_rank(n=120, r=20, seed=0):
    gen = np.random.default_rng(seed)
    U, _ = np.linalg.qr(gen.standard_normal((n, r)))
    return U @ np.diag(np.linspace(1.0, 10.0, r)) @ U.T


class _Stop(Exception):
    pass


def _stopper(at_matvecs):
    """A progress callback that interrupts the run once `at_matvecs` products are done."""
    def progress(matvecs, budget, estimate, stderr):
        if matvecs >= at_matvecs:
            raise _Stop
    return progress


def _estimate(A, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
        return lmatrank.estimate_rank(A, method="langevin", **kw)


# ----------------------------------------------------------------------------- file format
def test_round_trip_keeps_arrays_settings_and_big_integers(tmp_path):
    path = tmp_path / "run.ckpt"
    state = np.random.default_rng(5).bit_generator.state  # 128-bit integers
    arrays = {"log": np.linspace(0, 1, 7), "q": np.arange(6, dtype=np.float32).reshape(3, 2),
              "count": np.array([3, 4], dtype=np.int64)}
    ck = Checkpoint("langevin", {"shape": [3, 3], "summary": [1.5, -2.0]},
                    {"n_chains": 8, "rtol": None, "noise": "rademacher"},
                    {"gen": state, "steps": 12, "mask": np.array([1, 2], dtype=np.uint32),
                     "value": float("inf")}, arrays)
    save_checkpoint(path, ck)
    back = load_checkpoint(path)
    assert back.kind == "langevin" and back.fingerprint == ck.fingerprint
    assert back.settings == ck.settings
    assert back.progress["gen"] == state and back.progress["steps"] == 12
    assert back.progress["value"] == float("inf")
    assert back.progress["mask"].dtype == np.uint32 and back.progress["mask"].tolist() == [1, 2]
    assert set(back.arrays) == set(arrays)
    for name, a in arrays.items():
        assert back.arrays[name].dtype == a.dtype and np.array_equal(back.arrays[name], a)
    g = np.random.default_rng()
    g.bit_generator.state = back.progress["gen"]
    assert g.integers(1 << 62) == np.random.default_rng(5).integers(1 << 62)


def test_missing_file_is_none_and_a_directory_is_refused(tmp_path):
    assert load_checkpoint(tmp_path / "absent.ckpt") is None
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_nothing_is_pickled(tmp_path):
    with pytest.raises(TypeError, match="nothing is pickled"):
        save_checkpoint(tmp_path / "x.ckpt", Checkpoint("k", {}, {}, {},
                                                        {"o": np.array([object()])}))
    with pytest.raises(TypeError, match="cannot store a set"):
        save_checkpoint(tmp_path / "x.ckpt", Checkpoint("k", {}, {"s": {1, 2}}, {}))
    assert not os.listdir(tmp_path)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    first = Checkpoint("k", {}, {"v": 1}, {}, {"a": np.zeros(3)})
    save_checkpoint(path, first)
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0600

    def failing_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        save_checkpoint(path, Checkpoint("k", {}, {"v": 2}, {}, {"a": np.ones(3)}))
    monkeypatch.undo()
    # the old file is intact and the temporary file is gone
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]
    assert load_checkpoint(path).settings == {"v": 1}


def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer(tmp_path):
    path = tmp_path / "run.ckpt"
    stale = tmp_path / ".run.ckpt.abc123.tmp"
    stale.write_bytes(b"PK\x03\x04 partial")
    other = tmp_path / ".other.ckpt.abc123.tmp"
    other.write_bytes(b"keep")
    CheckpointWriter(path, every_seconds=0.0)
    assert not stale.exists() and other.exists()


def test_writer_is_due_after_its_interval_only(tmp_path):
    w = CheckpointWriter(tmp_path / "r.ckpt", every_seconds=3600.0)
    assert not w.due()
    w0 = CheckpointWriter(tmp_path / "r.ckpt", every_seconds=0.0)
    assert w0.due()
    with pytest.raises(ValueError, match="every_seconds"):
        CheckpointWriter(tmp_path / "r.ckpt", every_seconds=-1.0)


def _saved(tmp_path):
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, Checkpoint("k", {}, {"v": 1}, {"p": 2},
                                     {"log": np.arange(4000, dtype=np.float64)}))
    return path


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, 0.9, -1])
def test_truncated_file_is_refused(tmp_path, keep):
    path = _saved(tmp_path)
    data = path.read_bytes()
    cut = int(keep * len(data)) if isinstance(keep, float) else (keep if keep >= 0
                                                                 else len(data) - 1)
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated or corrupt|unusable"):
        load_checkpoint(path)


def test_flipped_byte_is_refused(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    i = data.find(np.arange(4000, dtype=np.float64)[1000:1001].tobytes())
    assert i > 0
    data[i + 3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC|corrupt"):
        load_checkpoint(path)


def test_array_not_matching_its_digest_is_refused(tmp_path):
    """A well-formed archive whose array was replaced (valid CRC) fails the SHA-256 check."""
    path = _saved(tmp_path)
    with zipfile.ZipFile(path) as z:
        meta = z.read("__meta__.npy")
    forged = tmp_path / "forged.ckpt"
    with open(forged, "wb") as fh:
        np.savez(fh, log=np.arange(4000, dtype=np.float64) + 1.0)
    with zipfile.ZipFile(forged, "a") as z:
        z.writestr("__meta__.npy", meta)
    with pytest.raises(CheckpointError, match="SHA-256 digest"):
        load_checkpoint(forged)


def test_foreign_npz_and_other_version_are_refused(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    with open(foreign, "wb") as fh:
        np.savez(fh, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="no metadata"):
        load_checkpoint(foreign)
    path = _saved(tmp_path)
    with zipfile.ZipFile(path) as z:
        log = z.read("log.npy")
        meta = json.loads(np.load(path)["__meta__"].tobytes())
    meta["version"] = 99
    other = tmp_path / "other.ckpt"
    with open(other, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with zipfile.ZipFile(other, "a") as z:
        z.writestr("log.npy", log)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(other)


# ----------------------------------------------------------------------------- fingerprint
def test_fingerprint_matches_the_same_matrix_in_any_form():
    A = _low_rank(60, 10)
    dense = operator_fingerprint(lambda X: A @ X, 60, np.float64)
    S = sp.csr_array(A)
    sparse = operator_fingerprint(lambda X: S @ X, 60, np.float64)
    assert fingerprints_match(dense, sparse)
    assert dense["digest"] == operator_fingerprint(lambda X: A @ X, 60, np.float64)["digest"]


@pytest.mark.parametrize("change", ["entry", "shape", "dtype", "scale"])
def test_fingerprint_tells_another_matrix(change):
    A = _low_rank(60, 10)
    ref = operator_fingerprint(lambda X: A @ X, 60, np.float64)
    if change == "entry":
        B = A.copy()
        B[3, 7] += 1e-6
        B[7, 3] += 1e-6
        other = operator_fingerprint(lambda X: B @ X, 60, np.float64)
    elif change == "shape":
        B = _low_rank(61, 10)
        other = operator_fingerprint(lambda X: B @ X, 61, np.float64)
    elif change == "dtype":
        B = A.astype(np.float32)
        other = operator_fingerprint(lambda X: B @ X, 60, np.float32)
    else:
        other = operator_fingerprint(lambda X: 2.0 * (A @ X), 60, np.float64)
    assert not fingerprints_match(ref, other)


def test_check_resumable_names_what_differs():
    fp = operator_fingerprint(lambda X: X, 5, np.float64)
    ck = Checkpoint("langevin", fp, {"n_chains": 8, "rtol": 1e-3}, {})
    check_resumable(ck, "langevin", fp, {"n_chains": 8, "rtol": 1e-3})  # the same run
    with pytest.raises(CheckpointError, match="'em' run, not a 'langevin'"):
        check_resumable(Checkpoint("em", fp, {}, {}), "langevin", fp, {})
    other = operator_fingerprint(lambda X: 2 * X, 5, np.float64)
    with pytest.raises(CheckpointError, match="another matrix"):
        check_resumable(ck, "langevin", other, {"n_chains": 8, "rtol": 1e-3})
    with pytest.raises(CheckpointError, match=r"n_chains \(saved 8, now 16\)"):
        check_resumable(ck, "langevin", fp, {"n_chains": 16, "rtol": 1e-3})
    with pytest.raises(CheckpointError, match=r"rtol \(saved 0.001, now None\)"):
        check_resumable(ck, "langevin", fp, {"n_chains": 8, "rtol": None})


def test_array_digest_sees_dtype_shape_and_bytes():
    a = np.arange(6.0)
    assert array_digest(a) == array_digest(a.copy())
    assert array_digest(a) != array_digest(a.reshape(2, 3))
    assert array_digest(a) != array_digest(a.astype(np.float32))


# ----------------------------------------------------------------------------- API
def test_checkpoint_is_refused_for_other_methods_and_without_a_seed(tmp_path):
    A = np.eye(4)
    path = tmp_path / "r.ckpt"
    for method in ("auto", "exact", "slq"):
        with pytest.raises(ValueError, match="checkpoint applies to method='langevin'"):
            lmatrank.estimate_rank(A, method=method, rng=0, checkpoint=path)
    with pytest.raises(ValueError, match="reproducible rng"):
        lmatrank.estimate_rank(A, method="langevin", checkpoint=path)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        lmatrank.estimate_rank(A, method="langevin", rng=0, checkpoint=3)
    with pytest.raises(ValueError, match="checkpoint_every"):
        lmatrank.estimate_rank(A, method="langevin", rng=0, checkpoint=path,
                               checkpoint_every=-1)
    assert not path.exists()


def test_corrupt_checkpoint_is_refused_not_restarted(tmp_path):
    path = tmp_path / "r.ckpt"
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        _estimate(_low_rank(), rng=0, max_matvecs=2000, checkpoint=path)
    assert path.read_bytes() == b"garbage"


@pytest.mark.parametrize("change, match", [
    ("matrix", "another matrix"),
    ("n_chains", r"n_chains \(saved None, now 4\)"),
    ("rng", "rng_state"),
    ("backend", "backend"),
    ("scheme", "scheme"),
    ("dtype", "another matrix"),
])
def test_other_matrix_or_settings_are_refused(tmp_path, change, match):
    A = _low_rank()
    path = tmp_path / "r.ckpt"
    kw = dict(rng=1, max_matvecs=2000, backend="numpy")
    _estimate(A, checkpoint=path, **kw)
    saved = path.read_bytes()
    if change == "matrix":
        A = A.copy()
        A[0, 0] += 1e-3
    elif change == "dtype":
        A = A.astype(np.float32)
    else:
        kw.update({"n_chains": dict(n_chains=4), "rng": dict(rng=2),
                   "backend": dict(backend="numba"), "scheme": dict(scheme="em")}[change])
    with pytest.raises(CheckpointError, match=match):
        _estimate(A, checkpoint=path, **kw)
    assert path.read_bytes() == saved  # a refused run does not touch the file


_BAOAB = dict(max_matvecs=48_000)
_EM = dict(scheme="em", max_matvecs=24_000)


@pytest.mark.parametrize("backend, options, matrix", [
    ("numpy", _BAOAB, None), ("numba", _BAOAB, None), ("numpy", _EM, None), ("numba", _EM, None),
    ("numpy", dict(rtol=1e-3, n_chains=4, target_rse=1e-4, max_matvecs=48_000), None),
    ("numba", dict(n_chains=2, max_matvecs=20_000), None),
    ("numpy", dict(scheme="em", n_chains=3, noise="gaussian", max_matvecs=12_000), None),
    ("numba", dict(max_matvecs=40_000), "float32"),
    ("numpy", dict(max_matvecs=40_000, preconditioner=np.linspace(0.5, 2.0, 120)), None),
    ("numba", dict(max_matvecs=60_000), "indefinite"),
    ("numpy", dict(max_matvecs=40_000), "huge"),
], ids=["baoab-numpy", "baoab-numba", "em-numpy", "em-numba", "baoab-rtol", "baoab-2-chains",
        "em-3-chains-gaussian", "float32", "preconditioner", "indefinite", "rescaled-input"])
def test_resume_after_interruptions_is_bit_identical(tmp_path, backend, options, matrix):
    A = _low_rank()
    if matrix == "float32":
        A = A.astype(np.float32)
    elif matrix == "indefinite":  # run on S**2 (two products per step)
        A = A + np.diag(np.r_[-2.0, np.zeros(119)])
    elif matrix == "huge":  # estimate_rank divides by 2**60 before the method runs
        A = A * 2.0 ** 60
    kw = dict(rng=7, backend=backend, **options)
    first = _estimate(A, **kw)
    reference = canonical(first)
    path = tmp_path / "run.ckpt"
    # BAOAB saves after each advance (<= 2048 steps), EM when a save is due
    for at in (0.45 * first.matvecs, 0.8 * first.matvecs):
        with pytest.raises(_Stop):
            _estimate(A, checkpoint=path, checkpoint_every=0.0, progress=_stopper(at), **kw)
    saved = load_checkpoint(path)
    assert saved is not None and saved.progress["state"] is not None
    assert not saved.progress["finished"]
    resumed = _estimate(A, checkpoint=path, **kw)
    assert canonical(resumed) == reference
    done = load_checkpoint(path)
    assert done.progress["finished"]
    # a rerun of a finished run replays it: the same result, no product computed
    again = _estimate(A, checkpoint=path, **kw)
    assert canonical(again) == reference


def test_uninterrupted_run_with_a_checkpoint_equals_one_without(tmp_path):
    A = _low_rank()
    kw = dict(rng=3, backend="numpy", max_matvecs=5_000)
    assert canonical(_estimate(A, checkpoint=tmp_path / "r.ckpt", checkpoint_every=0.0, **kw)) \
        == canonical(_estimate(A, **kw))


def test_finished_run_is_replayed_without_products(tmp_path, monkeypatch):
    A = _low_rank()
    path = tmp_path / "r.ckpt"
    kw = dict(rng=3, backend="numpy", max_matvecs=5_000)
    first = _estimate(A, checkpoint=path, **kw)
    from lmatrank.backends import NumpyBackend

    def forbidden(*args, **kwargs):
        raise AssertionError("a replayed step was computed")

    monkeypatch.setattr(NumpyBackend, "baoab_update", forbidden)
    assert canonical(_estimate(A, checkpoint=path, **kw)) == canonical(first)


@pytest.mark.parametrize("scheme", ["baoab", "em"])
def test_resume_across_a_divergence_and_back_off_is_bit_identical(tmp_path, scheme):
    """Two Lanczos steps underestimate lambda_max: the first run diverges, the estimator
    backs off (or squares) and runs again; an interruption after the divergence resumes
    through the logged divergence."""
    gen = np.random.default_rng(0)
    U, _ = np.linalg.qr(gen.standard_normal((100, 100)))
    A = U @ np.diag(np.r_[np.linspace(1, 2, 40), -0.5, np.zeros(59)]) @ U.T
    A = (A + A.T) / 2
    kw = dict(rng=0, lanczos_steps=2, max_matvecs=40_000, backend="numpy", scheme=scheme)
    ref = _estimate(A, **kw)
    assert ref.info["backoffs"], "the scenario must diverge once"
    path = tmp_path / "r.ckpt"
    with pytest.raises(_Stop):  # just after the divergence
        _estimate(A, checkpoint=path, checkpoint_every=0.0, progress=_stopper(1_000), **kw)
    assert load_checkpoint(path) is not None
    with pytest.raises(_Stop):  # late in the second attempt: replays the divergence first
        _estimate(A, checkpoint=path, checkpoint_every=0.0,
                  progress=_stopper(0.9 * ref.matvecs), **kw)
    saved = load_checkpoint(path).progress
    kinds = [e["kind"] for e in saved["entries"]]
    assert "diverged" in kinds and kinds[-1] != "diverged" and saved["state"] is not None
    assert canonical(_estimate(A, checkpoint=path, **kw)) == canonical(ref)


def test_cli_checkpoint_option(tmp_path):
    from lmatrank._cli import main

    path = tmp_path / "a.npy"
    np.save(path, _low_rank())
    ckpt = tmp_path / "a.ckpt"
    assert main(["estimate", str(path), "--checkpoint", str(ckpt), "-q"]) == 2  # auto
    assert not ckpt.exists()
    args = ["estimate", str(path), "--method", "langevin", "--checkpoint", str(ckpt), "-q",
            "--max-matvecs", "3000", "--json"]
    assert main(args) == 0
    assert load_checkpoint(ckpt).progress["finished"]
    assert main(args[:-1] + ["-o", "n_chains=4"]) == 2  # other settings: refused


# ----------------------------------------------------------------------------- SIGKILL
_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys, warnings
    import numpy as np, scipy.sparse as sp, lmatrank
    sys.path.insert(0, {tests!r})
    from test_checkpoint import canonical
    warnings.simplefilter("ignore")
    A = sp.load_npz({matrix!r})
    est = lmatrank.estimate_rank(A, method="langevin", rng=11, checkpoint={ckpt!r},
                                 checkpoint_every=0.0, **{options!r})
    print(json.dumps(canonical(est)))
""")


def _matrix_file(tmp_path, n):
    """A sparse path-graph Laplacian plus a diagonal (steps cost ~0.1 ms)."""
    main = np.r_[np.linspace(1.0, 3.0, n // 2), np.zeros(n - n // 2)]
    off = np.r_[np.full(n // 2 - 1, -0.25), np.zeros(n - n // 2)]
    A = sp.diags([off, main, off], [-1, 0, 1], format="csr")
    path = tmp_path / "m.npz"
    sp.save_npz(path, A)
    return path


def _command(kind, tmp_path, matrix, ckpt, options):
    if kind == "script":
        script = tmp_path / "run.py"
        script.write_text(_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)),
                                         matrix=str(matrix), ckpt=str(ckpt), options=options))
        return [sys.executable, str(script)]
    argv = [sys.executable, "-m", "lmatrank", "estimate", str(matrix), "--method", "langevin",
            "--seed", "11", "--checkpoint", str(ckpt), "--json", "-q",
            "-o", "checkpoint_every=0.0"]
    for key, value in options.items():
        argv += ["-o", f"{key}={value!r}"]
    return argv


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _kill_when(argv, ckpt, saves, timeout=120.0):
    """Start `argv`; SIGKILL it once the checkpoint has been written `saves` more times
    (counted by its modification); returns the exit status (-9 when killed)."""
    def stamp():
        try:
            st = os.stat(ckpt)
            return (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            return None

    seen = stamp()
    changes = 0
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(), cwd=REPO)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            now = stamp()
            if now is not None and now != seen:
                seen = now
                changes += 1
                if changes >= saves:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.002)
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finish(argv):
    out = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record.pop("time_s", None)
    return record


def _differences(a, b, path=""):
    """Paths (and both values, shortened) where two JSON-like records differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in _differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, repr(a)[:120], repr(b)[:120])]


def _sigkill_resume(tmp_path, kind, n, options, kills):
    matrix = _matrix_file(tmp_path, n)
    reference = _finish(_command(kind, tmp_path, matrix, tmp_path / "ref.ckpt", options))
    ckpt = tmp_path / "run.ckpt"
    argv = _command(kind, tmp_path, matrix, ckpt, options)
    statuses, saved = [], []
    for saves in kills:
        statuses.append(_kill_when(argv, ckpt, saves))
        ck = load_checkpoint(ckpt)
        saved.append(None if ck is None else (len(ck.progress["entries"]),
                                              ck.progress["finished"]))
    # the first kill hit a running process that had saved (the file exists, unfinished)
    assert statuses[0] == -signal.SIGKILL, (statuses, saved)
    assert ckpt.exists()
    resumed = _finish(argv)
    assert resumed == reference, (statuses, saved, _differences(reference, resumed))
    assert load_checkpoint(ckpt).progress["finished"]
    return statuses


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    """A script killed by SIGKILL when the checkpoint first appears, rerun and killed
    again after its next save, then rerun to completion: the result equals the
    uninterrupted run's, bit for bit."""
    _sigkill_resume(tmp_path, "script", 1000, dict(backend="numpy", max_matvecs=40_000),
                    kills=[1, 1])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["script", "cli"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("scheme", ["baoab", "em"])
def test_sigkill_at_several_points_then_resume_is_bit_identical(tmp_path, kind, backend,
                                                               scheme):
    options = dict(backend=backend, max_matvecs=60_000, scheme=scheme)
    statuses = _sigkill_resume(tmp_path, kind, 2000, options, kills=[1, 2, 1, 3])
    assert statuses.count(-signal.SIGKILL) >= 2, statuses  # a resumed run was killed too


# ----------------------------------------------------------------------------- gradients
_LAM = np.r_[np.linspace(1.0, 3.0, 10), np.zeros(10)]


def _loss(t):
    return 0.5 * _LAM @ t ** 2 + 0.1 * np.sum(_LAM * t ** 4)


def _grad(t):
    return _LAM * t + 0.4 * _LAM * t ** 3


def _interrupting_grad(after):
    calls = [0]

    def grad(t):
        calls[0] += 1
        if calls[0] == after:
            raise _Stop
        return _grad(t)
    return grad


@pytest.mark.parametrize("eta", [None, 0.3], ids=["lanczos-step", "user-step"])
def test_gradient_only_run_resumes_bit_identically(tmp_path, eta):
    kw = dict(n_steps=3000, rng=0, eta=eta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmatrank.langevin.NonQuadraticWarning)
        reference = lmatrank.hessian_rank(_loss, _grad, np.zeros(20), **kw)
        path = tmp_path / "walk.ckpt"
        for after in (8_000, 16_000):
            with pytest.raises(_Stop):
                lmatrank.hessian_rank(_loss, _interrupting_grad(after), np.zeros(20),
                                      checkpoint=path, checkpoint_every=0.0, **kw)
        saved = load_checkpoint(path)
        assert saved.kind == "hessian_langevin" and saved.progress["state"] is not None
        resumed = lmatrank.hessian_rank(_loss, _grad, np.zeros(20), checkpoint=path, **kw)
    assert canonical(resumed) == canonical(reference)
    with pytest.raises(CheckpointError, match=r"another matrix \(saved 20x20"):
        lmatrank.hessian_rank(_loss, lambda t: 2.0 * _grad(t), np.zeros(20), checkpoint=path,
                              **kw)
    with pytest.raises(CheckpointError, match=r"n_steps \(saved 3000, now 2000\)"):
        lmatrank.hessian_rank(_loss, _grad, np.zeros(20), checkpoint=path,
                              **dict(kw, n_steps=2000))
    with pytest.raises(CheckpointError, match="another matrix"):  # gradients near theta0
        lmatrank.hessian_rank(_loss, _grad, np.full(20, 1e-3), checkpoint=path, **kw)
    with pytest.raises(CheckpointError, match="'hessian_langevin' run, not a 'langevin'"):
        _estimate(np.diag(_LAM), rng=0, checkpoint=path)
    with pytest.raises(ValueError, match="reproducible rng"):
        lmatrank.hessian_rank(_loss, _grad, np.zeros(20), checkpoint=path,
                              **dict(kw, rng=None))
