"""Smooth local affine against a float64 direct reference (per-pixel least squares, explicit bilateral sums)."""
import math

import numpy as np
import pytest
import torch

from dpst_ext import samples
from dpst_ext.engine.postprocess import local_affine_fit_torch, smooth_local_affine_torch


def smooth_local_affine_reference(content, output, radius, edge, ridge):
    """Straight from the definition, pixel by pixel, in numpy float64. Inputs (3, H, W)."""
    I = content.numpy().astype(np.float64)
    O = output.numpy().astype(np.float64)
    _, h, w = I.shape
    A = np.zeros((h, w, 3, 4))
    for y in range(h):
        for x in range(w):
            ys, xs = range(max(0, y - 1), min(h, y + 2)), range(max(0, x - 1), min(w, x + 2))
            X = np.array([[*I[:, j, i], 1.0] for j in ys for i in xs])
            Y = np.array([O[:, j, i] for j in ys for i in xs])
            lhs = X.T @ X + ridge * np.diag([1.0, 1.0, 1.0, 0.0])
            A[y, x] = np.linalg.solve(lhs, X.T @ Y).T
    out = np.zeros((3, h, w))
    s = radius / 3.0
    for y in range(h):
        for x in range(w):
            num, den = np.zeros((3, 4)), 0.0
            for j in range(max(0, y - radius), min(h, y + radius + 1)):
                for i in range(max(0, x - radius), min(w, x + radius + 1)):
                    d2 = float(((I[:, j, i] - I[:, y, x]) ** 2).sum())
                    wgt = math.exp(-((j - y) ** 2 + (i - x) ** 2) / (2 * s * s)) * math.exp(-d2 / (2 * edge * edge))
                    num += wgt * A[j, i]
                    den += wgt
            out[:, y, x] = (num / den) @ np.array([*I[:, y, x], 1.0])
    return torch.from_numpy(out)


@pytest.mark.parametrize("radius,edge", [(2, 0.1), (3, 0.01)])
def test_matches_float64_reference_on_a_real_photo_crop(radius, edge):
    photo = samples.photo("chelsea", 64, torch.float64)[:, 10:19, 20:31]   # 9 x 11, includes edges
    g = torch.Generator().manual_seed(0)
    output = (photo.flip(0) * 0.7 + 0.2 + 0.05 * torch.rand(photo.shape, generator=g, dtype=torch.float64))
    got = smooth_local_affine_torch(photo, output, radius=radius, edge=edge, ridge=1e-3)
    want = smooth_local_affine_reference(photo, output, radius, edge, 1e-3)
    assert torch.allclose(got, want, rtol=0, atol=1e-10)


def test_float32_close_to_float64():
    photo = samples.photo("coffee", 32, torch.float64)
    output = photo.flip(0).sqrt()
    a = smooth_local_affine_torch(photo, output, radius=4)
    b = smooth_local_affine_torch(photo.float(), output.float(), radius=4)
    assert (a - b.double()).abs().max() < 1e-3


def test_global_affine_recolouring_is_kept():
    # With a negligible ridge, an output that is one affine map of the content is reproduced exactly
    # (random colours: every window's fit is unique; flat windows of a photo would make it ambiguous).
    photo = torch.rand(3, 20, 23, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    M = torch.tensor([[0.5, 0.2, 0.1], [0.0, 0.9, -0.1], [0.3, 0.0, 0.6]], dtype=torch.float64)
    output = torch.einsum("ij,jhw->ihw", M, photo) + torch.tensor([0.1, 0.0, 0.05], dtype=torch.float64).view(3, 1, 1)
    got = smooth_local_affine_torch(photo, output, radius=5, edge=0.05, ridge=1e-12)
    assert torch.allclose(got, output, atol=1e-6)


def test_coefficient_shapes_and_errors():
    photo = torch.rand(3, 5, 6, dtype=torch.float64)
    assert local_affine_fit_torch(photo, photo).shape == (12, 5, 6)
    with pytest.raises(ValueError, match=r"output must be a \(3, H, W\) tensor with content's H, W"):
        smooth_local_affine_torch(photo, photo[:, :4])
    with pytest.raises(ValueError, match=r"content must be a \(3, H, W\) tensor"):
        smooth_local_affine_torch(photo[:2], photo[:2])
    with pytest.raises(ValueError, match="edge must be > 0"):
        smooth_local_affine_torch(photo, photo, edge=0)


# ---- posterisation refinement: colour guided filter ------------------------------------------------------

def guided_filter_reference(guide, src, radius, eps):
    """He et al.'s colour guided filter straight from the definition: explicit clipped windows, numpy float64."""
    I = guide.numpy().astype(np.float64)
    P = src.numpy().astype(np.float64)
    _, h, w = I.shape
    c = P.shape[0]
    a, b = np.zeros((h, w, 3, c)), np.zeros((h, w, c))
    for y in range(h):
        for x in range(w):
            win = (slice(None), slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))
            Iw, Pw = I[win].reshape(3, -1), P[win].reshape(c, -1)
            mu, mp = Iw.mean(1), Pw.mean(1)
            sigma = (Iw - mu[:, None]) @ (Iw - mu[:, None]).T / Iw.shape[1]
            cov = (Iw - mu[:, None]) @ (Pw - mp[:, None]).T / Iw.shape[1]
            a[y, x] = np.linalg.solve(sigma + eps * np.eye(3), cov)
            b[y, x] = mp - mu @ a[y, x]
    out = np.zeros((c, h, w))
    for y in range(h):
        for x in range(w):
            ys, xs = slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1)
            out[:, y, x] = I[:, y, x] @ a[ys, xs].mean((0, 1)) + b[ys, xs].mean((0, 1))
    return torch.from_numpy(out)


def test_box_mean_matches_pooling():
    from dpst_ext.engine.postprocess import box_mean

    x = torch.rand(2, 13, 17, dtype=torch.float64)
    for r in (1, 3, 6):
        ref = torch.nn.functional.avg_pool2d(x[None], 2 * r + 1, stride=1, padding=r, count_include_pad=False)[0]
        torch.testing.assert_close(box_mean(x, r), ref, rtol=1e-12, atol=1e-12)
    # radius larger than the image: every pixel sees the whole image
    torch.testing.assert_close(box_mean(x, 40), x.mean((1, 2), keepdim=True).expand_as(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("radius,eps", [(2, 0.01), (4, 1e-4)])
def test_guided_filter_vs_reference(radius, eps):
    from dpst_ext.engine.postprocess import guided_filter

    torch.manual_seed(0)
    guide = samples.photo("astronaut", long_side=24, dtype=torch.float64)
    src = (guide.flip(0) ** 2 + 0.05 * torch.rand_like(guide))[:2]
    torch.testing.assert_close(guided_filter(guide, src, radius, eps), guided_filter_reference(guide, src, radius, eps),
                               rtol=1e-9, atol=1e-10)


def test_refine_posterization_properties():
    from dpst_ext.engine.postprocess import refine_posterization

    content = samples.photo("coffee", long_side=40, dtype=torch.float32)
    # An output equal to the content comes back unchanged (base + detail = the content).
    torch.testing.assert_close(refine_posterization(content, content), content, rtol=0, atol=1e-6)
    # Banding in a smooth region is reduced: quantise a smooth recolouring to 6 levels.
    smooth = (0.2 + 0.6 * content.mean(0, keepdim=True)).expand(3, -1, -1)
    banded = (smooth * 6).round() / 6
    out = refine_posterization(content, banded)
    assert (out - smooth).abs().mean() < 0.7 * (banded - smooth).abs().mean()
    with pytest.raises(ValueError, match="output"):
        refine_posterization(content, banded[:, :10])
