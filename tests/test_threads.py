"""The CPU ops run on torch's threads, and give the same result on any number of them.

Until 2026-11-30 the extension was compiled without -fopenmp. at::parallel_for is a header template: built
so, it runs its whole range on the calling thread, and every op used one core whatever
torch.set_num_threads said. Results did not change, so no other test could notice."""
import sys
from pathlib import Path

import pytest
import torch

from dpst_ext import _C, samples
from dpst_ext.engine import ops


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setup.py adds -fopenmp on Linux only")
def test_extension_is_built_with_openmp():
    # An OpenMP parallel region compiles to a call of GOMP_parallel: its name is in the dynamic symbols.
    assert b"GOMP_parallel" in Path(_C.__file__).read_bytes(), \
        "dpst_ext._C was built without -fopenmp: at::parallel_for runs serially (setup.py)"


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_ops_give_the_same_result_on_1_and_2_threads(threads):
    # Large enough for many row chunks and three column strips (csrc/cpu/laplacian_cpu.cpp, Tiles).
    image = samples.photo("astronaut", 1100, torch.float32)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, *image.shape[1:], generator=g)
    result = torch.rand(3, *image.shape[1:], generator=g)   # (torch's own ops may round differently per split)
    out = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        st = ops.window_stats(image, 1e-7)
        crow, col, val = ops.laplacian_csr(image, st)
        coeffs = ops.local_affine_fit(image, result, 1e-3)
        out[n] = [st, ops.laplacian_matvec(image, st, v), ops.laplacian_diagonal(image, st), crow, col, val,
                  coeffs, ops.bilateral_affine_apply(coeffs, image, 4, 0.01), ops.photoreal_loss(image, st, v)]
    *same1, loss1 = out[1]
    *same2, loss2 = out[2]
    for a, b in zip(same1, same2):       # every output element is computed by the same code in any split
        assert torch.equal(a, b)
    # A sum in double, returned in float32: only its grouping differs, so at most the last bit of the result.
    assert torch.allclose(loss1, loss2, rtol=2 ** -23, atol=0)
