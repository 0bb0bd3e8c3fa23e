"""Four measures of a photorealistic style transfer, judged together (none alone says "better").

    m = score(content, style, output, masks)     # {"colour": ..., "gram": ..., "residual": ..., "edge_ssim": ...}

* ``colour_style_distance`` (lower = more faithful colours): mean over labels present in both photos of
  the sliced Wasserstein-1 distance between the CIE Lab colours of the output's pixels and of the
  style's pixels with that label (64 seeded directions, 512 quantiles).
* ``gram_style_distance`` (lower = more faithful texture and light; reported as log10): per label present
  in both photos and per layer relu1_1 .. relu5_1 of the VGG-19, the mean squared difference of the
  masked Gram matrices G_k = F_k F_k^T / (C n_k) of output and style (F_k: the layer's features at the
  n_k positions of label k, masks resized to the layer by nearest neighbour), summed over layers and
  averaged over labels weighted by their area in the content, both photos at a 384 px long side. This
  is the "Gram loss" that PhotoWCT and WCT2 report.
* ``photoreal_residual`` (lower = closer to a locally affine recolouring of the content):
  (1/N) sum_c O_c^T M_I O_c with O in 0..1 and M_I the content's matting Laplacian (eps 1e-7).
* ``edge_ssim`` (higher = the content's structure kept): SSIM (Gaussian window, sigma 1.5) between the
  Sobel gradient magnitudes of the grey content and of the grey output (WCT2's structure measure).

Images are (3, H, W) RGB in 0..1; the output has the content's size. ``masks`` is a MaskPair at the
content's and the style's sizes (None: one label).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .image_io import resize_long_side, rgb_to_lab
from .masks import MaskPair
from .options import STYLE_LAYERS

__all__ = ["colour_style_distance", "gram_style_distance", "photoreal_residual", "edge_ssim", "score",
           "sliced_w1", "sobel_magnitude", "ssim", "GRAM_SIZE", "GRAM_LAYERS", "mask_agreement"]

GRAM_SIZE = 384
GRAM_LAYERS = STYLE_LAYERS


def _masks(masks: MaskPair | None, content: torch.Tensor, style: torch.Tensor) -> MaskPair:
    if masks is None:
        return MaskPair.single(tuple(content.shape[1:]), tuple(style.shape[1:]))
    return masks.resized(tuple(content.shape[1:]), tuple(style.shape[1:]))


def _quantiles(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per column of x (n, d), the quantiles at levels q (numpy's default "linear" rule): (len(q), d)."""
    srt = x.T.contiguous().sort(dim=1).values           # rows sort twice as fast as columns
    pos = q * (x.shape[0] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=x.shape[0] - 1)
    return torch.lerp(srt[:, lo], srt[:, hi], pos - lo).T


def sliced_w1(a, b, directions: int = 64, quantiles: int = 512, seed: int = 0) -> float:
    """Sliced Wasserstein-1 between point sets a (n, d) and b (m, d) (numpy or torch): the mean over
    seeded random unit directions of the 1-D W1 between the projections, on a common grid of quantiles."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(directions, a.shape[1]))
    d = torch.from_numpy(d / np.linalg.norm(d, axis=1, keepdims=True))
    q = (torch.arange(quantiles, dtype=torch.float64) + 0.5) / quantiles
    return float((_quantiles(a @ d.T, q) - _quantiles(b @ d.T, q)).abs().mean())


def colour_style_distance(output: torch.Tensor, style: torch.Tensor, masks: MaskPair | None = None) -> float:
    pair = _masks(masks, output, style)
    lo = rgb_to_lab(output.double()).reshape(3, -1).T
    ls = rgb_to_lab(style.double()).reshape(3, -1).T
    dists = []
    for mo, ms in zip(pair.content, pair.style):
        mo, ms = mo.reshape(-1) > 0.5, ms.reshape(-1) > 0.5
        if mo.any() and ms.any():
            dists.append(sliced_w1(lo[mo], ls[ms]))
    return float(np.mean(dists)) if dists else math.nan


def _label_grams(features: torch.Tensor, masks: torch.Tensor) -> list[torch.Tensor | None]:
    """G_k = F_k F_k^T / (C n_k) per hard mask (K, H, W) resized to the features (C, h, w) (None: empty)."""
    c, h, w = features.shape
    m = F.interpolate(masks[None], size=(h, w), mode="nearest-exact")[0].reshape(masks.shape[0], -1) > 0.5
    f = features.reshape(c, -1).double()
    out = []
    for mk in m:
        n = int(mk.sum())
        fk = f[:, mk]
        out.append(fk @ fk.T / (c * n) if n else None)
    return out


def gram_style_distance(output: torch.Tensor, style: torch.Tensor, masks: MaskPair | None = None, vgg=None,
                        size: int = GRAM_SIZE) -> float:
    """log10 of the area-weighted masked Gram distance (module docstring). ``vgg``: a VGG19Features with
    GRAM_LAYERS (built with the bundled weights when None; pass one to score many images)."""
    from .vgg import VGG19Features

    vgg = vgg if vgg is not None else VGG19Features(GRAM_LAYERS)
    o, s = resize_long_side(output.float(), size), resize_long_side(style.float(), size)
    pair = _masks(masks, o, s)
    dev = next(vgg.parameters()).device
    with torch.no_grad():
        fo, fs = vgg(o[None].to(dev)), vgg(s[None].to(dev))
    area = pair.content.reshape(pair.content.shape[0], -1).mean(1).double()
    total, weight = 0.0, 0.0
    per_layer = {n: (_label_grams(fo[n][0].cpu(), pair.content), _label_grams(fs[n][0].cpu(), pair.style))
                 for n in GRAM_LAYERS}
    for k in range(pair.content.shape[0]):
        if any(go[k] is None or gs[k] is None for go, gs in per_layer.values()):
            continue                               # absent from one photo (at some layer's resolution)
        d = sum(float((go[k] - gs[k]).square().mean()) for go, gs in per_layer.values())
        total += float(area[k]) * d
        weight += float(area[k])
    if weight == 0:
        return math.nan                            # no label in both photos
    return math.log10(total / weight) if total > 0 else -math.inf


def photoreal_residual(content: torch.Tensor, output: torch.Tensor) -> float:
    """The photorealism term per pixel, sum_c V_c^T M V_c / (H W) in float64 (MattingLaplacian.quad): how far
    the output is from a locally affine function of the content's colours."""
    from .engine.laplacian import MattingLaplacian

    lap = MattingLaplacian(content.double(), eps=1e-7)
    return float(lap.quad(output.double())) / (output.shape[1] * output.shape[2])


def _grey(rgb: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of (3, H, W) as (1, 1, H, W) float64."""
    return (rgb.double() * rgb.new_tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(3, 1, 1)).sum(0)[None, None]


def sobel_magnitude(grey: torch.Tensor) -> torch.Tensor:
    """sqrt(gx^2 + gy^2) of (1, 1, H, W) with Sobel kernels scaled by 1/4 (a unit step gives 1), replicate
    padding."""
    k = grey.new_tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 4
    x = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(x, k[None, None]), F.conv2d(x, k.T[None, None])
    return (gx.square() + gy.square()).sqrt()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5 truncated at 3.5 sigma, K1 0.01, K2 0.03,
    population statistics) of two (1, 1, H, W) images, over the positions where the window fits."""
    r = int(3.5 * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-x.square() / (2 * sigma ** 2))
    g = g / g.sum()

    def blur(t):
        return F.conv2d(F.conv2d(t, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    a, b = a.double(), b.double()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def edge_ssim(content: torch.Tensor, output: torch.Tensor) -> float:
    return ssim(sobel_magnitude(_grey(content)), sobel_magnitude(_grey(output)))


def score(content: torch.Tensor, style: torch.Tensor, output: torch.Tensor, masks: MaskPair | None = None,
          vgg=None) -> dict[str, float]:
    """All four measures of ``output``: {"colour", "gram", "residual", "edge_ssim"}."""
    if tuple(output.shape) != tuple(content.shape):
        raise ValueError(f"output must have the content's shape {tuple(content.shape)}, got {tuple(output.shape)}")
    return {"colour": colour_style_distance(output, style, masks),
            "gram": gram_style_distance(output, style, masks, vgg),
            "residual": photoreal_residual(content, output),
            "edge_ssim": edge_ssim(content, output)}


def mask_agreement(auto_c, auto_s, ref_c, ref_s) -> dict:
    """How a label pair agrees with a reference pair (e.g. hand-painted masks), content and style pixels
    together (the labels are shared); reference pixels with no label (-1) are ignored.

    * "iou": mean IoU after the best one-to-one matching of labels (scipy linear_sum_assignment), over
      max(K_auto, K_ref) labels: an unmatched label of either side counts 0, so over- and
      under-segmenting both cost. "matched": the matched IoUs, largest first.
    * "purity": the fraction of pixels inside their auto label's majority reference label (majority over
      both photos): 1 when every auto label lies within one reference label, however many there are.
    * "consistent": the fraction of pixels whose auto label has the same majority reference label in the
      content as in the style, i.e. labels that correspond to the same thing in both photos.
    """
    from scipy.optimize import linear_sum_assignment

    valid_c, valid_s = ref_c >= 0, ref_s >= 0
    a = torch.cat([auto_c[valid_c], auto_s[valid_s]])
    h = torch.cat([ref_c[valid_c], ref_s[valid_s]])
    ai, hi = torch.unique(a[a >= 0]).tolist(), torch.unique(h).tolist()   # auto -1 matches nothing
    iou = np.array([[float(((a == x) & (h == y)).sum()) / float(((a == x) | (h == y)).sum()) for y in hi]
                    for x in ai]).reshape(len(ai), len(hi))
    r, c = linear_sum_assignment(-iou)
    matched = sorted((float(iou[i, j]) for i, j in zip(r, c)), reverse=True)
    inside = same = 0
    for x in ai:
        inside += int((h[a == x] == h[a == x].mode().values).sum())
        in_c, in_s = ref_c[valid_c & (auto_c == x)], ref_s[valid_s & (auto_s == x)]
        if len(in_c) and len(in_s) and int(in_c.mode().values) == int(in_s.mode().values):
            same += int((a == x).sum())
    n = max(len(a), 1)
    return {"iou": sum(matched) / max(len(ai), len(hi), 1), "matched": matched, "purity": inside / n,
            "consistent": same / n}
