"""Dispatcher: ``python -m bench <name> [options]`` runs ``bench.<name>.main(argv)``."""

from __future__ import annotations

import importlib
import importlib.util
import sys

from . import BENCHMARKS

USAGE = "usage: python -m bench <name> [options]   (python -m bench --list; <name> --help)"


def _present():
    return [name for name in BENCHMARKS if importlib.util.find_spec(f"bench.{name}") is not None]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print("benchmarks:", ", ".join(_present()))
        return 0 if argv else 2
    if argv[0] == "--list":
        print("\n".join(_present()))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS or importlib.util.find_spec(f"bench.{name}") is None:
        print(f"python -m bench: unknown benchmark {name!r}; available: {', '.join(_present())}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    result = module.main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
