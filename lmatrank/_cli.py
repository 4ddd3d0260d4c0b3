"""The ``lmatrank`` command line (also ``python -m lmatrank``).

Subcommands::

    lmatrank                       same as ``lmatrank demo``
    lmatrank demo   [options]      the built-in default problem (paper-protocol
                                   linear-network Hessian, d = 32, true rank 1024)
    lmatrank estimate FILE [opts]  rank of the matrix in FILE
    lmatrank FILE [options]        same as ``lmatrank estimate FILE``
    lmatrank info FILE             shape, nnz, symmetry, extreme eigenvalues

FILE is ``.npy`` (read with ``allow_pickle=False``), ``.npz`` (written by
``scipy.sparse.save_npz``) or Matrix Market ``.mtx`` / ``.mtx.gz``.

Exit codes: 0 success; 2 usage error or unreadable/invalid input; 1 the
estimation failed (divergence, no answer within the budget). Errors are one
line on standard error, without a traceback.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import os
import stat
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from ._api import _resolve, _scale_exponent, _scaled_operator, available_methods, estimate_rank
from ._errors import BudgetError, DivergenceError

__all__ = ["load_matrix", "default_problem", "main", "summarize_info", "estimate_to_dict"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_SUBCOMMANDS = ("demo", "estimate", "info")
_SUFFIXES = (".npy", ".npz", ".mtx", ".mtx.gz")
#: Arrays in ``info`` with at most this many entries are written out in ``--json``.
JSON_ARRAY_LIMIT = 16
#: Order and depth of the built-in default problem.
DEFAULT_PROBLEM = dict(d=32, depth=5)


class InputError(ValueError):
    """A file that cannot be read or does not hold a usable matrix."""


def default_max_memory():
    """The default memory cap of :func:`load_matrix`: a quarter of the physical memory
    (4 GiB where the platform does not say), at most half of an address-space limit
    (``ulimit -v``).

    >>> default_max_memory() > 0
    True
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    cap = int(total // 4) if total > 0 else 4 * 2**30
    try:  # an address-space limit (ulimit -v) lowers the cap to half of it
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit not in (resource.RLIM_INFINITY, -1) and limit > 0:
            cap = min(cap, limit // 2)
    except (ImportError, OSError, ValueError):
        pass
    return cap


def _bytes(n):
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def _check_memory(path, need, max_memory, what):
    if need > max_memory:
        raise InputError(f"{path}: {what} needs about {_bytes(need)}, more than the memory cap "
                         f"of {_bytes(max_memory)} (raise it with --max-memory / max_memory=)")


def _open_regular(path):
    """Open `path` for reading only if it is a regular file (never blocks on a FIFO)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or _one_line(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a directory, not a matrix file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a device, FIFO or socket); "
                         "only regular files are read")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or _one_line(exc)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
        os.close(fd)
        raise InputError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb"), info.st_size


def _load_npy(path, fh, size, max_memory):
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    except Exception:
        raise InputError(f"{path} is not a valid .npy file (no readable .npy header)") from None
    if dtype.hasobject:
        raise InputError(f"{path} holds pickled Python objects, which are never loaded "
                         "(save a numeric array instead)")
    count = math.prod(int(d) for d in shape)
    need = count * dtype.itemsize
    if need > size - fh.tell():
        raise InputError(f"{path} is truncated: its header declares shape {tuple(shape)} "
                         f"({need} bytes of {dtype}) but only {size - fh.tell()} bytes follow")
    _check_memory(path, need, max_memory, f"an array of shape {tuple(shape)}")
    fh.seek(0)
    return fmt.read_array(fh, allow_pickle=False)


def _load_npz(path, fh, max_memory):
    import zipfile

    import scipy.sparse as sp

    try:
        archive = zipfile.ZipFile(fh)
        members = archive.infolist()
    except Exception:
        raise InputError(f"{path} is not a valid .npz file (not a zip archive; is it a "
                         "scipy.sparse.save_npz file?)") from None
    total = sum(m.file_size for m in members)  # uncompressed sizes, from the zip directory
    _check_memory(path, total, max_memory, "unpacking its arrays")
    names = {m.filename[:-4] if m.filename.endswith(".npy") else m.filename for m in members}
    if "format" not in names:
        raise InputError(f"{path} is not a scipy.sparse.save_npz file (no 'format' entry; "
                         "use .npy for a dense array)")
    fh.seek(0)
    return sp.load_npz(fh)


_MM_FIELDS = ("real", "integer", "pattern", "double", "complex")
_MM_SYMMETRY = ("general", "symmetric", "skew-symmetric", "hermitian")


def _mm_header(path, stream):
    """Parse a Matrix Market banner and size line: (format, field, symmetry, sizes, bytes read)."""
    used = 0
    banner = stream.readline(1024)
    used += len(banner)
    parts = banner.decode("ascii", "replace").strip().lower().split()
    if len(parts) != 5 or parts[0] != "%%matrixmarket" or parts[1] != "matrix" \
            or parts[2] not in ("coordinate", "array") or parts[3] not in _MM_FIELDS \
            or parts[4] not in _MM_SYMMETRY:
        raise InputError(f"{path} is not a Matrix Market file (expected a banner like "
                         "'%%MatrixMarket matrix coordinate real symmetric')")
    for _ in range(100_000):
        line = stream.readline(1 << 16)
        used += len(line)
        if not line:
            raise InputError(f"{path}: Matrix Market file ends before its size line")
        text = line.decode("ascii", "replace").strip()
        if text and not text.startswith("%"):
            break
    else:
        raise InputError(f"{path}: Matrix Market header has too many comment lines")
    try:
        sizes = [int(t) for t in text.split()]
    except ValueError:
        raise InputError(f"{path}: bad Matrix Market size line {text[:60]!r}") from None
    expected = 3 if parts[2] == "coordinate" else 2
    if len(sizes) != expected or min(sizes) < 0:
        raise InputError(f"{path}: bad Matrix Market size line {text[:60]!r}")
    return parts[2], parts[3], parts[4], sizes, used


#: gzip cannot expand data by more than about 1032:1 (deflate's limit)
_GZIP_MAX_RATIO = 1032


def _load_mtx(path, fh, size, max_memory, gz):
    import gzip

    import scipy.io

    stream = gzip.GzipFile(fileobj=fh) if gz else fh
    try:
        layout, field, symmetry, sizes, used = _mm_header(path, stream)
    except (OSError, EOFError, gzip.BadGzipFile):
        raise InputError(f"{path} is not a readable gzip file") from None
    if field == "complex":
        raise InputError(f"{path} holds a complex matrix; lmatrank estimates the rank of real "
                         "symmetric matrices")
    rows, cols = sizes[0], sizes[1]
    room = (size * _GZIP_MAX_RATIO) if gz else (size - used)
    if layout == "coordinate":
        nnz = sizes[2]
        min_line = 4 if field == "pattern" else 6  # "i j\n" / "i j v\n"
        if nnz > rows * cols:
            raise InputError(f"{path}: declares {nnz} entries in a {rows}x{cols} matrix")
        if nnz * min_line > room:
            raise InputError(f"{path} is truncated or inconsistent: its header declares {nnz} "
                             f"entries, which cannot fit in the {room} bytes that follow")
        stored = nnz * (2 if symmetry != "general" else 1)
        need = 24 * stored + 8 * 4 * (max(rows, cols) + 1)
        _check_memory(path, need, max_memory, f"a {rows}x{cols} matrix with {nnz} entries")
    else:
        count = rows * (rows + 1) // 2 if symmetry != "general" and rows == cols else rows * cols
        if count * 2 > room:  # at least "v\n" per entry
            raise InputError(f"{path} is truncated or inconsistent: its header declares "
                             f"{count} dense entries, which cannot fit in the {room} bytes "
                             "that follow")
        _check_memory(path, 8 * rows * cols, max_memory, f"a dense {rows}x{cols} matrix")
    fh.seek(0)
    source = gzip.GzipFile(fileobj=fh) if gz else fh
    return scipy.io.mmread(source)


def load_matrix(path, *, max_memory=None):
    """Load a matrix from ``.npy``, ``.npz`` (scipy.sparse) or Matrix Market.

    Only regular files are read (devices, FIFOs and sockets are refused without
    blocking). Before anything is allocated, the declared sizes are checked against
    the file's size (a truncated or inconsistent file is refused) and against
    `max_memory`: a ``.npy`` header's shape, a ``.npz``'s uncompressed member sizes
    from the zip directory (no zip bomb is inflated), a Matrix Market header's
    dimensions and entry count. Sparse matrices are checked structurally (indices
    in range, ``indptr`` well formed).

    Parameters
    ----------
    path : str or path-like
        File ending in ``.npy``, ``.npz``, ``.mtx`` or ``.mtx.gz``.
    max_memory : int, optional
        Cap in bytes on what loading may allocate (default
        :func:`default_max_memory`, a quarter of the physical memory).

    Returns
    -------
    ndarray or scipy.sparse matrix/array
        Arrays holding Python objects (pickles) are refused.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Unknown extension, not a regular file, unreadable, truncated, malformed or
        too large file (:class:`InputError`, a ValueError subclass).

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.eye(3))
    >>> load_matrix(path).shape
    (3, 3)
    >>> load_matrix(path, max_memory=10)
    Traceback (most recent call last):
    ...
    lmatrank._cli.InputError: ...a.npy: an array of shape (3, 3) needs about 6.87e-05 MiB, more than the memory cap of 9.54e-06 MiB (raise it with --max-memory / max_memory=)
    """
    from ._checks import check_positive_int

    max_memory = default_max_memory() if max_memory is None else \
        check_positive_int("max_memory", max_memory)
    path = Path(path)
    name = path.name.lower()
    fh, size = _open_regular(path)
    with fh:
        if not name.endswith(_SUFFIXES):
            raise InputError(f"unsupported file type {path.name!r}: expected "
                             f"{', '.join(_SUFFIXES)}")
        try:
            if name.endswith(".npy"):
                matrix = _load_npy(path, fh, size, max_memory)
            elif name.endswith(".npz"):
                matrix = _load_npz(path, fh, max_memory)
            else:
                matrix = _load_mtx(path, fh, size, max_memory, gz=name.endswith(".gz"))
        except InputError:
            raise
        except MemoryError:
            raise InputError(f"{path}: out of memory while reading it (lower --max-memory "
                             "or free memory)") from None
        except Exception as exc:  # corrupt zip, bad entries, permissions, ...
            hint = " (is it a scipy.sparse.save_npz file?)" if name.endswith(".npz") else ""
            raise InputError(f"cannot read {path}: {type(exc).__name__}: {_one_line(exc)}"
                             f"{hint}") from None
    if isinstance(matrix, np.ndarray) and matrix.dtype == object:  # pragma: no cover
        raise InputError(f"{path} holds Python objects, not numbers")
    if sp_issparse(matrix):
        from .operators._base import _validate_sparse

        try:
            _validate_sparse(matrix)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: {_one_line(exc)}") from None
    return matrix


def sp_issparse(matrix):
    import scipy.sparse as sp

    return sp.issparse(matrix)


def _check_square(matrix, path):
    shape = getattr(matrix, "shape", ())
    if len(shape) != 2:
        raise InputError(f"{path} holds a {len(shape)}-D array of shape {tuple(shape)}, "
                         "not a matrix")
    if shape[0] != shape[1]:
        raise InputError(f"{path} holds a non-square {shape[0]}x{shape[1]} matrix; "
                         "the rank estimators need a square symmetric matrix")


def default_problem(seed=0):
    """The built-in default problem: the paper-protocol linear-network Hessian.

    A depth-5 linear network with square 32 x 32 layers at a random global
    minimum (docs/numerics.md, "The linear-network benchmark protocol"); the Hessian has order ``5 * 32**2 = 5120`` and rank
    exactly ``32**2 = 1024``.

    Examples
    --------
    >>> H = default_problem(0)
    >>> H.shape, H.theoretical_rank
    ((5120, 5120), 1024)
    """
    from .operators import LinearNetworkHessian

    return LinearNetworkHessian.random_minimum(DEFAULT_PROBLEM["d"],
                                               depth=DEFAULT_PROBLEM["depth"], rng=seed)


# ----------------------------------------------------------------------------- json
def _json_scalar(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return None


def summarize_info(info, *, array_limit=JSON_ARRAY_LIMIT):
    """JSON-safe summary of a ``RankEstimate.info`` dict.

    Scalars and strings are kept (non-finite floats become ``None``), short
    arrays and lists are written out, long arrays become
    ``{"length", "min", "max", "first", "last"}``, nested dicts are summarised
    recursively, anything else becomes its ``repr``.

    Examples
    --------
    >>> import numpy as np
    >>> summarize_info({"eta": 0.5, "curve": np.arange(100.0), "ok": True})
    {'eta': 0.5, 'curve': {'length': 100, 'min': 0.0, 'max': 99.0, 'first': 0.0, 'last': 99.0}, 'ok': True}
    """
    return {str(key): _summarize(value, array_limit) for key, value in info.items()}


def _summarize(value, limit):
    if isinstance(value, dict):
        return summarize_info(value, array_limit=limit)
    if isinstance(value, (list, tuple)) and not all(
            isinstance(v, (int, float, bool, np.number, np.bool_, str)) or v is None
            for v in value):
        return [_summarize(v, limit) for v in value[:limit]]
    if isinstance(value, (list, tuple, np.ndarray)):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            if array.size <= limit:
                return [_json_scalar(v) for v in array.ravel().tolist()]
            finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
            stats = dict(length=int(array.size))
            if finite.size:
                stats.update(min=_json_scalar(finite.min()), max=_json_scalar(finite.max()))
            stats.update(first=_json_scalar(array.ravel()[0]), last=_json_scalar(array.ravel()[-1]))
            return stats
        return [str(v) for v in array.ravel().tolist()[:limit]]
    if isinstance(value, (bool, int, float, str, np.number, np.bool_)) or value is None:
        return _json_scalar(value) if not isinstance(value, str) else value
    return repr(value)


def estimate_to_dict(est):
    """Every field of a :class:`~lmatrank.RankEstimate` as JSON-safe values.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> d = estimate_to_dict(lmatrank.estimate_rank(np.diag([1.0, 0.0]), method="exact"))
    >>> d["rank"], d["method"], d["info"]["n_positive"]
    (1, 'exact', 1)
    """
    return dict(rank=int(est.rank), estimate=_json_scalar(est.estimate),
                stderr=_json_scalar(est.stderr), threshold=_json_scalar(est.threshold),
                matvecs=int(est.matvecs), method=str(est.method),
                converged=bool(est.converged), info=summarize_info(est.info),
                resolution=_json_scalar(est.resolution),
                interval=[_json_scalar(v) if isinstance(v, float) else int(v)
                          for v in est.interval])


# ----------------------------------------------------------------------------- parsing
def _parse_option(text):
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit with EXIT_USAGE."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_estimate_options(parser):
    parser.add_argument("--method", default=None, choices=available_methods(),
                        help="estimator (default: estimate_rank's default)")
    parser.add_argument("--rtol", type=float, default=None,
                        help="count |lambda| > rtol * |lambda|_max")
    parser.add_argument("--atol", type=float, default=None, help="count |lambda| > atol")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--max-matvecs", type=_positive_int, default=None,
                        help="product budget (methods that take one)")
    parser.add_argument("-o", "--option", action="append", type=_parse_option, default=[],
                        metavar="KEY=VALUE",
                        help="extra method option, e.g. -o n_chains=16 (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as JSON (every RankEstimate field)")
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="save diagnostic plots to this file (needs matplotlib)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no warnings")
    parser.add_argument("--checkpoint", metavar="FILE", default=None,
                        help="save the run to FILE every few seconds and continue from it "
                        "when it exists (--method langevin; see docs/checkpoint.md)")


def build_parser(prog="lmatrank"):
    """The argument parser of the ``lmatrank`` command."""
    parser = _Parser(prog=prog, description="Estimate the rank of a large symmetric matrix "
                     "from products (lmatrank).",
                     epilog="Without a subcommand runs 'demo'; 'lmatrank FILE' is "
                     "'lmatrank estimate FILE'. Exit codes: 0 success, 1 estimation failed, "
                     "2 usage or input error.")
    parser.add_argument("--version", action="version", version=f"lmatrank {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,estimate,info}",
                                parser_class=_Parser)
    demo = sub.add_parser("demo", help="estimate the rank of the built-in default problem "
                          "(linear-network Hessian, d=32, true rank 1024)")
    _add_estimate_options(demo)
    estimate = sub.add_parser("estimate", help="estimate the rank of the matrix in FILE")
    estimate.add_argument("file", help=".npy, .npz (scipy.sparse) or .mtx/.mtx.gz file")
    _add_estimate_options(estimate)
    info = sub.add_parser("info", help="shape, nnz, symmetry and extreme eigenvalues of FILE")
    info.add_argument("file", help=".npy, .npz (scipy.sparse) or .mtx/.mtx.gz file")
    info.add_argument("--seed", type=int, default=0, help="seed of the Lanczos start vector")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    for sub_parser in (demo, estimate, info):
        _add_common_options(sub_parser)
    return parser


def _memory_size(text):
    """``--max-memory``: bytes, or a number with a K/M/G/T suffix (powers of 1024)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    raw = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 2G or 500M, got {text!r}") \
            from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(value)


def _add_common_options(parser):
    parser.add_argument("--max-memory", type=_memory_size, default=None, metavar="SIZE",
                        help="cap on what reading FILE may allocate, e.g. 2G (default: a "
                        "quarter of the physical memory)")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an unexpected error")


def _normalise_argv(argv):
    """Default subcommand: none -> demo, a leading path -> estimate."""
    argv = list(argv)
    if not argv:
        return ["demo"]
    first = argv[0]
    if first in _SUBCOMMANDS or first in ("-h", "--help", "--version"):
        return argv
    if first.startswith("-"):
        return ["demo"] + argv
    return ["estimate"] + argv


# ----------------------------------------------------------------------------- commands
def _one_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _method_accepts(method, option):
    func = _resolve(method if method is not None else _default_method())
    params = inspect.signature(func).parameters
    return option in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                   for p in params.values())


def _default_method():
    default = inspect.signature(estimate_rank).parameters["method"].default
    return default


def _run_estimate(args, matrix, label, true_rank, *, out, err, spectrum=None):
    options = dict(args.option)
    if args.max_matvecs is not None:
        options["max_matvecs"] = args.max_matvecs
    if args.method is not None:
        options["method"] = args.method
    if args.checkpoint is not None:
        options["checkpoint"] = args.checkpoint
    if not args.quiet and "progress" not in options and _method_accepts(args.method, "progress"):
        options["progress"] = True
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = estimate_rank(matrix, rng=args.seed, rtol=args.rtol, atol=args.atol, **options)
    elapsed = time.perf_counter() - start
    if not args.quiet:
        for item in caught:
            print(f"warning: {_one_line(item.message)}", file=err)
    if not math.isfinite(est.estimate):
        raise DivergenceError(f"the estimator returned a non-finite estimate ({est.estimate})")
    if args.plot:
        _save_plot(est, args.plot, true_rank=true_rank, title=label,
                   eigenvalues=spectrum() if spectrum is not None else None)
    if args.json:
        record = estimate_to_dict(est)
        record.update(input=label, true_rank=true_rank, time_s=round(elapsed, 6))
        print(json.dumps(record, allow_nan=False), file=out)
        return
    print(label, file=out)
    print(f"method     {est.method}", file=out)
    print(f"estimate   {est.estimate:.2f} +- {est.stderr:.2f}  (rank {est.rank})", file=out)
    if true_rank is not None:
        error = 100.0 * (est.estimate - true_rank) / true_rank if true_rank else math.nan
        print(f"true rank  {true_rank}  (error {error:+.2f}%)", file=out)
    print(f"threshold  {est.threshold:.3g}", file=out)
    print(f"products   {est.matvecs}", file=out)
    print(f"time       {elapsed:.2f} s", file=out)
    if not est.converged:
        print("converged  no (budget exhausted before the stopping rule was met)", file=out)


def _save_plot(est, path, *, true_rank, title, eigenvalues=None):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'lmatrank[plot]'") from None
    from ._plotting import plot_estimate

    fig = plot_estimate(est, fig=Figure(figsize=(7.5, 7.0)), true_rank=true_rank,
                        eigenvalues=eigenvalues)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97))
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write plot {path}: {_one_line(exc)}") from None


def _symmetry_error(matrix):
    import scipy.sparse as sp

    if sp.issparse(matrix):
        matrix = sp.csr_array(matrix)
        scale = abs(matrix).max() if matrix.nnz else 0.0
        diff = abs(matrix - matrix.T)
        asym = diff.max() if diff.nnz else 0.0
    else:
        scale = np.abs(matrix).max() if matrix.size else 0.0
        asym = np.abs(matrix - matrix.T).max() if matrix.size else 0.0
    return float(asym) / float(scale) if scale else 0.0


def matrix_report(matrix, *, seed=0):
    """Facts about a loaded matrix: shape, dtype, nnz, symmetry, extreme eigenvalues.

    Examples
    --------
    >>> import numpy as np
    >>> report = matrix_report(np.diag([3.0, 1.0, 0.0]))
    >>> report["shape"], report["nnz"], report["symmetric"], round(report["lambda_max"], 6)
    ([3, 3], 2, True, 3.0)
    """
    import scipy.sparse as sp

    from .operators import as_operator
    from .spectral import lanczos_extremes

    shape = [int(s) for s in matrix.shape]
    report = dict(shape=shape, dtype=str(matrix.dtype),
                  format=matrix.format if sp.issparse(matrix) else "dense")
    nnz = int(matrix.nnz) if sp.issparse(matrix) else int(np.count_nonzero(matrix))
    size = math.prod(shape)
    report.update(nnz=nnz, density=nnz / size if size else 0.0)
    if matrix.dtype.kind == "b":  # booleans as 0/1 numbers, as estimate_rank reads them
        matrix = matrix.astype(np.int8) if not sp.issparse(matrix) else matrix.astype(np.float64)
    values = matrix.data if sp.issparse(matrix) else matrix
    report["finite"] = bool(np.all(np.isfinite(values))) if values.dtype.kind in "fc" else True
    report.update(symmetric=None, asymmetry=None, lambda_min=None, lambda_max=None)
    if len(shape) != 2 or shape[0] != shape[1] or not report["finite"] or shape[0] == 0:
        return report
    if values.dtype.kind == "c":
        return report
    asym = _symmetry_error(matrix)
    tol = 1e3 * np.finfo(np.float32 if matrix.dtype == np.float32 else np.float64).eps
    report.update(asymmetry=asym, symmetric=bool(asym <= tol))
    if report["symmetric"]:
        op = as_operator(matrix, check_symmetry=False)
        k = _scale_exponent(op)  # Lanczos on A / 2**k: no overflow at 1e300, no underflow
        if k:
            op = _scaled_operator(op, k)
        bounds = lanczos_extremes(op.matmat, op.n, rng=np.random.default_rng(seed),
                                  dtype=np.float64)
        report.update(lambda_min=math.ldexp(float(bounds["ritz_min"]), k),
                      lambda_max=math.ldexp(float(bounds["ritz_max"]), k),
                      eigenvalues_exact=bool(bounds.get("exact", False)),
                      lanczos_steps=int(bounds["steps"]))
    return report


def _run_info(args, matrix, *, out):
    report = matrix_report(matrix, seed=args.seed)
    if args.json:
        print(json.dumps(dict(file=args.file, **summarize_info(report)), allow_nan=False),
              file=out)
        return
    shape = "x".join(str(s) for s in report["shape"]) or "() (a scalar)"
    print(f"file       {args.file}", file=out)
    print(f"shape      {shape}  ({report['format']}, {report['dtype']})", file=out)
    print(f"nnz        {report['nnz']}  (density {report['density']:.3g})", file=out)
    print(f"finite     {'yes' if report['finite'] else 'NO (NaN or Inf entries)'}", file=out)
    if report["symmetric"] is None:
        print("symmetric  n/a (not a finite real square matrix)", file=out)
        return
    print(f"symmetric  {'yes' if report['symmetric'] else 'NO'}  "
          f"(max |A - A^T| / max |A| = {report['asymmetry']:.3g})", file=out)
    if report["lambda_max"] is not None:
        how = "exact" if report.get("eigenvalues_exact") else \
            f"Lanczos, {report['lanczos_steps']} steps, inner bounds"
        print(f"lambda_max {report['lambda_max']:.6g}  ({how})", file=out)
        print(f"lambda_min {report['lambda_min']:.6g}", file=out)


def _is_budget_failure(exc):
    """A budget too small to produce any answer (exit 1, not a usage error)."""
    return isinstance(exc, BudgetError)


def main(argv=None, *, prog="lmatrank"):
    """Run the command line; returns the exit code (0, 1 or 2).

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.diag([2.0, 1.0, 0.0]))
    >>> main(["estimate", path, "--method", "exact", "--quiet"])  # doctest: +ELLIPSIS
    /...a.npy (3x3)
    method     exact
    estimate   2.00 +- 0.00  (rank 2)
    threshold  ...
    products   ...
    time       ... s
    0
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(prog)
    args = parser.parse_args(_normalise_argv(argv))
    out, err = sys.stdout, sys.stderr
    try:
        if args.command == "demo":
            matrix = default_problem(args.seed)
            d, depth = DEFAULT_PROBLEM["d"], DEFAULT_PROBLEM["depth"]
            label = (f"default problem: linear-network Hessian (d={d}, depth {depth}, "
                     f"n={matrix.shape[0]})")
            _run_estimate(args, matrix, label, matrix.theoretical_rank, out=out, err=err,
                          spectrum=matrix.gram_eigenvalues)
            return EXIT_OK
        matrix = load_matrix(args.file, max_memory=args.max_memory)
        if args.command == "info":
            _run_info(args, matrix, out=out)
            return EXIT_OK
        _check_square(matrix, args.file)
        label = f"{args.file} ({matrix.shape[0]}x{matrix.shape[1]})"
        _run_estimate(args, matrix, label, None, out=out, err=err)
        return EXIT_OK
    except DivergenceError as exc:
        print(f"{prog}: estimation failed: {_one_line(exc)}", file=err)
        return EXIT_FAILED
    except (FileNotFoundError, ValueError, TypeError) as exc:
        if not _raised_by_lmatrank(exc):  # numpy/scipy refused what lmatrank let through
            return _internal_error(exc, args, prog, err)
        if _is_budget_failure(exc):
            print(f"{prog}: estimation failed: {_one_line(exc)}", file=err)
            return EXIT_FAILED
        print(f"{prog}: error: {_one_line(exc)}", file=err)
        return EXIT_USAGE
    except MemoryError:
        print(f"{prog}: estimation failed: out of memory", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, never reported as invalid input
        return _internal_error(exc, args, prog, err)


def _internal_error(exc, args, prog, err):
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exception(exc, file=err)
    print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in "
          "lmatrank; --debug shows the traceback)", file=err)
    return EXIT_FAILED


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _raised_by_lmatrank(exc):
    """Whether lmatrank raised `exc` on purpose (its innermost frame is lmatrank code);
    an error raised inside numpy or scipy means a check is missing: a bug."""
    if isinstance(exc, FileNotFoundError):
        return True
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR)
