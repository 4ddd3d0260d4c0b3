"""Docstring examples run as doctests; every public function and class has one.

Modules whose examples need an optional dependency (torch, cupy) are skipped
when it is not installed. The documentation site itself is built in CI by
``.ci/run`` (``mkdocs build --strict``).
"""

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import lmatrank

PACKAGE_DIR = Path(lmatrank.__file__).parent
OPTIONAL_DEPENDENCIES = ("torch", "cupy", "matplotlib")
# Known gaps, reported to their owners; the tests fail on any NEW gap, and a
# strict xfail turns red once a listed doctest passes, so the list only shrinks.
KNOWN_DOCTEST_FAILURES = {}  # module name -> reason (none at present)
KNOWN_WITHOUT_EXAMPLE: set[str] = set()  # every public name has a runnable example
PUBLIC_MODULES = ["lmatrank", "lmatrank.operators", "lmatrank.langevin", "lmatrank.spectral",
                  "lmatrank.theory", "lmatrank.backends", "lmatrank.torch", "lmatrank.testing"]


def _all_modules():
    names = ["lmatrank"]
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="lmatrank."):
        names.append(info.name)
    return sorted(names)


def _missing_optional(module_name):
    """Optional packages the module's source imports that are not installed."""
    spec = importlib.util.find_spec(module_name)
    source = Path(spec.origin).read_text(encoding="utf-8")
    missing = []
    for dep in OPTIONAL_DEPENDENCIES:
        if re.search(rf"^\s*(import|from)\s+{dep}\b", source, re.MULTILINE) \
                and importlib.util.find_spec(dep) is None:
            missing.append(dep)
    return missing


def _doctest_params():
    for name in _all_modules():
        if name in KNOWN_DOCTEST_FAILURES:
            yield pytest.param(name, marks=pytest.mark.xfail(
                reason=KNOWN_DOCTEST_FAILURES[name], strict=True))
        else:
            yield name


@pytest.mark.parametrize("module_name", list(_doctest_params()))
def test_docstring_examples_run(module_name):
    missing = _missing_optional(module_name)
    if missing:
        pytest.skip(f"{module_name} needs {', '.join(missing)}")
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in finder.find(module, module_name):
        if test.examples and (test.filename is None or
                              Path(test.filename).resolve() == Path(module.__file__).resolve()):
            runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def _public_objects():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module_name}.{name}", obj


def test_every_public_function_and_class_has_a_runnable_example():
    missing = {qualname for qualname, obj in _public_objects()
               if ">>>" not in (inspect.getdoc(obj) or "")}
    new = sorted(missing - KNOWN_WITHOUT_EXAMPLE)
    assert not new, f"public names without a docstring example (add an Examples section): {new}"
