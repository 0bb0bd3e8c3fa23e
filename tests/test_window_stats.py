"""window_stats follows its documented layout (csrc/window_math.h): planar (9, H-2, W-2), mean colour
then the packed lower-triangular W with W^T W = (1/9) (Sigma + eps/9 I)^-1."""
import numpy as np
import pytest
import torch

from common import EPS, TOL, photo_crop
from dpst_ext import samples
from dpst_ext.engine import ops
from dpst_ext.engine.reference import as_hwc


def _reference_stats(image, eps):
    """(mu (K, 3), A/9 (K, 3, 3)) in longdouble, windows row-major by top-left pixel."""
    img = as_hwc(image).astype(np.longdouble)
    h, w, _ = img.shape
    cols = np.stack([img[dy:dy + h - 2, dx:dx + w - 2] for dy in range(3) for dx in range(3)], axis=2)
    cols = cols.reshape(-1, 9, 3)
    mu = cols.mean(axis=1)
    d = cols - mu[:, None]
    sigma = np.einsum("kai,kaj->kij", d, d) / 9 + np.longdouble(eps) / 9 * np.eye(3, dtype=np.longdouble)
    inv = np.stack([np.linalg.inv(s.astype(np.float64)) for s in sigma]).astype(np.longdouble)
    inv = inv + inv @ (np.eye(3, dtype=np.longdouble) - sigma @ inv)  # one Newton step in longdouble
    return mu, inv / 9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", ["noise", "pasted", "astronaut_black"])
def test_stats_layout_and_whitening_identity(name, dtype):
    image = (samples.random_image(9, 12, seed=3) if name == "noise" else photo_crop(name, 24)[:, :9, :12]).to(dtype)
    stats = ops.window_stats(image, EPS)
    assert stats.shape == (9, 7, 10) and stats.dtype == dtype
    s = stats.double().numpy().reshape(9, -1).T              # (K, 9)
    mu_ref, a9 = _reference_stats(image.double(), EPS)
    kind = "noise" if name == "noise" else "photo"
    u = float(torch.finfo(dtype).eps)
    assert np.abs(s[:, :3] - mu_ref.astype(np.float64)).max() <= 2 * u   # the mean, rounded once
    w = np.zeros((s.shape[0], 3, 3))
    w[:, [0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2]] = s[:, 3:]
    wtw = np.einsum("kji,kjl->kil", w, w)
    err = np.abs(wtw - a9.astype(np.float64)) / np.abs(a9.astype(np.float64)).max(axis=(1, 2), keepdims=True)
    # float64: W^T W reproduces A/9 to kappa * u64 (<= 1e-8; measured 3e-10 on "pasted"). float32: W is
    # computed in double and rounded once, so W^T W carries ~2 u32 relative to its largest entry
    # (measured 1.1e-7); 1e-6 = 16 u32.
    assert err.max() <= (TOL[(dtype, kind)] if dtype == torch.float64 else 1e-6)
