"""CUDA kernel sources: compile with nvcc for sm_80/sm_90; launch geometry; reference kernels."""

import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from lmatrank.backends import CounterStream, CupyBackend
from lmatrank.backends._counter_rng import counter_gaussian, counter_rademacher
from lmatrank.backends._cupy_kernels import (BLOCK_THREADS, ReferenceKernels, kernel_sources,
                                             launch_geometry)
from lmatrank.operators import as_preconditioner

ENTRIES = ["lmr_counter_noise", "lmr_em_step", "lmr_baoab_step"]


@pytest.fixture(scope="module")
def nvcc():
    path = shutil.which("nvcc")
    if path is None:
        pytest.skip("nvcc is not on PATH: CUDA kernel sources were not compiled")
    return path


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("unit", sorted(kernel_sources()))
def test_kernel_sources_compile_with_nvcc(nvcc, tmp_path, arch, unit):
    source = tmp_path / f"{unit}.cu"
    source.write_text(kernel_sources()[unit])
    ptx = tmp_path / f"{unit}_{arch}.ptx"
    result = subprocess.run([nvcc, "-ptx", f"-arch={arch}", "--std=c++11", str(source), "-o",
                             str(ptx)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = ptx.read_text()
    ctype = unit.rsplit("_", 1)[1]
    for entry in ENTRIES:
        assert f".entry {entry}_{ctype}(" in text, entry
    assert ".entry lmr_reduce_partials" in text
    # the reductions must not use atomics (bit-identical results run to run)
    assert re.search(r"^\s*(atom|red)\.", text, flags=re.MULTILINE) is None


@pytest.mark.parametrize("n, c", [(1, 1), (7, 1), (1000, 3), (333, 8), (50, 37),
                                  (10, 256), (9, 300), (5, 1024), (3, 1500)])
def test_launch_geometry_covers_every_entry_once(n, c):
    col_tile, rows, grid, block = launch_geometry(n, c)
    assert block[0] == rows * col_tile <= max(BLOCK_THREADS, col_tile)
    assert rows & (rows - 1) == 0  # power of two: the shared-memory tree is exact
    # emulate the kernel's index arithmetic for every (block, thread)
    hits = np.zeros((n, c), dtype=int)
    partial_slots = set()
    for bx in range(grid[0]):
        for by in range(grid[1]):
            t = np.arange(block[0])
            local_row, col = t // col_tile, by * col_tile + t % col_tile
            row = bx * rows + local_row
            ok = (row < n) & (col < c)
            np.add.at(hits, (row[ok], col[ok]), 1)
            for cc in col[(local_row == 0) & (col < c)]:
                partial_slots.add((bx, int(cc)))
    assert np.all(hits == 1)
    assert partial_slots == {(bx, cc) for bx in range(grid[0]) for cc in range(c)}


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_reference_noise_kernel(kind):
    out = np.empty((6, 4), dtype=np.float32)
    ReferenceKernels().noise(out, 5, 2, 1, kind)
    make = counter_rademacher if kind == "rademacher" else counter_gaussian
    np.testing.assert_array_equal(out, make(5, 2, 1, (6, 4), np.float32))
    with pytest.raises(ValueError, match="unknown noise kind"):
        ReferenceKernels().noise(out, 5, 2, 1, "uniform")


def test_baoab_stand_in_samples_the_gaussian_exactly():
    """BAOAB's position marginal is exact for a Gaussian target at any stable step:
    the window mean of q^T S q / T is rank(S) up to the statistical error."""
    rng = np.random.default_rng(3)
    n, rank, c = 40, 15, 64
    lam = np.concatenate([np.geomspace(1.0, 9.0, rank), np.zeros(n - rank)])
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    S = (U * lam) @ U.T
    h = 1.9 / math.sqrt(lam.max())
    friction = math.exp(-2.0 * h)
    backend = CupyBackend(xp=np)
    pre = as_preconditioner(None, n)
    gen = CounterStream(11)
    q = np.zeros((n, c))
    p = backend.noise(gen, q.shape, "rademacher", q.dtype)
    n_steps, burn = 1500, 500
    quads = []
    for _ in range(n_steps):
        quads.append(backend.baoab_update(q, p, S @ q, h=h, friction=friction, temperature=1.0,
                                          precond=pre, noise="rademacher", gen=gen))
    chain_means = np.array(quads[burn:]).mean(axis=0)
    stderr = chain_means.std(ddof=1) / math.sqrt(c)
    assert abs(chain_means.mean() - rank) < 5 * stderr, (chain_means.mean(), stderr)
