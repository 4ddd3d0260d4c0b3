"""Property-based testing for rank, trace and spectral-density code.

Hypothesis strategies that draw symmetric matrices and operators whose rank, inertia
and spectrum are known exactly (with the thresholds at which the count is
unambiguous), and :func:`check_rank_estimator`, a conformance suite any rank
function can be run through. Needs the ``test`` extra (``pip install
"lmatrank[test]"``: Hypothesis); ``import lmatrank`` does not import this module.

>>> from lmatrank.testing import symmetric_matrices
>>> p = symmetric_matrices(n=5, rank=2).example()  # doctest: +SKIP
"""

from ._strategies import (KnownSpectrum, as_dense, graph_laplacians, kronecker_operators,
                          linear_network_hessians, linear_operators, symmetric_matrices)
from ._conformance import check_rank_estimator

__all__ = ["KnownSpectrum", "as_dense", "check_rank_estimator", "graph_laplacians",
           "kronecker_operators", "linear_network_hessians", "linear_operators",
           "symmetric_matrices"]
