"""``python -m lmatrank``: the command line (see :mod:`lmatrank._cli`).

Without arguments it estimates the rank of the built-in default problem (the
paper-protocol linear-network Hessian, d = 32, true rank 1024) and prints the
estimate, its standard error, the true rank, the products used and the time.
``python -m lmatrank FILE`` estimates the matrix stored in ``FILE``
(``.npy``, ``.npz`` from ``scipy.sparse.save_npz``, ``.mtx``/``.mtx.gz``);
``python -m lmatrank --help`` lists the subcommands ``demo``, ``estimate``
and ``info``.
"""

import sys

try:
    from ._cli import default_problem, load_matrix, main
except KeyboardInterrupt:  # Ctrl-C while the numerical libraries load: no traceback
    sys.stderr.write("lmatrank: interrupted\n")
    sys.exit(130)

__all__ = ["default_problem", "load_matrix", "main"]

if __name__ == "__main__":
    sys.exit(main(prog="python -m lmatrank"))
