"""Closed-form colour transport: the content's colours carried onto the style's, label by label.

    out = transport_colours(content, style, masks)        # (3, H, W) RGB 0..1, not yet photoreal

Per label, iterative sliced optimal transport (Pitié, Kokaram, Dahyot 2005): ``rotations`` times, draw
a random orthonormal basis R, project both colour clouds on its three axes, and move every content
colour along each axis to the style's value at the same quantile (the 1-D optimal transport map):

    x <- x + R (f(R^T x) - R^T x),     f_a = Q_style,a o F_content,a   (per axis a, piecewise linear)

Each label's map is thus a composition of piecewise-linear 1-D maps on ``quantiles`` knots, fitted on
``samples`` pixels of each photo (seeded; all labels as one batch), tabulated on a 33^3 grid of the RGB
cube (a 3-D lookup table, as colour grading uses) and applied trilinearly to every pixel of the label.
Pixels in no label, and labels too small in either photo (under ``min_pixels``) or absent from the
style, use the map fitted on the whole photos.

The maps are functions of colour alone, so the result can break the content's local structure (noise
amplified, banding, a seam where two labels meet in a smooth region). ``closed_form`` therefore follows
it with the engine's matting-Laplacian smoothing (engine.highres.upscale_result, the path that brings
every result to full resolution), which pulls it towards locally affine recolourings of the content.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .engine.highres import upscale_result
from .masks import MaskPair

__all__ = ["SlicedMap", "fit_sliced_map", "apply_lut", "fit_label_maps", "apply_label_luts", "transport_colours",
           "closed_form"]


class SlicedMap:
    """K fitted iterative sliced transports of colours, one per label: ``rotations`` (T, 3, 3), shared by
    the K maps, and per step, map and axis the knots ``xs`` (T, K, 3, Q) -> ``ys`` of a monotone
    piecewise-linear map (constant beyond the end knots)."""

    def __init__(self, rotations: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        self.rotations, self.xs, self.ys = rotations, xs, ys

    def __call__(self, colours: torch.Tensor) -> torch.Tensor:
        """Apply map k to colours[k]: (K, N, 3) in, (K, N, 3) float64 out."""
        x = colours.to(torch.float64)
        k, n = x.shape[:2]
        for r, xs, ys in zip(self.rotations, self.xs, self.ys):
            p = x @ r                                                   # (K, N, 3) coordinates on the axes
            moved = _interp(p.transpose(1, 2).reshape(k * 3, n), xs.reshape(k * 3, -1), ys.reshape(k * 3, -1))
            x = x + (moved.reshape(k, 3, n).transpose(1, 2) - p) @ r.T
        return x

    def lut(self, size: int = 33) -> torch.Tensor:
        """The maps tabulated on a size^3 grid of the RGB cube: (K, 3, B, G, R) float32, for apply_lut."""
        axis = torch.linspace(0, 1, size, dtype=torch.float64)
        b, g, r = torch.meshgrid(axis, axis, axis, indexing="ij")
        grid = torch.stack([r, g, b], -1).reshape(1, -1, 3).expand(self.xs.shape[1], -1, -1)
        return self(grid).transpose(1, 2).reshape(-1, 3, size, size, size).to(torch.float32)


def apply_lut(lut: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Colours (N, 3) in 0..1 through one (3, B, G, R) table of the RGB cube, trilinearly: (N, 3) float32.
    The cost per pixel does not depend on how the table was made (30 sliced steps cost one lookup).
    A (C, B, G, R) table of any C gives (N, C)."""
    grid = (colours.to(torch.float32) * 2 - 1).reshape(1, 1, 1, -1, 3)   # grid_sample's (x, y, z) = (R, G, B)
    out = F.grid_sample(lut[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(lut.shape[0], -1).T


def _interp(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, bins: int = 1024) -> torch.Tensor:
    """Row-wise piecewise-linear interpolation: x (A, N), knots xs, ys (A, Q) with xs non-decreasing;
    constant beyond the end knots. Repeated knots (a clump of equal colours) are a step, not a division
    by zero. The map is first tabulated on ``bins`` uniform points per row, so the N lookups are index
    arithmetic rather than a binary search (5x faster at N = 10^5)."""
    lo, span = xs[:, :1], (xs[:, -1:] - xs[:, :1]).clamp_min(1e-12)
    grid = lo + span * torch.linspace(0, 1, bins, dtype=xs.dtype, device=xs.device)
    table = _interp_exact(grid, xs, ys)
    u = ((x - lo) / span * (bins - 1)).clamp(0, bins - 1)
    i = u.floor().long().clamp(max=bins - 2)
    t = u - i
    return table.gather(1, i) * (1 - t) + table.gather(1, i + 1) * t


def _interp_exact(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """_interp by binary search of every x among the knots."""
    q = xs.shape[1]
    hi = torch.searchsorted(xs.contiguous(), x.contiguous(), right=True).clamp(1, q - 1)
    lo = hi - 1
    x0, x1 = xs.gather(1, lo), xs.gather(1, hi)
    y0, y1 = ys.gather(1, lo), ys.gather(1, hi)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return y0 + t * (y1 - y0)


def _merge_ties(kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Where source knots repeat (a clump of equal colours: a flat white background holds many of the
    quantiles), give them the mean of their target knots. A map cannot spread a clump over the target
    values of the quantiles it covers, and their mean is the best single value (the barycentric
    projection); the repeated knot's last value would instead send the clump to one end of its range."""
    new = torch.ones_like(kx, dtype=torch.bool)
    new[:, 1:] = kx[:, 1:] != kx[:, :-1]
    group = new.long().cumsum(1) - 1
    sums = torch.zeros_like(ky).scatter_add_(1, group, ky)
    counts = torch.zeros_like(ky).scatter_add_(1, group, torch.ones_like(ky))
    return (sums / counts.clamp_min(1)).gather(1, group)


def _random_rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    """n random orthonormal 3x3 bases (QR of Gaussian matrices, signs fixed: Haar distributed)."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)


def fit_sliced_map(source: torch.Tensor, target: torch.Tensor, rotations: int = 30, quantiles: int = 256,
                   generator: torch.Generator | None = None) -> SlicedMap:
    """Iterative sliced optimal transport of point clouds ``source`` (K, N, 3) onto ``target`` (K, M, 3),
    K maps at once ((N, 3) and (M, 3): one map, K = 1)."""
    if source.dim() == 2 and target.dim() == 2:
        source, target = source[None], target[None]
    if source.dim() != 3 or source.shape[2] != 3 or target.dim() != 3 or target.shape[2] != 3 \
            or source.shape[0] != target.shape[0]:
        raise ValueError(f"source and target must be (N, 3) or (K, N, 3) colours, got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    if source.shape[1] == 0 or target.shape[1] == 0:
        raise ValueError("source and target must each hold at least one colour")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x, y = source.to(torch.float64), target.to(torch.float64)
    k = x.shape[0]

    def knots(points):            # (K, n, 3) -> (K * 3, Q): each axis' quantiles at Q evenly spaced levels
        srt = points.transpose(1, 2).reshape(k * 3, -1).sort(dim=1).values
        pos = torch.linspace(0, srt.shape[1] - 1, quantiles, dtype=torch.float64)
        i = pos.floor().long().clamp(max=srt.shape[1] - 1)
        j = (i + 1).clamp(max=srt.shape[1] - 1)
        return torch.lerp(srt[:, i], srt[:, j], pos - i)

    rots = _random_rotations(rotations, gen)
    xs, ys = [], []
    for r in rots:
        p = x @ r                                                       # (K, N, 3) coordinates on the axes
        kx, ky = knots(p), knots(y @ r)
        ky = _merge_ties(kx, ky)
        moved = _interp(p.transpose(1, 2).reshape(k * 3, -1), kx, ky)
        x = x + (moved.reshape(k, 3, -1).transpose(1, 2) - p) @ r.T
        xs.append(kx.reshape(k, 3, -1))
        ys.append(ky.reshape(k, 3, -1))
    return SlicedMap(rots, torch.stack(xs), torch.stack(ys))


def _sample(pixels: torch.Tensor, weights: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n of the (N, 3) ``pixels`` whose weight is above one half, drawn with replacement (so that every
    label has the same count and all labels fit as one batch); None when there are none."""
    idx = torch.nonzero(weights > 0.5).squeeze(1)
    if idx.numel() == 0:
        return None
    return pixels[idx[torch.randint(idx.numel(), (n,), generator=generator)]]


def fit_label_maps(cp: torch.Tensor, sp: torch.Tensor, cm: torch.Tensor, sm: torch.Tensor, rotations: int = 30,
                   quantiles: int = 256, samples: int = 16384, min_pixels: int = 64,
                   seed: int = 0) -> tuple[SlicedMap, list[int]]:
    """The maps of transport_colours from colours alone: content colours ``cp`` (N, 3) with label weights
    ``cm`` (K, N), style colours ``sp`` (M, 3) with ``sm`` (K, M) (K = 0: no labels). The content's pixels
    may come from several images (dpst_ext.video pools frames). Returns (maps, use): map 0 is the whole
    photos'; label k uses map use[k + 1] (0 when the label is too small or absent in either photo);
    use[0] = 0 is "in no label"."""
    gen = torch.Generator().manual_seed(int(seed))
    pairs = [(torch.ones(len(cp), dtype=torch.float64), torch.ones(len(sp), dtype=torch.float64))]
    use = [0]
    for cw, sw in zip(cm, sm):
        if int((cw > 0.5).sum()) >= min_pixels and int((sw > 0.5).sum()) >= min_pixels:
            pairs.append((cw, sw))
            use.append(len(pairs) - 1)
        else:
            use.append(0)
    # Each map's samples come from a generator of its own, so a label's map depends only on its pixels.
    gens = [torch.Generator().manual_seed(int(seed) * 7919 + k) for k in range(len(pairs))]
    maps = fit_sliced_map(torch.stack([_sample(cp, cw, samples, g) for (cw, _), g in zip(pairs, gens)]),
                          torch.stack([_sample(sp, sw, samples, g) for (_, sw), g in zip(pairs, gens)]),
                          rotations, quantiles, gen)
    return maps, use


def apply_label_luts(luts, cp: torch.Tensor, cm: torch.Tensor, min_weight: float = 0.0) -> torch.Tensor:
    """Colours ``cp`` (N, 3) through one map per row of the weights [1 - sum(cm); cm] ((K + 1, N): "in no
    label", then the K labels), blended by those weights: (N, 3) float64. ``luts[m]`` is a (3, B, G, R)
    table (apply_lut), or a callable (n, 3) -> (n, 3) applying map m exactly. A map is applied only to
    the pixels whose weight for it is above ``min_weight``."""
    weights = torch.cat([(1 - cm.sum(0)).clamp_min(0)[None], cm])
    out = torch.zeros_like(cp, dtype=torch.float64)
    for m, wk in enumerate(weights):
        idx = torch.nonzero(wk > min_weight).squeeze(1)
        if idx.numel():
            px = cp[idx]
            lut = luts[m]
            mapped = (lut(px) if callable(lut) else apply_lut(lut, px)).to(torch.float64)
            out.index_add_(0, idx, mapped * wk[idx, None].to(torch.float64))
    return out / weights.sum(0).clamp_min(1e-12)[:, None].to(torch.float64)


def transport_colours(content: torch.Tensor, style: torch.Tensor, masks: MaskPair | None = None,
                      rotations: int = 30, quantiles: int = 256, samples: int = 16384, min_pixels: int = 64,
                      lut_size: int = 33, seed: int = 0) -> torch.Tensor:
    """The content (3, H, W) recoloured per label by iterative sliced optimal transport onto the style's
    colours (module docstring); ``masks`` at the two images' sizes (None: the whole photos' map). The maps are
    tabulated on a ``lut_size``^3 grid of the RGB cube and applied trilinearly (lut_size=None: exactly,
    at ~100x the cost per pixel). RGB 0..1 out, clamped, the content's dtype."""
    for name, img in (("content", content), ("style", style)):
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"{name} must be an RGB image (3, H, W), got shape {tuple(img.shape)}")
    cp = content.reshape(3, -1).T.to(torch.float64)                     # (N, 3)
    sp = style.reshape(3, -1).T.to(torch.float64)
    if masks is None:              # no labels: every pixel takes the whole photos' map
        cm, sm = cp.new_zeros(0, len(cp)), sp.new_zeros(0, len(sp))
    else:
        cm = masks.content.reshape(masks.content.shape[0], -1).to(torch.float64)
        sm = masks.style.reshape(masks.style.shape[0], -1).to(torch.float64)
    maps, use = fit_label_maps(cp, sp, cm, sm, rotations, quantiles, samples, min_pixels, seed)
    if lut_size:
        tables = maps.lut(lut_size)
        luts = [tables[m] for m in use]
    else:
        luts = [(lambda px, m=m: SlicedMap(maps.rotations, maps.xs[:, m:m + 1], maps.ys[:, m:m + 1])(px[None])[0])
                for m in use]
    out = apply_label_luts(luts, cp, cm)
    return out.T.reshape(content.shape).clamp(0, 1).to(content.dtype)


def closed_form(content: torch.Tensor, style: torch.Tensor, masks: MaskPair | None = None, seed: int = 0,
                smoothing: str = "fast", **transport_options) -> torch.Tensor:
    """The fast method at the content's size: transport_colours, then the matting-Laplacian smoothing
    (smoothing "fast": FastPhotoStyle's (I + (w/9) M) r = y, w = 9999, to a relative residual of 1e-3;
    "exact": 1e-6; "off": none). (3, H, W) float32 RGB 0..1."""
    y = transport_colours(content, style, masks, seed=seed, **transport_options)
    if smoothing == "off":
        return y.to(torch.float32)
    return upscale_result(content, content, y, smoothing=smoothing)
