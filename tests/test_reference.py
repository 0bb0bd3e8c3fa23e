"""Guards on the oracles themselves: the longdouble reference against exact rational arithmetic on tiny
patches holding the hardest windows found (near-singular covariances at black/white/flat borders), and
the fast ops against the same exact values."""
import numpy as np
import pytest
import torch

from common import EPS, TOL
from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian
from dpst_ext.engine.reference import window_blocks, window_blocks_exact

# 8x8 patches (top-left in samples.hard_crops(200)) around the pixels where float64 codes err most.
PATCHES = [("pasted", 96, 114), ("pasted", 161, 46), ("pasted", 147, 7),
           ("astronaut_black", 119, 180), ("astronaut_black", 154, 187)]
_cache = {}


def _patch_and_exact(name, y, x, dtype):
    key = (name, y, x, dtype)
    if key not in _cache:
        if 200 not in _cache:
            _cache[200] = samples.hard_crops(200)
        patch = _cache[200][name][:, y:y + 8, x:x + 8].to(dtype).contiguous()
        ids, blocks = window_blocks_exact(patch.double(), EPS)
        dense = np.zeros((64, 64))
        np.add.at(dense, (ids[:, :, None], ids[:, None, :]), blocks.astype(np.float64))
        _cache[key] = patch, blocks.astype(np.float64), dense
    return _cache[key]


@pytest.mark.parametrize("name,y,x", PATCHES)
def test_longdouble_reference_matches_exact_arithmetic(name, y, x):
    patch, exact_blocks, _ = _patch_and_exact(name, y, x, torch.float64)
    _, ld = window_blocks(patch, EPS, np.longdouble)
    assert np.abs(ld.astype(np.float64) - exact_blocks).max() <= 1e-12   # measured <= 1e-13


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name,y,x", PATCHES)
def test_fast_csr_matches_exact_arithmetic(name, y, x, dtype):
    """On the exact values the op saw (float32 patches: the float32-rounded colours)."""
    patch, _, exact = _patch_and_exact(name, y, x, dtype)
    fast = MattingLaplacian(patch, EPS).to_scipy().toarray().astype(np.float64)
    assert np.abs(fast - exact).max() <= TOL[(dtype, "photo")] * np.abs(exact).max()
