"""The fast matvec on the paper's own content photos (../shared/data/dpst_examples, not shipped with the
repo: skipped when absent). Darkest 40x40 crop of each input, float32 and float64 vs longdouble."""

import numpy as np
import pytest
import torch
from PIL import Image

from common import EPS, TOL, max_rel, randn
from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian
from dpst_ext.engine.reference import matvec_reference

DATA = samples.EXAMPLES / "input"     # the developers' example photos; absent on a user's clone
INPUTS = sorted(DATA.glob("in*.png"))[:4] if DATA.is_dir() else []


def _darkest_crop(path, size=40):
    img = np.asarray(Image.open(path).convert("RGB"))
    lum = img.sum(axis=2).astype(np.float64)
    box = np.lib.stride_tricks.sliding_window_view(lum, (size, size))[::8, ::8].sum(axis=(2, 3))
    y, x = np.unravel_index(box.argmin(), box.shape)
    crop = img[8 * y:8 * y + size, 8 * x:8 * x + size]
    return torch.from_numpy(crop.transpose(2, 0, 1).astype(np.float64) / 255.0).contiguous()


@pytest.mark.skipif(not INPUTS, reason=f"shared example photos not found at {DATA}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_matvec_on_dpst_inputs(path, dtype):
    image = _darkest_crop(path).to(dtype)
    v = randn(3, *image.shape[1:], seed=6, dtype=dtype)
    fast = MattingLaplacian(image, EPS).matvec(v)
    ref = matvec_reference(image.double(), v.double(), EPS, np.longdouble)
    assert max_rel(fast, ref) <= TOL[(dtype, "photo")]
