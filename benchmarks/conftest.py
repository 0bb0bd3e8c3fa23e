"""Shared set-up of the benchmark suite: pinned thread counts and the real-photo inputs.

Thread counts are pinned to 2 (the machine's core count) for every library before any of them starts:
torch (ATen parallel_for), OpenMP/MKL/OpenBLAS (scipy, numpy) and numba (pymatting). scipy's SpMV and
pymatting's cf_laplacian are single-threaded code; ours use both threads.
"""
import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)

from dpst_ext.engine import ops  # noqa: E402
from dpst_ext.samples import photo_megapixels  # noqa: E402

MEGAPIXELS = (0.26, 1.0, 4.0)
EPS = 1e-7
_cache = {}


class Inputs:
    """One photo at a given size: our float32 (3, H, W) tensors and the anchors' float64 (H, W, 3)."""

    def __init__(self, mp):
        self.mp = mp
        self.image = photo_megapixels(mp, dtype=torch.float32)  # (3, H, W), 8-bit values in 0..1
        self.height, self.width = self.image.shape[1:]
        self.pixels = self.height * self.width
        self.stats = ops.window_stats(self.image, EPS)
        self.stencil = ops.laplacian_stencil(self.image, EPS)
        g = torch.Generator().manual_seed(0)
        self.v3 = torch.rand(3, self.height, self.width, generator=g)
        self.v1 = self.v3[:1].contiguous()
        # pymatting works on float64 (H, W, 3) images
        self.image_hwc = np.ascontiguousarray(self.image.double().permute(1, 2, 0).numpy())
        self._pm = None

    @property
    def pymatting_matrix(self):
        """pymatting's CSR matrix of this photo (built once, for the SpMV anchor)."""
        if self._pm is None:
            from pymatting.laplacian.cf_laplacian import cf_laplacian

            self._pm = cf_laplacian(self.image_hwc, epsilon=EPS, radius=1)
        return self._pm

    def v_numpy(self, channels):
        """v as the SpMV anchor takes it: float64, (N,) or (N, C)."""
        v = np.ascontiguousarray(self.v3[:channels].double().reshape(channels, -1).numpy().T)
        return v[:, 0].copy() if channels == 1 else v


def inputs(mp) -> Inputs:
    if mp not in _cache:
        _cache.clear()  # keep one size in memory: the 4 MP pymatting matrix alone is ~1.2 GB
        _cache[mp] = Inputs(mp)
    return _cache[mp]


@pytest.fixture(scope="session", autouse=True)
def warm_up_pymatting():
    """pymatting's cf_laplacian is numba-compiled on first call: compile it before anything is timed."""
    from pymatting.laplacian.cf_laplacian import cf_laplacian

    cf_laplacian(np.random.default_rng(0).random((16, 16, 3)), epsilon=EPS, radius=1)
