"""dpst_ext.engine.highres.upscale_result: exactness for affine recolourings through the whole stage (the
smoothing keeps an affine function of the content where it is), refusal before any work, progress."""
import pytest
import torch
import torch.nn.functional as F

from dpst_ext import samples
from dpst_ext.engine.highres import upscale_result
from dpst_ext.engine.memory import InsufficientMemoryError

A = torch.tensor([[0.8, 0.3, -0.1], [0.05, 0.7, 0.2], [-0.2, 0.1, 0.9]], dtype=torch.float64)
B = torch.tensor([0.05, 0.0, 0.1], dtype=torch.float64)


def _recolour(image):
    return torch.einsum("ij,jhw->ihw", A.to(image.dtype), image) + B.to(image.dtype)[:, None, None]


def _inputs():
    full = samples.photo("coffee", 72, dtype=torch.float32)
    small = F.interpolate(full[None], size=(16, 24), mode="area")[0]
    return full, small


def test_affine_recolouring_passes_through_unchanged():
    full, small = _inputs()
    expected = _recolour(full.double()).clamp(0, 1)
    out_off = upscale_result(full, small, _recolour(small.double()), smoothing="off")
    assert out_off.dtype == torch.float32 and out_off.shape == full.shape
    assert (out_off.double() - expected).abs().max().item() <= 1e-6
    # Smoothing: constants are in M's null space exactly, colour-linear functions only up to the eps/9
    # ridge of each window, which w/9 ~ 1111 amplifies in low-variance windows: measured max change 0.020
    # at 160 px, 0.013 here. A non-affine result moves by more (next test).
    rep = {}
    out = upscale_result(full, small, _recolour(small.double()), smoothing="exact", report=rep)
    assert rep["smooth_converged"]
    assert (out.double() - expected).abs().max().item() <= 0.03


def test_smoothing_moves_the_result_toward_the_content_model():
    """A result that is not locally affine in the content (noise added at working size) has a lower
    photorealism residual after smoothing than after the upsampling alone."""
    from dpst_ext.engine import MattingLaplacian

    full, small = _inputs()
    g = torch.Generator().manual_seed(0)
    noisy = (small.double() ** 0.8 + 0.05 * torch.randn(small.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    lap = MattingLaplacian(full.double())
    off = upscale_result(full, small, noisy, smoothing="off")
    fast = upscale_result(full, small, noisy, smoothing="fast")
    assert lap.quad(fast.double()).item() < lap.quad(off.double()).item()


def test_refuses_before_any_work_and_reports_progress():
    full, small = _inputs()
    with pytest.raises(InsufficientMemoryError, match="refusing to start"):
        upscale_result(full, small, small, smoothing="exact", available=1)
    steps = []
    upscale_result(full, small, small, smoothing="fast", callback=lambda step, info: steps.append(step))
    assert steps[0] == "plan" and steps[1] == "upsample" and steps[-1] == "done" and "smooth" in steps
    with pytest.raises(ValueError, match="smoothing must be"):
        upscale_result(full, small, small, smoothing="yes")
