"""The package's import layers, read from the source (function-local imports included).

Layers, lowest first (see docs/architecture.md):

0. leaves: ``_result``, ``_errors``, ``_checks``, ``_progress``, ``_xp``, ``_config``;
1. ``operators``, ``backends``, ``theory`` (and ``_interop``): peers that never import
   each other;
2. ``spectral`` (and ``_exact``);
3. ``langevin``;
4. the face: ``_api``, ``_auto``, ``distributed``, the package ``__init__``;
5. adapters: ``torch``, ``_cli``, ``_plotting``, ``testing``, ``__main__``.

An import may point only to a lower layer; leaves, the face and the adapters may also use
their own layer. Every module is parsed with :mod:`ast`, so an import inside a function counts
like any other. Separately, the module-level import graph must have no cycle. The checker is
self-contained (no file outside the repository), and a planted violation must be caught.
"""

import ast
import pathlib
import shutil

import pytest

PACKAGE = "lmatrank"
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE

LAYER = {"_result": 0, "_errors": 0, "_checks": 0, "_progress": 0, "_xp": 0, "_config": 0, "_checkpoint": 0,
         "operators": 1, "backends": 1, "theory": 1, "_interop": 1,
         "spectral": 2, "_exact": 2, "langevin": 3,
         "_api": 4, "_auto": 4, "distributed": 4, "__init__": 4,
         "torch": 5, "_cli": 5, "_plotting": 5, "testing": 5, "__main__": 5}
PEERS = 1   # the layer whose units must not import each other
# RankEstimate.plot() (in the _result leaf) imports the optional plot adapter on first use
ALLOWED = {("_result", "_plotting")}


def unit(module):
    """``lmatrank.a.b`` -> ``a``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(module, is_package, source, known=()):
    """``(target, line)`` for every ``lmatrank`` import in `source` (module `module`).

    Relative imports are resolved against the module's package. ``from P import x`` targets
    ``P.x`` when that is a module of the package (in `known`), else ``P``.
    """
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found += [(t, node.lineno) for t in subs or [target]]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names
                      if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
    return found


def layer_violations(module, imports):
    """Messages for the upward, sideways or unclassified edges among `imports` of `module`."""
    bad = []
    src = unit(module)
    for target, line in imports:
        dst = unit(target)
        if dst == "__version__":
            continue
        for name in (src, dst):
            if name not in LAYER:
                bad.append(f"{module}: unit {name!r} has no layer (add it to LAYER)")
        if src not in LAYER or dst not in LAYER or src == dst:
            continue
        if module == PACKAGE or (src, dst) in ALLOWED:
            continue   # the package face re-exports
        same = LAYER[dst] == LAYER[src]
        if LAYER[dst] > LAYER[src] or (same and LAYER[src] == PEERS):
            bad.append(f"{module} -> {target} (line {line}): layer {LAYER[src]} -> "
                       f"{LAYER[dst]} ({src} -> {dst})")
    return bad


def read_package(root):
    """``{module: (is_package, source)}`` for every module under `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (is_package, path.read_text())
    return modules


def import_graph(modules):
    """``{module: [(target, line), ...]}`` restricted to modules of the package."""
    graph = {}
    for module, (is_package, source) in modules.items():
        edges = imported_modules(module, is_package, source, known=modules)
        graph[module] = [(t if t in modules else _owner(t, modules), line) for t, line in edges]
    return graph


def _owner(target, modules):
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def find_cycle(graph):
    """One cycle of the module graph as a list of modules, or None (ALLOWED edges skipped)."""
    state, stack = {}, []

    def visit(module):
        state[module] = 1
        stack.append(module)
        for target, _ in graph.get(module, ()):
            if target == module or (unit(module), unit(target)) in ALLOWED:
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def check(root):
    """All layer violations and one import cycle (or None) of the package at `root`."""
    modules = read_package(root)
    graph = import_graph(modules)
    bad = [msg for module, edges in sorted(graph.items())
           for msg in layer_violations(module, edges)]
    return bad, find_cycle(graph)


# --------------------------------------------------------------------------- tests
def test_every_import_points_down_and_nothing_is_cyclic():
    bad, cycle = check(ROOT)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_is_read():
    modules = read_package(ROOT)
    assert {"lmatrank", "lmatrank.operators._base", "lmatrank.backends._cupy",
            "lmatrank._xp"} <= set(modules)
    # the resolver sees function-local and relative imports
    edges = dict(imported_modules("lmatrank.backends._cupy", False,
                                  "def f():\n    from ..operators import _kronecker\n",
                                  known=modules))
    assert edges == {"lmatrank.operators._kronecker": 2}


@pytest.mark.parametrize("module, source, expected", [
    # operators and backends are peers: a function-local sideways import is caught
    ("lmatrank.backends._cupy", "def f():\n    from ..operators import KroneckerProduct\n",
     "backends -> operators"),
    ("lmatrank.operators._base", "import lmatrank.torch\n", "operators -> torch"),
    ("lmatrank.backends._numpy", "from ..langevin._dynamics import DivergedRun\n",
     "backends -> langevin"),
    ("lmatrank._errors", "from lmatrank.spectral import slq_rank\n", "_errors -> spectral"),
    ("lmatrank.spectral._slq", "from ..newthing import x\n", "'newthing' has no layer"),
])
def test_a_planted_violation_is_caught(module, source, expected):
    bad = layer_violations(module, imported_modules(module, False, source))
    assert any(expected in msg for msg in bad), bad


def test_allowed_edges_are_not_reported():
    for module, source in [("lmatrank.langevin._estimator", "from ..spectral import x\n"),
                           ("lmatrank.backends._cupy", "from .._errors import DivergedRun\n"),
                           ("lmatrank._result", "def plot():\n    from ._plotting import p\n"),
                           ("lmatrank._cli", "from .torch import x\n")]:
        assert layer_violations(module, imported_modules(module, False, source)) == []


def test_planted_violation_and_cycle_in_a_package_copy(tmp_path):
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert check(copy) == check(ROOT)
    with open(copy / "operators" / "_kronecker.py", "a") as fh:
        fh.write("\n\ndef _planted():\n    from ..backends import get_backend\n")
    bad, _ = check(copy)
    assert any(msg.startswith("lmatrank.operators._kronecker -> lmatrank.backends")
               for msg in bad), bad
    # a cycle inside one unit (no layer rule applies there) is caught by the graph check
    (copy / "operators" / "_a.py").write_text("from ._b import x\n")
    (copy / "operators" / "_b.py").write_text("def f():\n    from ._a import y\n")
    _, cycle = check(copy)
    assert cycle is not None and {"lmatrank.operators._a", "lmatrank.operators._b"} <= set(cycle)
