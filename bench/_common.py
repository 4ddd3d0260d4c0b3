"""Shared helpers of the benchmark suite.

Writing results (JSON, Markdown tables, PNG figures), describing the machine,
timing one estimate (wall and CPU seconds), and the *method roster*: every
method is called through :func:`lmatrank.estimate_rank` on the same operator,
and its cost is the operator's product count ``est.matvecs``. The one outside
method, :func:`scipy.linalg.interpolative.estimate_rank`, is given a counting
:class:`~scipy.sparse.linalg.LinearOperator` view of the same operator so its
products are counted the same way.

Methods that are not registered in this checkout of ``lmatrank`` are skipped
with a printed note, so the suite runs today and picks them up when they land.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["MethodSpec", "TABLE1_METHODS", "FAMILY_METHODS", "available_roster", "run_estimate",
           "summarise", "markdown_table", "write_json", "write_text", "save_figure",
           "machine_description", "command_line", "base_parser", "REPO_ROOT", "RESULTS_DIR",
           "derive_seed", "fmt"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"

#: relative precision handed to scipy.linalg.interpolative.estimate_rank: far below the
#: smallest nonzero eigenvalue of the paper's Hessians (>= ~1e-8 lambda_max at d <= 64)
#: and far above the round-off of a product (~1e-13 relative).
SCIPY_EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One row of a comparison: a named call of ``estimate_rank`` (or scipy)."""

    key: str                    # short identifier used in JSON
    label: str                  # what the tables show
    method: str                 # estimate_rank(method=...) or "scipy-interpolative"
    options: dict = dataclasses.field(default_factory=dict)
    statistical: bool = True    # reports a meaningful stderr
    note: str = ""
    #: skip on operators larger than this: the method's own dense O(n r^2) linear algebra
    #: (not its products) would dominate the whole benchmark
    max_n: int | None = None

    @property
    def is_scipy(self):
        return self.method == "scipy-interpolative"


TABLE1_METHODS = (
    MethodSpec("ld_paper", "LD paper-faithful", "langevin", {"paper": True},
               note="Algorithm 1: sigma^2=2e-5, eta=1e-4, K_tot=15000, K_avg=10000, "
                    "one chain, Gaussian noise, uncorrected loss"),
    MethodSpec("ld_default", "LD default", "langevin", {},
               note="the library's default Langevin settings (discretisation-corrected "
                    "observable, automatic step from Lanczos, 20,000-product budget)"),
    MethodSpec("us_faithful", "U&S faithful", "chebyshev", {"faithful": True},
               note="published code: degree 50, 300 probes, 100 DOS points, find_gap"),
    MethodSpec("us_improved", "U&S improved", "chebyshev", {},
               note="same moments, scale-invariant gap rule, Rademacher probes"),
    MethodSpec("slq", "SLQ", "slq", {}, note="stochastic Lanczos quadrature, default settings"),
    MethodSpec("sketch", "sketch", "sketch", {}, statistical=False,
               note="randomized sketch grown until rank deficient; skipped for n > 6000, where "
                    "its O(n k^2) QR per growth step (k ~ rank) dominates", max_n=6000),
    MethodSpec("auto", "auto", "auto", {}, note="estimate_rank's automatic choice"),
    MethodSpec("scipy", "scipy interpolative", "scipy-interpolative", {"eps": SCIPY_EPS},
               statistical=False, max_n=6000,
               note=f"scipy.linalg.interpolative.estimate_rank(LinearOperator, eps={SCIPY_EPS:g}); "
                    "skipped for n > 6000 (O(n r^2) Gram-Schmidt)"),
)

#: the families benchmark runs on matrices of arbitrary scale, where the paper's fixed
#: step eta = 1e-4 is meaningless (unstable or far too slow): LD paper mode is left out.
FAMILY_METHODS = tuple(s for s in TABLE1_METHODS if s.key != "ld_paper") + (
    MethodSpec("exact", "exact (eigvalsh)", "exact", {}, statistical=False),
)


def available_roster(specs, only=None, log=print):
    """The specs whose method is registered (scipy always is); notes the others."""
    import lmatrank

    registered = set(lmatrank.available_methods())
    chosen = []
    for spec in specs:
        if only is not None and spec.key not in only:
            continue
        if not spec.is_scipy and spec.method not in registered:
            log(f"note: skipping {spec.label!r}: method {spec.method!r} is not registered in "
                f"this lmatrank (available: {sorted(registered)})")
            continue
        chosen.append(spec)
    return chosen


def derive_seed(*parts):
    """A reproducible 64-bit seed from integers/strings (independent streams per cell)."""
    words = []
    for part in parts:
        if isinstance(part, str):
            words.extend(part.encode())
        else:
            words.append(int(part) % 2**32)
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0])


def _scipy_estimate(A, *, eps, rng, rtol=None, atol=None):
    """scipy.linalg.interpolative.estimate_rank on a counting LinearOperator view."""
    import scipy.linalg.interpolative as sli

    from lmatrank.operators import as_operator

    if atol is not None:
        raise ValueError("scipy interpolative has no absolute threshold")
    op = as_operator(A, check_symmetry=False)
    rank = sli.estimate_rank(op.as_linear_operator(), rtol if rtol is not None else eps,
                             rng=rng)
    return dict(estimate=float(rank), rank=int(rank), stderr=float("nan"),
                matvecs=int(op.matvecs), threshold=float("nan"), converged=True)


def run_estimate(spec, A, seed, *, rtol=None, atol=None):
    """Run one method once; returns a flat dict (never raises: errors are recorded)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = _run_one(spec, A, seed, rtol=rtol, atol=atol)
        out["error"] = None
    except Exception as exc:  # recorded, reported in the table as failures
        out = dict(estimate=float("nan"), rank=None, stderr=float("nan"), matvecs=None,
                   threshold=float("nan"), converged=False,
                   error=f"{type(exc).__name__}: {exc}")
    out["warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:200] for w in caught})
    out["wall_s"] = time.perf_counter() - wall0
    out["cpu_s"] = time.process_time() - cpu0
    return out


def _run_one(spec, A, seed, *, rtol, atol):
    import lmatrank

    if spec.is_scipy:
        return _scipy_estimate(A, rng=seed, rtol=rtol, atol=atol, **spec.options)
    est = lmatrank.estimate_rank(A, method=spec.method, rng=seed, rtol=rtol, atol=atol,
                                 **spec.options)
    out = dict(estimate=float(est.estimate), rank=int(est.rank), stderr=float(est.stderr),
               matvecs=int(est.matvecs), threshold=float(est.threshold),
               converged=bool(est.converged))
    for key in ("lambda_max", "count_half_threshold", "count_double_threshold", "gap_rule"):
        value = est.info.get(key)
        if isinstance(value, (int, float, str, np.integer, np.floating)):
            out[key] = value.item() if hasattr(value, "item") else value
    if est.method != spec.method:
        out["resolved_method"] = est.method
    return out


def _nanmean(values):
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def summarise(records, truth_key="truth"):
    """Accuracy/cost summary of one method over independent instances.

    ``records``: dicts from :func:`run_estimate` plus the true rank under
    `truth_key`. NRMSE = sqrt(mean((r_hat - r)^2 / r^2)) (the paper's normalised RMSE
    when r is the same for all instances), bias = mean((r_hat - r) / r).
    """
    ok = [r for r in records if r["error"] is None]
    out = dict(n=len(records), failures=len(records) - len(ok))
    if not ok:
        out.update(mean_estimate=float("nan"), std_estimate=float("nan"), nrmse_pct=float("nan"),
                   bias_pct=float("nan"), mean_stderr=float("nan"), mean_abs_error=float("nan"),
                   exact_fraction=float("nan"), products=float("nan"), wall_s=float("nan"),
                   cpu_s=float("nan"), mean_truth=float("nan"), not_converged=0)
        return out
    est = np.array([r["estimate"] for r in ok], dtype=float)
    truth = np.array([r[truth_key] for r in ok], dtype=float)
    rel = (est - truth) / np.where(truth == 0, 1.0, truth)
    out.update(
        mean_truth=float(truth.mean()),
        mean_estimate=float(est.mean()),
        std_estimate=float(est.std(ddof=1)) if est.size > 1 else 0.0,
        nrmse_pct=100.0 * float(np.sqrt(np.mean(rel ** 2))),
        bias_pct=100.0 * float(rel.mean()),
        mean_abs_error=float(np.mean(np.abs(est - truth))),
        exact_fraction=float(np.mean([r["rank"] == t for r, t in zip(ok, truth)])),
        mean_stderr=_nanmean(r["stderr"] for r in ok),
        products=_nanmean(r["matvecs"] for r in ok),
        wall_s=_nanmean(r["wall_s"] for r in ok),
        cpu_s=_nanmean(r["cpu_s"] for r in ok),
        not_converged=int(sum(not r["converged"] for r in ok)),
    )
    return out


def fmt(value, digits=1):
    """Format a number for a table: '-' for NaN/None, fixed digits otherwise."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def markdown_table(headers, rows, align=None):
    """A GitHub Markdown table; `align` per column 'l'/'r' (default: first l, rest r)."""
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean_nan(obj):
    """JSON has no NaN: write null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_nan(v) for v in obj]
    return obj


def write_json(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.loads(json.dumps(payload, default=_json_default))
    path.write_text(json.dumps(_clean_nan(payload), indent=1, allow_nan=False) + "\n")
    return path


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def publish(name, md, draw, out, docs):
    """Write ``out/NAME.md`` and, through ``draw(path)`` (None: no figure), ``out/NAME.png``;
    print the report; with `docs`, also ``docs/benchmarks_NAME.md`` and its figure."""
    write_text(Path(out) / f"{name}.md", md)
    if draw is not None:
        draw(Path(out) / f"{name}.png")
    print(md)
    if docs is not None:
        write_text(Path(docs) / f"benchmarks_{name}.md",
                   md.replace(f"]({name}.png)", f"](benchmarks_{name}.png)"))
        if draw is not None:
            draw(Path(docs) / f"benchmarks_{name}.png")


def save_figure(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git_commit():
    if os.environ.get("BENCH_GIT_COMMIT"):   # run from an exported snapshot of a commit
        return os.environ["BENCH_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_description():
    """Where and with what the numbers were produced."""
    import numba
    import scipy

    import lmatrank

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return dict(
        cpu=_cpu_model(), cores=os.cpu_count(), platform=platform.platform(),
        python=platform.python_version(), numpy=np.__version__, scipy=scipy.__version__,
        numba=numba.__version__, lmatrank=lmatrank.__version__, git_commit=_git_commit(),
        load_average_at_start=list(load) if load else None,
        date=datetime.datetime.now().isoformat(timespec="seconds"),
    )


def machine_line(machine):
    load = machine.get("load_average_at_start")
    load_txt = f", load average at start {load[0]:.1f}" if load else ""
    return (f"{machine['cpu']}, {machine['cores']} cores{load_txt}; Python {machine['python']}, "
            f"numpy {machine['numpy']}, scipy {machine['scipy']}, numba {machine['numba']}; "
            f"lmatrank {machine['lmatrank']} (git {machine['git_commit']}); {machine['date']}")


def command_line(name, argv):
    return "python -m bench " + " ".join([name, *argv])


def base_parser(name, description):
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}", description=description)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / name,
                        help="output folder (default: bench/results/%(prog)s)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny configuration for smoke tests (seconds)")
    parser.add_argument("--seed", type=int, default=2024, help="master seed")
    parser.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m],
                        default=None, help="comma-separated method keys to run (default all)")
    return parser


def progress(msg):
    print(msg, file=sys.stderr, flush=True)
