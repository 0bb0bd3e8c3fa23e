"""Local affine upsampling (dpst_ext.engine.upsample): exact for affine recolourings, bilinear coefficient
interpolation as F.interpolate, fits that reproduce locally affine results."""
import pytest
import torch
import torch.nn.functional as F

from dpst_ext import samples
from dpst_ext.engine.upsample import affine_upsample, apply_coefficients, upsampling_coefficients, global_affine_fit

A = torch.tensor([[0.8, 0.3, -0.1], [0.05, 0.7, 0.2], [-0.2, 0.1, 1.1]], dtype=torch.float64)
B = torch.tensor([0.05, -0.02, 0.1], dtype=torch.float64)


def _recolour(image):
    return (torch.einsum("ij,jhw->ihw", A.to(image.dtype), image) + B.to(image.dtype)[:, None, None])


def _pair(dtype, full=(150, 211), small=(41, 57)):
    full_img = samples.photo("astronaut", max(full)).to(dtype)[:, :full[0], :full[1]].contiguous()
    small_img = F.interpolate(full_img[None].double(), size=small, mode="area")[0].to(dtype)
    return full_img, small_img


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_affine_recolouring_is_exact_at_full_resolution(dtype, tol):
    full_img, small_img = _pair(dtype)
    out = affine_upsample(full_img, small_img, _recolour(small_img))
    expected = _recolour(full_img.double())
    err = (out.double() - expected).abs().max().item()
    assert out.dtype == dtype and out.shape == full_img.shape
    assert err <= tol, err


def test_exact_on_flat_and_saturated_content():
    """Flat windows (zero covariance) and a saturated channel: the ridge toward the global fit keeps it exact."""
    full_img = samples.hard_crops(64)["pasted"]
    small_img = F.interpolate(full_img[None], size=(24, 24), mode="area")[0]
    out = affine_upsample(full_img, small_img, _recolour(small_img), eps=1e-2)
    assert (out - _recolour(full_img)).abs().max().item() <= 1e-12


def test_global_fit_recovers_the_map():
    _, small_img = _pair(torch.float64)
    g = global_affine_fit(small_img, _recolour(small_img))
    assert torch.allclose(g[:, :3], A, atol=1e-12) and torch.allclose(g[:, 3], B, atol=1e-12)


def test_coefficients_are_interpolated_as_F_interpolate_bilinear():
    g = torch.Generator().manual_seed(0)
    coef = torch.rand(3, 4, 7, 9, generator=g, dtype=torch.float64)
    content = torch.rand(3, 30, 23, generator=g, dtype=torch.float64)
    up = F.interpolate(coef.reshape(1, 12, 7, 9), size=(30, 23), mode="bilinear", align_corners=False)
    up = up.reshape(3, 4, 30, 23)
    expected = (up[:, :3] * content[None]).sum(1) + up[:, 3]
    for band in (1, 4, 64):
        out = apply_coefficients(coef, content, band_rows=band)
        assert (out - expected).abs().max().item() <= 1e-14


def test_fit_reproduces_a_piecewise_affine_result_away_from_the_seam():
    """Two different affine maps on the left and right halves: the per-pixel fit reproduces each half
    except within the averaging reach of the seam (2 radii: fit window + coefficient average)."""
    _, small_img = _pair(torch.float64, small=(40, 60))
    left = _recolour(small_img)
    right = small_img.flip(0) * 0.5 + 0.2
    result = torch.cat([left[..., :30], right[..., 30:]], dim=2)
    coef = upsampling_coefficients(small_img, result, radius=1, eps=1e-6)
    fitted = (coef[:, :3] * small_img[None]).sum(1) + coef[:, 3]
    far = torch.ones(60, dtype=torch.bool)
    far[27:33] = False
    err = (fitted - result)[..., far].abs().max().item()
    assert err <= 1e-3, err


def test_argument_errors():
    full_img, small_img = _pair(torch.float64)
    with pytest.raises(ValueError, match="result_small must be"):
        affine_upsample(full_img, small_img, small_img[:, :10])
    with pytest.raises(ValueError, match="eps must be > 0"):
        upsampling_coefficients(small_img, small_img, eps=0.0)
    with pytest.raises(ValueError, match="content_full must have shape"):
        affine_upsample(full_img[:2], small_img, small_img)


@pytest.mark.parametrize("radius", [1, 3])
def test_guided_coefficients_in_bands_equal_the_whole_image(radius):
    """Bands of any height, each with 2r rows either side, give the whole image's coefficients to rounding,
    borders included (the last band short, bands thinner than the halo)."""
    from dpst_ext.engine.upsample import guided_coefficients

    g = torch.Generator().manual_seed(4)
    guide = samples.photo("astronaut", 70, torch.float64)
    p = torch.rand(2, *guide.shape[1:], generator=g, dtype=torch.float64)
    prior = torch.rand(2, 3, generator=g, dtype=torch.float64)
    whole = guided_coefficients(guide, p, radius, 1e-4, prior, band_rows=guide.shape[1])
    for band in (1, 7, None):
        banded = guided_coefficients(guide, p, radius, 1e-4, prior, band_rows=band)
        assert torch.allclose(banded, whole, rtol=1e-9, atol=1e-9), (band, (banded - whole).abs().max())
