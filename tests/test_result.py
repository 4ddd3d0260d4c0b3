"""RankEstimate fields: how the integer rank is derived from a stochastic estimate."""

import numpy as np
import pytest

from lmatrank import estimate_rank
from lmatrank._result import rounded_rank


@pytest.mark.parametrize("estimate, n, rank", [(1000057.7, 1000000, 1000000), (-0.4, 5, 0),
                                               (-7.0, 5, 0), (3.49, 5, 3), (5.2, 5, 5)])
def test_rounded_rank_rounds_and_clips(estimate, n, rank):
    assert rounded_rank(estimate, n) == rank


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")
def test_langevin_rank_is_clipped_to_the_dimension_not_the_estimate():
    # a full-rank matrix's stochastic estimate lies above n about half of the time; a short
    # budget makes it spread by more than half a unit
    n = 30
    A = np.diag(np.geomspace(0.05, 1.0, n))
    runs = [estimate_rank(A, method="langevin", rng=seed, max_matvecs=400, rtol=0.01)
            for seed in range(6)]
    assert all(0 <= r.rank <= n for r in runs)
    above = [r for r in runs if r.estimate > n + 0.5]
    assert above, "no seed gave an estimate above n + 0.5: the test does not test the clipping"
    assert all(r.rank == n for r in above)
