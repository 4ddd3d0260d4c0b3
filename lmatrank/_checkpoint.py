"""Checkpoint files: atomic, pickle-free saves of a run's state, and their checks.

A checkpoint is a ``.npz`` archive (a zip of ``.npy`` arrays, read with
``allow_pickle=False``) holding

- ``__meta__``: UTF-8 JSON (as a ``uint8`` array) with the format name and version, the
  run's ``kind``, the operator ``fingerprint``, the ``settings`` the run was started with,
  its ``progress`` (whatever the run needs to continue: a log of what it did, step counts,
  random-generator states) and the SHA-256 digest of every other array;
- the arrays of :attr:`Checkpoint.arrays` (logged observables, chain states), one entry
  each.

:func:`save_checkpoint` writes a temporary file in the target's directory, flushes and
fsyncs it and renames it over the target (:func:`os.replace`, atomic on POSIX and
Windows): a reader sees the previous complete file or the new complete file, never a
partial one, whenever the writer is killed. :func:`load_checkpoint` refuses (with
:class:`~lmatrank.CheckpointError`) anything that is not a complete file of this format
— a truncated or corrupt zip, a missing entry, an array whose digest differs — and
:func:`check_resumable` refuses a checkpoint written for another matrix (the
:func:`operator_fingerprint` differs) or other settings, naming what differs.

Only numpy and the standard library are used (a leaf of the package).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tempfile
import time
import zipfile

import numpy as np

from ._errors import CheckpointError

__all__ = ["Checkpoint", "CheckpointWriter", "FORMAT", "VERSION", "array_digest",
           "check_resumable", "fingerprints_match", "from_json", "load_checkpoint",
           "operator_fingerprint", "save_checkpoint", "to_json"]

#: Format name stored in every checkpoint's metadata.
FORMAT = "lmatrank-checkpoint"
#: Format version; a file of another version is refused.
VERSION = 1
_META = "__meta__"
#: Seed of the fingerprint's probe vectors.
FINGERPRINT_SEED = 0x5EED_C0DE
#: Seeded directions each probe product is projected on.
_FINGERPRINT_DIRECTIONS = 4


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds.

    Attributes
    ----------
    kind : str
        The kind of run (e.g. ``"langevin"``); a checkpoint resumes only a run of its kind.
    fingerprint : dict
        :func:`operator_fingerprint` of the operator the run was started on.
    settings : dict
        The run's settings (JSON values); a resumed run must have the same.
    progress : dict
        How far the run got and what it needs to continue (JSON values; numpy arrays and
        numpy scalars inside are converted by :func:`to_json`).
    arrays : dict
        Named numpy arrays (numeric dtypes only: no object arrays, nothing pickled).

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
    >>> ck = Checkpoint("demo", {"shape": [2, 2]}, {"seed": 1}, {"steps": 3},
    ...                 {"x": np.arange(3.0)})
    >>> save_checkpoint(path, ck)
    >>> back = load_checkpoint(path)
    >>> back.settings, back.progress, back.arrays["x"].tolist()
    ({'seed': 1}, {'steps': 3}, [0.0, 1.0, 2.0])
    >>> load_checkpoint(path + ".missing") is None
    True
    """

    kind: str
    fingerprint: dict
    settings: dict
    progress: dict
    arrays: dict = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- JSON
def to_json(value):
    """`value` with numpy arrays and scalars turned into JSON values (recursively).

    Arrays become ``{"__ndarray__": [...], "dtype": "..."}`` (restored by :func:`from_json`);
    Python ints of any size stay ints (a generator state's 128-bit words survive).

    >>> to_json({"a": np.int64(3), "b": np.array([1, 2], dtype=np.uint32)})
    {'a': 3, 'b': {'__ndarray__': [1, 2], 'dtype': 'uint32'}}
    """
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.name}
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint's metadata")


def from_json(value):
    """Inverse of :func:`to_json` (arrays restored with their dtype)."""
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "dtype"}:
            return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


# ----------------------------------------------------------------------------- digests
def array_digest(array):
    """SHA-256 (hex) of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(a.dtype.str.encode())
    h.update(repr(tuple(a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _check_array(name, value):
    if not isinstance(name, str) or not name or name == _META or "/" in name:
        raise ValueError(f"invalid checkpoint array name {name!r}")
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"checkpoint array {name!r} has dtype {a.dtype}; only numeric arrays "
                        "are stored (nothing is pickled)")
    return a


# ----------------------------------------------------------------------------- save / load
def save_checkpoint(path, ckpt):
    """Write `ckpt` to `path` atomically (temporary file, fsync, :func:`os.replace`).

    The temporary file lives in the directory of `path` (a rename is atomic only within
    one file system) and is removed if writing fails.
    """
    if not isinstance(ckpt, Checkpoint):
        raise TypeError(f"expected a Checkpoint, got {type(ckpt).__name__}")
    path = os.fspath(path)
    arrays = {name: _check_array(name, a) for name, a in ckpt.arrays.items()}
    meta = dict(format=FORMAT, version=VERSION, kind=str(ckpt.kind),
                fingerprint=to_json(ckpt.fingerprint), settings=to_json(ckpt.settings),
                progress=to_json(ckpt.progress),
                digests={name: array_digest(a) for name, a in arrays.items()})
    text = json.dumps(meta, sort_keys=True).encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a saved file gets the usual mode
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{_META: np.frombuffer(text, dtype=np.uint8)}, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _temporary_prefix(path):
    return "." + os.path.basename(path) + "."


def _remove_stale_temporaries(path):
    """Remove temporary files a killed writer of `path` left behind (never the target)."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temporary_prefix(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    """Make the rename durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path):
    """The :class:`Checkpoint` stored at `path`, or None when no file exists there.

    Raises
    ------
    CheckpointError
        The file is not a complete checkpoint of this format: truncated or corrupt
        archive, missing or unreadable metadata, another format version, a missing or
        extra array, or an array whose SHA-256 digest differs from the recorded one.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path {path!r} is a directory")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {exc}") from None
    try:
        meta, arrays = _parse(data)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path!r} is unusable: {exc}") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            UnicodeDecodeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupt "
                              f"({type(exc).__name__}: {exc}); delete it to start afresh") \
            from None
    return Checkpoint(kind=meta["kind"], fingerprint=from_json(meta["fingerprint"]),
                      settings=from_json(meta["settings"]),
                      progress=from_json(meta["progress"]), arrays=arrays)


def _parse(data):
    """``(meta, arrays)`` of a checkpoint's bytes; raises on anything incomplete."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        bad = archive.testzip()  # CRC-32 of every member
        if bad is not None:
            raise CheckpointError(f"archive member {bad!r} fails its CRC check (corrupt)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        names = set(npz.files)
        if _META not in names:
            raise CheckpointError("no metadata entry (not an lmatrank checkpoint)")
        meta = json.loads(npz[_META].tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError("not an lmatrank checkpoint (unknown format)")
        if meta.get("version") != VERSION:
            raise CheckpointError(f"format version {meta.get('version')!r}; this lmatrank "
                                  f"reads version {VERSION}")
        for key in ("kind", "fingerprint", "settings", "progress", "digests"):
            if key not in meta:
                raise CheckpointError(f"metadata lacks {key!r}")
        digests = meta["digests"]
        if set(digests) != names - {_META}:
            raise CheckpointError(f"arrays {sorted(names - {_META})} do not match the "
                                  f"recorded {sorted(digests)}")
        arrays = {}
        for name, digest in digests.items():
            a = npz[name]
            if array_digest(a) != digest:
                raise CheckpointError(f"array {name!r} does not match its SHA-256 digest "
                                      "(corrupt)")
            arrays[name] = a
    return meta, arrays


# ----------------------------------------------------------------------------- fingerprint
def _to_host(Y):
    if hasattr(Y, "get") and not isinstance(Y, np.ndarray):  # CuPy
        Y = Y.get()
    elif hasattr(Y, "detach"):  # torch
        Y = Y.detach().cpu().numpy()
    return np.asarray(Y, dtype=np.float64)


def operator_fingerprint(matmat, n, dtype, *, probes=2, seed=FINGERPRINT_SEED):
    """Shape, dtype and a compact summary of a few seeded products of an operator.

    ``Y = matmat(X)`` for a seeded ``(n, probes)`` standard normal block ``X`` (in
    `dtype`); each column of ``Y`` is summarised by its norm and its projections on four
    seeded unit directions. The summary is compared with a tolerance
    (:func:`fingerprints_match`), not bit for bit, so the same matrix matches whatever
    the summation order of its product (threads, BLAS), while another matrix —
    different entries beyond the tolerance, shape or dtype — does not. ``digest`` hashes
    shape, dtype and the summary rounded to 6 significant digits (for display).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([3.0, 2.0, 0.0])
    >>> fa = operator_fingerprint(lambda X: A @ X, 3, np.float64)
    >>> fb = operator_fingerprint(lambda X: (A + 1e-3) @ X, 3, np.float64)
    >>> fingerprints_match(fa, operator_fingerprint(lambda X: A @ X, 3, np.float64))
    True
    >>> fingerprints_match(fa, fb)
    False
    """
    n = int(n)
    dtype = np.dtype(dtype)
    probes = int(probes)
    if n < 1 or probes < 1:
        raise ValueError(f"need n >= 1 and probes >= 1, got n={n}, probes={probes}")
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, probes)).astype(dtype)
    D = gen.standard_normal((n, _FINGERPRINT_DIRECTIONS))
    D /= np.linalg.norm(D, axis=0)
    Y = _to_host(matmat(X))
    if Y.shape != (n, probes):
        raise ValueError(f"operator returned shape {Y.shape} for a block of shape {(n, probes)}")
    norms = np.linalg.norm(Y, axis=0)
    proj = D.T @ Y
    summary = [float(v) for v in np.r_[norms, proj.ravel()]]
    rounded = ["%.6g" % v for v in summary]
    digest = hashlib.sha256(json.dumps([n, dtype.str, probes, seed, rounded]).encode())
    return dict(shape=[n, n], dtype=dtype.name, probes=probes, seed=int(seed),
                summary=summary, digest=digest.hexdigest())


def fingerprints_match(saved, current):
    """Whether two :func:`operator_fingerprint` results describe the same operator.

    Shape, dtype, probes and seed must be equal; each summary number must agree within
    ``rtol * max|summary|`` with ``rtol = 1e-4`` for float32 and ``1e-9`` for float64
    operators (far above the rounding of a product, far below any real change).
    """
    for key in ("shape", "dtype", "probes", "seed"):
        if saved.get(key) != current.get(key):
            return False
    a = np.asarray(saved.get("summary", []), dtype=np.float64)
    b = np.asarray(current.get("summary", []), dtype=np.float64)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    rtol = 1e-4 if current.get("dtype") == "float32" else 1e-9
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return bool(np.all(np.abs(a - b) <= rtol * scale))


def _describe(fp):
    return f"{fp.get('shape', ['?', '?'])[0]}x{fp.get('shape', ['?', '?'])[-1]} {fp.get('dtype')}"


def check_resumable(ckpt, kind, fingerprint, settings):
    """Raise :class:`~lmatrank.CheckpointError` unless `ckpt` continues this run.

    The run is described by its `kind`, the :func:`operator_fingerprint` of its operator
    and its `settings` (compared after a JSON round trip, so tuples equal lists). The
    message names what differs: another kind of run, another matrix, or the settings
    that changed (saved and current values).

    >>> ck = Checkpoint("langevin", {"shape": [2, 2]}, {"n_chains": 8}, {})
    >>> check_resumable(ck, "langevin", {"shape": [2, 2]}, {"n_chains": 16})
    Traceback (most recent call last):
    ...
    lmatrank._errors.CheckpointError: the checkpoint was written with other settings: n_chains (saved 8, now 16); use another checkpoint file or the saved settings
    """
    if ckpt.kind != kind:
        raise CheckpointError(f"the checkpoint was written by a {ckpt.kind!r} run, not a "
                              f"{kind!r} run")
    if not fingerprints_match(ckpt.fingerprint, fingerprint):
        raise CheckpointError(
            f"the checkpoint was written for another matrix (saved {_describe(ckpt.fingerprint)}, "
            f"now {_describe(fingerprint)}; the seeded probe products differ); use another "
            "checkpoint file for this matrix (or objective)")
    saved, now = from_json(to_json(ckpt.settings)), from_json(to_json(settings))
    diffs = []
    for key in sorted(set(saved) | set(now)):
        if not _same(saved.get(key, _MISSING), now.get(key, _MISSING)):
            diffs.append(f"{key} (saved {_short(saved.get(key, _MISSING))}, "
                         f"now {_short(now.get(key, _MISSING))})")
    if diffs:
        raise CheckpointError("the checkpoint was written with other settings: "
                              + ", ".join(diffs)
                              + "; use another checkpoint file or the saved settings")


_MISSING = "<absent>"


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and bool(np.array_equal(a, b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _short(value, limit=60):
    text = repr(value) if not isinstance(value, np.ndarray) else f"array{value.shape}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------- writer
class CheckpointWriter:
    """Saves a run's checkpoint to `path` at most every `every_seconds` (and on request).

    Temporary files that a killed writer of the same `path` left behind are removed when
    the writer is made. :meth:`due` says whether the next save should happen now: `every_seconds` have passed
    since the last save (or since the writer was made), and at least ten times the
    duration of the last save, so that saving a large state never takes more than about a
    tenth of the run. :meth:`save` writes atomically (:func:`save_checkpoint`).

    >>> import os, tempfile
    >>> w = CheckpointWriter(os.path.join(tempfile.mkdtemp(), "r.ckpt"), every_seconds=3600)
    >>> w.due()
    False
    >>> w.save(Checkpoint("demo", {}, {}, {}))
    >>> w.saves, os.path.exists(w.path)
    (1, True)
    """

    def __init__(self, path, every_seconds=5.0):
        self.path = os.fspath(path)
        every = float(every_seconds)
        if not (every >= 0.0 and math.isfinite(every)):
            raise ValueError(f"every_seconds must be a finite number >= 0, got {every_seconds!r}")
        self.every_seconds = every
        self.saves = 0
        self._last = time.monotonic()
        self._cost = 0.0
        _remove_stale_temporaries(self.path)

    def due(self):
        """Whether a save is due now."""
        return time.monotonic() - self._last >= max(self.every_seconds, 10.0 * self._cost)

    def save(self, ckpt):
        """Write `ckpt` now (atomically) and restart the interval."""
        start = time.monotonic()
        save_checkpoint(self.path, ckpt)
        now = time.monotonic()
        self._cost = now - start
        self._last = now
        self.saves += 1
