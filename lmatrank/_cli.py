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
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from ._api import _resolve, available_methods, estimate_rank
from ._errors import BudgetError, DivergenceError

__all__ = ["load_matrix", "default_problem", "main", "summarize_info", "estimate_to_dict"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_SUBCOMMANDS = ("demo", "estimate", "info")
_SUFFIXES = (".npy", ".npz", ".mtx", ".mtx.gz")
#: Arrays in ``info`` with at most this many entries are written out in ``--json``.
JSON_ARRAY_LIMIT = 16
#: Order and depth of the built-in default problem.
DEFAULT_PROBLEM = dict(d=32, depth=5)


class InputError(ValueError):
    """A file that cannot be read or does not hold a usable matrix."""


def load_matrix(path):
    """Load a matrix from ``.npy``, ``.npz`` (scipy.sparse) or Matrix Market.

    Parameters
    ----------
    path : str or path-like
        File ending in ``.npy``, ``.npz``, ``.mtx`` or ``.mtx.gz``.

    Returns
    -------
    ndarray or scipy.sparse matrix/array
        Arrays holding Python objects (pickles) are refused.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Unknown extension, unreadable file, or a ``.npy`` holding pickled objects.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.eye(3))
    >>> load_matrix(path).shape
    (3, 3)
    """
    import scipy.io
    import scipy.sparse as sp

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a matrix file")
    name = path.name.lower()
    if not name.endswith(_SUFFIXES):
        raise InputError(f"unsupported file type {path.name!r}: expected "
                         f"{', '.join(_SUFFIXES)}")
    try:
        if name.endswith(".npy"):
            matrix = np.load(path, allow_pickle=False)
        elif name.endswith(".npz"):
            matrix = sp.load_npz(path)
        else:
            matrix = scipy.io.mmread(path)
    except ValueError as exc:
        text = _one_line(exc)
        if "allow_pickle" in text or "pickle" in text.lower():
            raise InputError(f"{path} holds pickled Python objects, which are never loaded "
                             "(save a numeric array instead)") from None
        raise InputError(f"cannot read {path}: {text}") from None
    except Exception as exc:  # corrupt zip, bad header, permissions, ...
        hint = " (is it a scipy.sparse.save_npz file?)" if name.endswith(".npz") else ""
        raise InputError(f"cannot read {path}: {type(exc).__name__}: {_one_line(exc)}{hint}") \
            from None
    if isinstance(matrix, np.ndarray) and matrix.dtype == object:  # pragma: no cover
        raise InputError(f"{path} holds Python objects, not numbers")
    return matrix


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
    minimum (DESIGN §5); the Hessian has order ``5 * 32**2 = 5120`` and rank
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
                converged=bool(est.converged), info=summarize_info(est.info))


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
    return parser


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
    report.update(nnz=nnz, density=nnz / (shape[0] * shape[1]) if shape[0] * shape[1] else 0.0)
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
        bounds = lanczos_extremes(op.matmat, op.n, rng=np.random.default_rng(seed),
                                  dtype=np.float64)
        report.update(lambda_min=float(bounds["ritz_min"]), lambda_max=float(bounds["ritz_max"]),
                      eigenvalues_exact=bool(bounds.get("exact", False)),
                      lanczos_steps=int(bounds["steps"]))
    return report


def _run_info(args, matrix, *, out):
    report = matrix_report(matrix, seed=args.seed)
    if args.json:
        print(json.dumps(dict(file=args.file, **summarize_info(report)), allow_nan=False),
              file=out)
        return
    shape = "x".join(str(s) for s in report["shape"])
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
        matrix = load_matrix(args.file)
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
        return 130
