"""Cold start: time to the first answer of a fresh install, with an empty Numba cache.

``python -m bench cold_start [--pytest] [--quick] [--out DIR]``

Every measurement runs in a fresh interpreter (a subprocess) whose ``NUMBA_CACHE_DIR``
is a new empty folder, so nothing compiled earlier is reused; wall time and the CPU
time of the subprocess (user + system, from ``getrusage``) are both recorded, since
on a shared machine the wall time also counts the waits for a core:

- ``import``: ``python -X importtime -c "import lmatrank"`` (the cumulative import
  time of lmatrank and the largest modules it pulls in) and the wall time of
  ``python -c "import lmatrank"``;
- ``main``: ``python -m lmatrank``, the README's main job (the default problem),
  and the number of kernels it left in the Numba cache;
- ``kernels``: the first Langevin estimate on a small sparse matrix with the Numba
  backend (what a first run of the sparse path compiles), from an empty cache and
  again from the cache it filled (a cache hit);
- ``pytest`` (with ``--pytest``; about 5-10 minutes): ``python -m pytest -q``, the
  test suite's default selection, from an empty cache, with its summary line and the
  number of compiled kernel specialisations saved to the cache (``.nbc`` files).

Writes ``cold_start.json`` and ``cold_start.md`` to ``bench/results/cold_start/``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _common as C

_KERNELS_SCRIPT = """
import time, warnings
t0 = time.perf_counter()
import numpy as np, scipy.sparse as sp
import lmatrank
n = {n}
rng = np.random.default_rng(0)
W = sp.random_array((n, n), density=8.0 / n, rng=rng, format="csr")
W = ((W + W.T) > 0).astype(np.float64)
L = sp.csr_array(sp.diags_array(np.asarray(W.sum(axis=1)).ravel()) - W)
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    est = lmatrank.estimate_rank(L, method="langevin", backend="numba", rng=1,
                                 max_matvecs={budget})
t2 = time.perf_counter()
print("RESULT", t1 - t0, t2 - t1, est.rank, est.matvecs)
"""


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cache_files(folder):
    folder = Path(folder)
    return dict(index=len(list(folder.rglob("*.nbi"))), data=len(list(folder.rglob("*.nbc"))))


def run_cold(argv, *, cache=None, timeout=3600):
    """Run `argv` from the repository root with an empty (or the given) Numba cache;
    returns wall and CPU seconds, the exit code, the output and the cache's contents."""
    with tempfile.TemporaryDirectory(prefix="lmatrank-numba-") as fresh:
        folder = cache or fresh
        env = dict(os.environ, NUMBA_CACHE_DIR=str(folder),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(C.REPO_ROOT),
                                                           os.environ.get("PYTHONPATH")])))
        cpu0, wall0 = _children_cpu(), time.perf_counter()
        proc = subprocess.run(argv, cwd=C.REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0
        return dict(command=" ".join(argv), returncode=proc.returncode, wall_s=wall, cpu_s=cpu,
                    cache_files=_cache_files(folder), stdout=proc.stdout, stderr=proc.stderr)


def import_times(top=8):
    """Cumulative import time of lmatrank and its largest imports (``-X importtime``)."""
    out = run_cold([sys.executable, "-X", "importtime", "-c", "import lmatrank"])
    rows = []
    for line in out["stderr"].splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((match.group(4), int(match.group(2)) / 1e6, len(match.group(3))))
    total = next((cum for name, cum, _ in rows if name == "lmatrank"), None)
    # the largest outside modules (numpy, scipy, ...), none listed inside another
    largest = sorted(((cum, name) for name, cum, depth in rows
                      if name.split(".")[0] != "lmatrank"), reverse=True)
    chosen = []
    for cum, name in largest:
        if not any(name.startswith(parent + ".") for _, parent in chosen):
            chosen.append((cum, name))
        if len(chosen) == top:
            break
    plain = run_cold([sys.executable, "-c", "import lmatrank"])
    return dict(lmatrank_cumulative_s=total, wall_s=plain["wall_s"], cpu_s=plain["cpu_s"],
                largest=[dict(module=name, cumulative_s=cum) for cum, name in chosen])


def main_job(timeout):
    out = run_cold([sys.executable, "-m", "lmatrank"], timeout=timeout)
    return dict(wall_s=out["wall_s"], cpu_s=out["cpu_s"], returncode=out["returncode"],
                cache_files=out["cache_files"], output=out["stdout"].strip().splitlines())


def _parse_kernels(out):
    line = next((ln for ln in out["stdout"].splitlines() if ln.startswith("RESULT")), None)
    if out["returncode"] != 0 or line is None:
        return dict(error=(out["stderr"].strip().splitlines() or ["failed"])[-1])
    setup, estimate, rank, matvecs = line.split()[1:]
    return dict(wall_s=out["wall_s"], cpu_s=out["cpu_s"], setup_s=float(setup),
                estimate_s=float(estimate), rank=int(rank), matvecs=int(matvecs),
                cache_files=out["cache_files"])


def kernels(n, budget):
    script = [sys.executable, "-c", _KERNELS_SCRIPT.format(n=n, budget=budget)]
    with tempfile.TemporaryDirectory(prefix="lmatrank-numba-") as cache:
        fresh = _parse_kernels(run_cold(script, cache=cache))
        hit = _parse_kernels(run_cold(script, cache=cache))
    return dict(n=n, max_matvecs=budget, empty_cache=fresh, cache_hit=hit)


# ------------------------------------------------------------------ pytest plugin
# ``python -m pytest -p bench.cold_start`` with LMATRANK_COLD_START_LOG set records the CPU
# time of every test and every Numba compilation (which test triggered it, how long it took).
_LOG_ENV = "LMATRANK_COLD_START_LOG"
_probe = dict(test="<collection>", depth=0, start=0.0, name="", compiles=[], tests=[])


def _install_compile_listener():
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, ev):
            if _probe["depth"] == 0:
                func = ev.data["dispatcher"].py_func
                _probe["name"] = f"{func.__module__}.{func.__qualname__}"
                _probe["start"] = time.process_time()
            _probe["depth"] += 1

        def on_end(self, ev):
            _probe["depth"] -= 1
            if _probe["depth"] == 0:
                _probe["compiles"].append(dict(test=_probe["test"], kernel=_probe["name"],
                                               cpu_s=time.process_time() - _probe["start"]))

    event.register("numba:compile", Listener())


def pytest_configure(config):
    if os.environ.get(_LOG_ENV):
        try:
            _install_compile_listener()
        except ImportError:  # no numba: nothing compiles
            pass


def pytest_runtest_protocol(item, nextitem):  # noqa: ARG001 (pytest hook signature)
    _probe["test"] = item.nodeid
    _probe["cpu0"] = time.process_time()


def pytest_runtest_logfinish(nodeid, location):  # noqa: ARG001
    if "cpu0" in _probe:
        _probe["tests"].append(dict(test=nodeid, cpu_s=time.process_time() - _probe["cpu0"]))


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001
    path = os.environ.get(_LOG_ENV)
    if path:
        Path(path).write_text(json.dumps(dict(compiles=_probe["compiles"],
                                              tests=_probe["tests"])))


def _summarise_log(log, top=15):
    by_kernel, by_file = {}, {}
    for rec in log["compiles"]:
        entry = by_kernel.setdefault(rec["kernel"].rsplit(".", 1)[-1], [0, 0.0])
        entry[0] += 1
        entry[1] += rec["cpu_s"]
    for rec in log["tests"]:
        name = rec["test"].split("::")[0]
        by_file[name] = by_file.get(name, 0.0) + rec["cpu_s"]
    slowest = sorted(log["tests"], key=lambda r: -r["cpu_s"])[:top]
    return dict(compilations=len(log["compiles"]),
                compile_cpu_s=sum(r["cpu_s"] for r in log["compiles"]),
                tests_cpu_s=sum(r["cpu_s"] for r in log["tests"]),
                by_kernel={k: dict(count=v[0], cpu_s=v[1]) for k, v in
                           sorted(by_kernel.items(), key=lambda kv: -kv[1][1])},
                by_file=dict(sorted(by_file.items(), key=lambda kv: -kv[1])[:top]),
                slowest_tests=slowest)


def run_test_suite(timeout):
    with tempfile.TemporaryDirectory() as folder:
        log_path = Path(folder) / "log.json"
        os.environ[_LOG_ENV] = str(log_path)
        try:
            out = run_cold([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "-p", "bench.cold_start"], timeout=timeout)
        finally:
            del os.environ[_LOG_ENV]
        log = json.loads(log_path.read_text()) if log_path.exists() else None
    lines = out["stdout"].strip().splitlines()
    summary = next((ln for ln in reversed(lines) if re.search(r"\d+ (passed|failed)", ln)),
                   None)
    counts = {word: int(num) for num, word in
              re.findall(r"(\d+) (passed|failed|skipped|deselected|xfailed|errors?)",
                         summary or "")}
    failed = [ln for ln in lines if ln.startswith("FAILED")]
    return dict(wall_s=out["wall_s"], cpu_s=out["cpu_s"], returncode=out["returncode"],
                summary=summary, counts=counts, failed=failed, cache_files=out["cache_files"],
                profile=_summarise_log(log) if log else None)


def _s(x):
    return "-" if x is None else f"{x:.2f}"


def markdown(result):
    m = result["machine"]
    lines = ["# Cold start (empty Numba cache)", "",
             f"{C.machine_line(m)}; load average at the end "
             f"{result['load_average_at_end'][0]:.1f}.", "",
             f"Command: `{result['command']}`. Each row is a fresh interpreter with an empty "
             "`NUMBA_CACHE_DIR`; CPU is user + system time of that process (the wall time also "
             "counts waits for a core on a shared machine). Cache entries: the compiled "
             "functions the run saved to the Numba cache (one per kernel and signature; since "
             "the serial/parallel split, a kernel's chunk function and its driver are two).",
             ""]
    rows = []
    imp = result["import"]
    rows.append(["`import lmatrank` (-X importtime, cumulative)", _s(imp["lmatrank_cumulative_s"]),
                 "-", "-"])
    rows.append(["`python -c \"import lmatrank\"`", _s(imp["wall_s"]), _s(imp["cpu_s"]), "-"])
    main = result.get("main")
    if main:
        rows.append(["`python -m lmatrank` (main job)", _s(main["wall_s"]), _s(main["cpu_s"]),
                     str(main["cache_files"]["data"])])
    k = result["kernels"]
    for label, rec in (("empty cache", k["empty_cache"]), ("cache hit", k["cache_hit"])):
        if "error" in rec:
            rows.append([f"first sparse Langevin estimate, {label}", "error", "-", "-"])
            continue
        rows.append([f"first sparse Langevin estimate (n={k['n']}), {label}", _s(rec["wall_s"]),
                     _s(rec["cpu_s"]), str(rec["cache_files"]["data"])])
    suite = result.get("pytest")
    if suite:
        rows.append([f"`python -m pytest -q` ({suite['summary']})", _s(suite["wall_s"]),
                     _s(suite["cpu_s"]), str(suite["cache_files"]["data"])])
    lines.append(C.markdown_table(["what", "wall s", "CPU s", "cache entries (.nbc)"], rows))
    lines += ["", "Largest outside imports under `import lmatrank` (cumulative s):", ""]
    lines.append(C.markdown_table(["module", "s"], [[f"`{r['module']}`", _s(r["cumulative_s"])]
                                                    for r in imp["largest"]]))
    prof = suite.get("profile") if suite else None
    if prof:
        lines += ["", f"Test suite: {prof['compilations']} Numba compilations took "
                  f"{prof['compile_cpu_s']:.0f} s CPU of the tests' {prof['tests_cpu_s']:.0f} s "
                  "(CPU of the test process, collection excluded).", "",
                  C.markdown_table(["kernel", "compilations", "CPU s"],
                                   [[f"`{k}`", str(v["count"]), _s(v["cpu_s"])]
                                    for k, v in prof["by_kernel"].items()]),
                  "", "CPU by test file (largest):", "",
                  C.markdown_table(["file", "CPU s"], [[f"`{k}`", _s(v)]
                                                      for k, v in prof["by_file"].items()]),
                  "", "Slowest tests (CPU, including the compilations they triggered):", "",
                  C.markdown_table(["test", "CPU s"], [[f"`{r['test']}`", _s(r["cpu_s"])]
                                                      for r in prof["slowest_tests"]])]
    if main:
        lines += ["", "Output of `python -m lmatrank`:", "", "```", *main["output"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = C.base_parser("cold_start", __doc__.split("\n\n")[0])
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite cold_start.md from the cold_start.json in --out")
    parser.add_argument("--pytest", action="store_true",
                        help="also time the test suite from an empty cache (minutes)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds allowed to each subprocess")
    args = parser.parse_args(argv)
    if args.markdown_only:
        result = json.loads((args.out / "cold_start.json").read_text())
        C.write_text(args.out / "cold_start.md", markdown(result))
        return 0
    argv = list(sys.argv[1:] if argv is None else argv)
    result = dict(machine=C.machine_description(), command=C.command_line("cold_start", argv))
    C.progress("cold_start: imports")
    result["import"] = import_times()
    if not args.quick:
        C.progress("cold_start: python -m lmatrank")
        result["main"] = main_job(args.timeout)
    C.progress("cold_start: first sparse Langevin estimate")
    result["kernels"] = kernels(500 if args.quick else 4000, 2000 if args.quick else 20_000)
    if args.pytest:
        C.progress("cold_start: python -m pytest -q")
        result["pytest"] = run_test_suite(args.timeout)
    result["load_average_at_end"] = list(os.getloadavg())
    C.write_json(args.out / "cold_start.json", result)
    C.write_text(args.out / "cold_start.md", markdown(result))
    C.progress(f"cold_start: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
