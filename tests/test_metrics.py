"""The four quality measures (dpst_ext.metrics) against hand-computed values on small inputs."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from dpst_ext import samples
from dpst_ext.masks import MaskPair
from dpst_ext.metrics import (GRAM_LAYERS, colour_style_distance, edge_ssim, gram_style_distance,
                              photoreal_residual, score, sliced_w1, sobel_magnitude, ssim)
from dpst_ext.engine.reference import matting_laplacian_dense


def test_sliced_w1_of_a_translation():
    # Shifting a set by t moves every projection on direction d by d.t: W1 = mean_d |d.t| exactly.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(1000, 3))
    t = np.array([1.0, -2.0, 0.5])
    d = np.random.default_rng(0).normal(size=(64, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    assert sliced_w1(a, a + t) == pytest.approx(np.abs(d @ t).mean(), rel=1e-12)
    assert sliced_w1(a, a) == 0.0


def test_sliced_w1_matches_numpy_quantiles():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(500, 3)), rng.gamma(2.0, size=(777, 3))
    d = np.random.default_rng(0).normal(size=(64, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q = (np.arange(512) + 0.5) / 512
    expected = np.abs(np.quantile(a @ d.T, q, axis=0) - np.quantile(b @ d.T, q, axis=0)).mean()
    assert sliced_w1(a, b) == pytest.approx(expected, rel=1e-12)


def test_colour_distance_per_label():
    # Two labels: the output's label 0 is the style's label 0 exactly (distance 0); label 1 is uniform
    # grey against uniform white: every Lab projection differs by d.(Lab white - Lab grey).
    h, w = 8, 8
    style = torch.zeros(3, h, w, dtype=torch.float64)
    style[:, :4] = torch.rand(3, 4, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    style[:, 4:] = 1.0
    out = style.clone()
    out[:, 4:] = 0.5
    labels = torch.zeros(h, w, dtype=torch.int64)
    labels[4:] = 1
    masks = MaskPair.from_labels(labels, labels, warn=False)
    from dpst_ext.image_io import rgb_to_lab

    dlab = (rgb_to_lab(torch.ones(3, 1, dtype=torch.float64)) - rgb_to_lab(torch.full((3, 1), 0.5, dtype=torch.float64)))
    d = np.random.default_rng(0).normal(size=(64, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    expected = (0.0 + np.abs(d @ dlab[:, 0].numpy()).mean()) / 2
    assert colour_style_distance(out, style, masks) == pytest.approx(expected, rel=1e-9)


class FakeVGG(nn.Module):
    """Returns fixed feature maps per layer (independent of the input) so Gram matrices are known."""

    def __init__(self, features):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.features = features
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return {n: f[self.calls - 1][None] for n, f in self.features.items()}


def test_gram_distance_by_hand():
    # Layer features (C=2, 2x2) for the output, then the style. Content label 1 = the right half plus the
    # top-left quadrant (area 3/4), label 0 the rest (1/4); style: left half 0, right half 1.
    g = torch.Generator().manual_seed(3)
    feats = {n: [torch.rand(2, 2, 2, generator=g, dtype=torch.float64) for _ in range(2)] for n in GRAM_LAYERS}
    labels = torch.zeros(8, 8, dtype=torch.int64)
    labels[:, 4:] = 1
    labels[:4, :4] = 1
    slabels = torch.zeros(8, 8, dtype=torch.int64)
    slabels[:, 4:] = 1
    masks = MaskPair.from_labels(labels, slabels, warn=False)

    def gram(f, cells):                                 # G = F_k F_k^T / (C n_k) over the (row, col) cells
        fk = torch.stack([f[:, r, c] for r, c in cells], 1)
        return fk @ fk.T / (2 * len(cells))

    # Nearest-neighbour masks at the 2x2 layers: each cell takes the label at its centre.
    content_cells = {0: [(1, 0)], 1: [(0, 0), (0, 1), (1, 1)]}
    style_cells = {0: [(0, 0), (1, 0)], 1: [(0, 1), (1, 1)]}
    total = 0.0
    for k, area in ((0, 0.25), (1, 0.75)):
        total += area * sum(float((gram(fo, content_cells[k]) - gram(fs, style_cells[k])).square().mean())
                            for fo, fs in feats.values())
    img = torch.rand(3, 8, 8, generator=g)
    got = gram_style_distance(img, img, masks, vgg=FakeVGG(feats), size=8)
    assert got == pytest.approx(math.log10(total), rel=1e-6)


def test_gram_distance_of_the_style_itself_is_minus_infinity():
    s = samples.photo("coffee", 48, torch.float32)
    assert gram_style_distance(s, s) == -math.inf


def test_photoreal_residual_matches_the_dense_laplacian():
    c = samples.photo("astronaut", 12)
    o = torch.rand(3, *c.shape[1:], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    m = matting_laplacian_dense(c.permute(1, 2, 0).numpy(), dtype=np.float64)
    v = o.reshape(3, -1).numpy()
    expected = sum(float(v[k] @ m @ v[k]) for k in range(3)) / v.shape[1]
    assert photoreal_residual(c, o) == pytest.approx(expected, rel=1e-9)
    # The content is its own affine recolouring: only the eps ridge on the windows' maps is left.
    assert abs(photoreal_residual(c, c)) < 1e-4 * expected


def test_sobel_of_a_unit_step():
    x = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    x[..., 3:] = 1.0
    e = sobel_magnitude(x)[0, 0]
    assert torch.allclose(e[:, 2:4], torch.ones(6, 2, dtype=torch.float64))
    assert torch.all(e[:, :2] == 0) and torch.all(e[:, 4:] == 0)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(6)
    a = torch.rand(1, 1, 40, 50, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(1, 1, 40, 50, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = structural_similarity(a[0, 0].numpy(), b[0, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_edge_ssim_and_score():
    c = samples.photo("rocket", 48, torch.float32)
    assert edge_ssim(c, c) == pytest.approx(1.0)
    assert edge_ssim(c, torch.full_like(c, 0.5)) < 0.2          # no structure left (but flat sky agrees)
    s = samples.photo("coffee", 48, torch.float32)
    m = score(c, s, c.flip(0))
    assert set(m) == {"colour", "gram", "residual", "edge_ssim"} and all(math.isfinite(v) for v in m.values())
    with pytest.raises(ValueError, match="content's shape"):
        score(c, s, c[:, 1:])
