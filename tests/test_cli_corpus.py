"""Every CLI subcommand on a corpus of bad files, in a subprocess with a 2 GB address-space
limit: exit code 1 or 2, exactly one line on standard error, never a traceback."""

import gzip
import os
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest

MEMORY_LIMIT = 2 * 2**30  # includes the interpreter, numpy, scipy and numba


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _npz(path, **arrays):
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    files = {}
    base = dict(format="csr", shape=[3, 3], data=np.ones(3))
    files["oob.npz"] = dict(indices=[0, 1, 7], indptr=[0, 1, 2, 3])
    files["huge_index.npz"] = dict(indices=[0, 1, 100_000_000], indptr=[0, 1, 2, 3])
    files["neg_index.npz"] = dict(indices=[0, 1, -2], indptr=[0, 1, 2, 3])
    files["indptr_order.npz"] = dict(indices=[0, 1, 2], indptr=[0, 5, 1, 2])
    files["indptr_len.npz"] = dict(indices=[0, 1, 2], indptr=[0, 1, 3])
    files["indptr_end.npz"] = dict(indices=[0, 1, 2], indptr=[0, 1, 2, 30])
    for name, extra in list(files.items()):
        _npz(d / name, **{**base, **extra})
    _npz(d / "float_shape.npz", **{**base, "shape": [3.5, 3.5], "indices": [0, 1, 2],
                                    "indptr": [0, 1, 2, 3]})
    _npz(d / "plain.npz", a=np.eye(3))
    np.save(d / "nonsquare.npy", np.ones((3, 4)))
    np.save(d / "one_d.npy", np.ones(5))
    np.save(d / "complex.npy", np.eye(3) * 1j)
    np.save(d / "nan.npy", np.full((3, 3), np.nan))
    np.save(d / "asym.npy", np.triu(np.ones((4, 4))))
    np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "full.npy", np.eye(60))
    (d / "truncated.npy").write_bytes((d / "full.npy").read_bytes()[:2000])
    (d / "random.npy").write_bytes(rng.bytes(4096))
    (d / "random.npz").write_bytes(rng.bytes(4096))
    (d / "random.mtx").write_bytes(rng.bytes(4096))
    (d / "random.mtx.gz").write_bytes(rng.bytes(4096))
    (d / "empty.npy").write_bytes(b"")
    (d / "empty.mtx").write_bytes(b"")
    (d / "text.npy").write_text("hello\n")
    (d / "big_coord.mtx").write_text("%%MatrixMarket matrix coordinate real general\n"
                                     "1000000000 1000000000 3\n1 1 1\n2 2 1\n3 3 1\n")
    (d / "big_array.mtx").write_text("%%MatrixMarket matrix array real general\n"
                                     "1000000 1000000\n1\n")
    (d / "short.mtx").write_text("%%MatrixMarket matrix coordinate real general\n"
                                 "10 10 50\n1 1 1\n")
    (d / "bad_entry.mtx").write_text("%%MatrixMarket matrix coordinate real general\n"
                                     "3 3 2\n1 1 x\n9 9 1\n")
    (d / "complex.mtx").write_text("%%MatrixMarket matrix coordinate complex general\n"
                                   "2 2 1\n1 1 1 1\n")
    with gzip.open(d / "big.mtx.gz", "wt") as fh:
        fh.write("%%MatrixMarket matrix array real general\n1000000 1000000\n1\n")
    with zipfile.ZipFile(d / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("format.npy", b"\0" * 64)
        zf.writestr("data.npy", b"\0" * (1 << 20))
    raw = bytearray((d / "bomb.npz").read_bytes())  # declare 3 GiB for data.npy, as a bomb does
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        start = raw.rfind(signature)
        raw[start + offset:start + offset + 4] = (3 * 2**30).to_bytes(4, "little")
    (d / "bomb.npz").write_bytes(bytes(raw))
    os.symlink("/dev/zero", d / "zero.mtx")
    os.mkfifo(d / "fifo.npy")
    os.mkdir(d / "dir.npy")
    (d / "wrong.txt").write_text("1 0\n0 1\n")
    return d


BAD = ["oob.npz", "huge_index.npz", "neg_index.npz", "indptr_order.npz", "indptr_len.npz",
       "indptr_end.npz", "float_shape.npz", "plain.npz", "nonsquare.npy", "complex.npy",
       "nan.npy", "asym.npy", "pickled.npy", "truncated.npy", "random.npy", "random.npz",
       "random.mtx", "random.mtx.gz", "empty.npy", "empty.mtx", "text.npy", "big_coord.mtx",
       "big_array.mtx", "short.mtx", "bad_entry.mtx", "complex.mtx", "big.mtx.gz", "bomb.npz",
       "zero.mtx", "fifo.npy", "dir.npy", "wrong.txt", "missing.npy"]
# files `info` describes instead of refusing (it reports what is wrong with them)
INFO_DESCRIBES = {"nonsquare.npy", "one_d.npy", "complex.npy", "nan.npy", "asym.npy"}


COMMANDS = ["estimate", "info", "estimate --method exact", "estimate --method slq --max-matvecs 5"]
# a fast subset (one subprocess each costs an interpreter start); the whole corpus is slow
FAST = [("oob.npz", "estimate"), ("bomb.npz", "info"), ("indptr_order.npz", "info"), ("random.npy", "estimate"),
        ("big_coord.mtx", "info"), ("fifo.npy", "estimate"), ("float_shape.npz", "info"),
        ("complex.mtx", "estimate --method exact")]


@pytest.mark.parametrize("name, command", FAST)
def test_bad_file_one_line_error_fast(corpus, name, command):
    test_bad_file_one_line_error(corpus, command, name)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", BAD)
def test_bad_file_one_line_error(corpus, command, name):
    args = command.split()
    proc = subprocess.run([sys.executable, "-m", "lmatrank", args[0], str(corpus / name),
                           *args[1:], "-q" if args[0] != "info" else "--json"],
                          capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory)
    assert "Traceback" not in proc.stderr, proc.stderr
    if args[0] == "info" and name in INFO_DESCRIBES:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "lmatrank: " in lines[0] and "internal error" not in lines[0], lines[0]
