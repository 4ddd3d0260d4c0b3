"""MkDocs hooks of the lmatrank documentation site.

- The "Benchmarks" section lists every ``docs/benchmarks*.md`` the benchmark
  suite wrote (``docs/benchmarks.md`` first, the others by name), so new result
  pages appear without editing ``mkdocs.yml``; without ``docs/benchmarks.md``
  an overview page is generated, and a result page that other pages link to
  but the suite has not written yet gets a placeholder saying so.
- The figures of the user guide are computed at build time by lmatrank itself
  (an exact run and a Langevin run on small matrices), never drawn by hand.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_PLACEHOLDER = "benchmarks.md"
FIGURES = {
    "figures/rank_vs_threshold.png": "_rank_vs_threshold_figure",
    "figures/langevin_loss_curve.png": "_loss_curve_figure",
}


_BENCH_LINK = re.compile(r"\]\((?:\./)?(benchmarks[\w-]*\.md)(?:#[\w-]*)?\)")


def _benchmark_pages(docs_dir):
    pages = sorted(p.name for p in Path(docs_dir).glob("benchmarks*.md"))
    if "benchmarks.md" in pages:
        pages.remove("benchmarks.md")
        pages.insert(0, "benchmarks.md")
    return pages


def _missing_benchmark_pages(docs_dir):
    """Result pages other pages link to that the benchmark suite has not written yet."""
    existing = set(_benchmark_pages(docs_dir)) | {BENCH_PLACEHOLDER}
    linked = set()
    for page in Path(docs_dir).rglob("*.md"):
        linked.update(_BENCH_LINK.findall(page.read_text(encoding="utf-8")))
    return sorted(linked - existing)


def _title(path):
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = re.match(r"#\s+(.+)", line)
        if match:
            return match.group(1).strip()
    return Path(path).stem.replace("_", " ")


def _nav_pages(nav):
    for item in nav:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for value in item.values():
                yield from (_nav_pages(value) if isinstance(value, list) else [value])


def on_config(config):
    pages = _benchmark_pages(config["docs_dir"])
    entries = [{_title(Path(config["docs_dir"]) / page): page} for page in pages]
    entries += [{f"{page} (not generated yet)": page}
                for page in _missing_benchmark_pages(config["docs_dir"])]
    if BENCH_PLACEHOLDER not in pages:
        entries.insert(0, {"Overview": BENCH_PLACEHOLDER})
    for i, item in enumerate(config["nav"]):
        if isinstance(item, dict) and "Benchmarks" in item:
            config["nav"][i] = {"Benchmarks": entries}
    listed = set(_nav_pages(config["nav"]))
    extra = sorted(str(p.relative_to(config["docs_dir"])).replace("\\", "/")
                   for p in Path(config["docs_dir"]).rglob("*.md"))
    extra = [page for page in extra if page not in listed and not page.startswith("benchmarks")]
    if extra:  # pages added by colleagues but not yet placed in mkdocs.yml's nav
        config["nav"].insert(len(config["nav"]) - 1,
                             {"More": [{_title(Path(config["docs_dir"]) / p): p} for p in extra]})
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def _png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _rank_vs_threshold_figure():
    """Exact run on a matrix with a gap two decades wide and a noise floor."""
    import numpy as np
    from matplotlib.figure import Figure

    import lmatrank

    rng = np.random.default_rng(0)
    spectrum = np.concatenate([np.geomspace(1e-2, 1.0, 60), 1e-6 * rng.random(40),
                               np.zeros(100)])
    basis, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    matrix = (basis * spectrum) @ basis.T
    est = lmatrank.estimate_rank((matrix + matrix.T) / 2, method="exact", rtol=1e-4)
    return _png(est.plot(fig=Figure(figsize=(7, 3.4)), true_rank=60))


def _loss_curve_figure():
    """Euler-Maruyama run with the exact theory overlay (lmatrank.theory)."""
    import numpy as np
    from matplotlib.figure import Figure

    import lmatrank

    spectrum = np.concatenate([np.geomspace(0.02, 1.0, 40), np.zeros(60)])
    est = lmatrank.estimate_rank(np.diag(spectrum), method="langevin", rng=0, corrected=True,
                                 backend="numpy",
                                 max_matvecs=4000)
    fig = est.plot(fig=Figure(figsize=(7, 6.4)), true_rank=40, eigenvalues=spectrum)
    return _png(fig)


def on_files(files, config):
    from mkdocs.structure.files import File

    pages = _benchmark_pages(config["docs_dir"])
    if BENCH_PLACEHOLDER not in pages:
        listing = "".join(f"- [{_title(Path(config['docs_dir']) / page)}]({page})\n"
                          for page in pages)
        body = (f"The benchmark suite in `bench/` writes these result pages:\n\n{listing}"
                if listing else "No benchmark results are committed yet.")
        files.append(File.generated(config, BENCH_PLACEHOLDER, content=(
            "# Benchmarks\n\nEvery number on these pages is written by the benchmark suite "
            "(`bench/`), which compares the methods in one run on the same machine and "
            "reports ratios; the pages `docs/benchmarks*.md` it writes appear in this "
            f"section automatically.\n\n{body}\n")))
    for page in _missing_benchmark_pages(config["docs_dir"]):
        files.append(File.generated(config, page, content=(
            f"# {page}\n\nThis result page is written by the benchmark suite in `bench/` "
            "and has not been generated in this checkout yet.\n")))
    for src_uri, maker in FIGURES.items():
        files.append(File.generated(config, src_uri, content=globals()[maker]()))
    return files
