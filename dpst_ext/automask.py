"""Automatic semantic masks: co-segmentation of the content and style photos into shared labels.

    >>> cl, sl = auto_masks("content.png", "style.png")        # (Hc, Wc), (Hs, Ws) int64 palette indices
    >>> save_masks(cl, sl, "c_mask.png", "s_mask.png")          # 9-colour PNGs a user can repaint
    >>> cl, sl = segmenter_masks(c, s, my_net, mapping={21: "water", 26: "water", 2: "sky"})

How (``auto_masks``):

1. Features on a coarse grid (1/4 of a working size, ``work_size`` long side): VGG-19 relu3_1 and
   relu4_1 (upsampled to relu3_1's grid), the Lab colour averaged over each grid cell, and the
   (x, y) position in 0..1. Each block is centred over both images and scaled to unit mean squared
   norm, then weighted (``weights``): the distance mixes mid-level texture, semantics, colour and a
   weak layout prior. Lab is centred per image (``colour_per_image``) because the style photo
   usually differs from the content in global colour by design; otherwise clusters split by image.
2. Joint k-means (k-means++ seeding from a seeded torch.Generator, best of ``restarts``): one set of
   centroids for the points of both images, so a label means the same thing in both.
3. Labels covering under ``min_area`` of either image cannot carry a style (or have no target): the
   smallest is merged into the cluster of the nearest centroid, repeatedly; every label left exists
   in both images.
4. K (``k=None``): the K in ``k_range`` whose clustering (after merging) has the highest mean
   silhouette on a fixed subsample of grid points, s = (b - a) / max(a, b) with a the mean distance
   to the own cluster, b to the nearest other cluster. It rewards compact, separated clusters and,
   unlike the k-means cost, does not fall monotonically with K. Near-ties go to the smaller K: the
   smallest K within SILHOUETTE_TOLERANCE of the best score is taken.
5. Edge-aware boundaries: soft label maps on the grid (one-hot, upsampled to the working image) are
   filtered by a colour guided filter (He et al. 2010) whose local affine coefficients are fitted at
   working size and applied to the full-resolution photo (dpst_ext.upsample), then argmax; a
   majority filter finally removes lines under 3 px, which the mask parser would drop. A label the
   refinement erased from one image is dropped from both, so the label sets still match.

Labels are palette indices (dpst_ext.masks.NAMES) ordered by mean height in the content: the
top-most label (often the sky) is blue, the next green, and so on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .image_io import load_image, resize_long_side, save_image
from .masks import NAMES, PALETTE, resize_labels
from .upsample import apply_coefficients, box_mean, guided_coefficients

__all__ = ["auto_masks", "segmenter_masks", "save_masks", "labels_to_image", "rgb_to_lab", "joint_kmeans",
           "AUTO_LAYERS", "K_RANGE"]

AUTO_LAYERS = ("relu3_1", "relu4_1")
K_RANGE = (2, 6)
# Weights of the feature blocks in the squared distance (each block normalised to unit mean squared norm).
# Mean IoU with the hand masks of the 15 example pairs (benchmarks/automask.py): position 0.25 -> 0.457,
# 0.5 -> 0.477; Lab 2 -> 0.447; without relu3_1 -> 0.453 (before the near-tie rule for K).
DEFAULT_WEIGHTS = {"relu3_1": 1.0, "relu4_1": 1.0, "lab": 1.0, "position": 0.5}
# K: the smallest K whose silhouette is within this of the best. Silhouettes of neighbouring K often
# differ by less than the subsample's noise (~0.01); the extra label then mostly splits a region along
# a gradient or its border band (measured on the synthetic two-region scene of tests/test_automask.py).
SILHOUETTE_TOLERANCE = 0.02
# Colour of "no label" in a written mask: at least 0.56 from every palette colour, so the parser
# (threshold 0.3) reads it back as unlabelled.
UNLABELLED_RGB = (0.5, 0.25, 0.0)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIE Lab (D65) of sRGB values in 0..1, channels first: (3, ...) -> (3, ...), L in 0..100."""
    rgb = rgb.to(torch.float32).clamp(0, 1)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.412453, 0.357580, 0.180423],
                      [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]])
    white = torch.tensor([0.950456, 1.0, 1.088754])
    xyz = torch.einsum("ij,j...->i...", m, lin) / white.view(3, *([1] * (rgb.dim() - 1)))
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


# --------------------------------------------------------------------------------------------------
# Features and clustering


def _grid_features(img: torch.Tensor, vgg, work_size: int) -> tuple[dict, tuple[int, int], torch.Tensor]:
    """Per-block features (N, C) on the relu3_1 grid of ``img`` resized to ``work_size``."""
    x = resize_long_side(img, work_size)
    with torch.no_grad():
        feats = vgg(x[None])
    f3 = feats["relu3_1"]
    gh, gw = f3.shape[-2:]
    f4 = F.interpolate(feats["relu4_1"], size=(gh, gw), mode="bilinear", align_corners=False)
    lab = F.interpolate(rgb_to_lab(x)[None], size=(gh, gw), mode="bilinear", align_corners=False, antialias=True)
    yy, xx = torch.meshgrid((torch.arange(gh) + 0.5) / gh, (torch.arange(gw) + 0.5) / gw, indexing="ij")
    flat = lambda t: t[0].flatten(1).T.contiguous()  # noqa: E731  (1, C, h, w) -> (h*w, C)
    blocks = {"relu3_1": flat(f3), "relu4_1": flat(f4), "lab": flat(lab),
              "position": torch.stack([xx, yy]).flatten(1).T.contiguous()}
    return blocks, (gh, gw), x


def _joint_points(bc: dict, bs: dict, weights: dict, colour_per_image: bool, pca_dims: int) -> torch.Tensor:
    """Content and style points stacked (Nc + Ns, D): each block centred, reduced to its top ``pca_dims``
    principal components (VGG blocks: the clustering then costs O(N K pca_dims), not O(N K 768)), scaled to
    unit mean squared norm and multiplied by sqrt(weight)."""
    parts = []
    for name, w in weights.items():
        if w <= 0:
            continue
        a, b = bc[name].double(), bs[name].double()
        if name == "lab" and colour_per_image:
            a, b = a - a.mean(0), b - b.mean(0)
        x = torch.cat([a, b])
        x = x - x.mean(0)
        if x.shape[1] > pca_dims:
            _, vecs = torch.linalg.eigh(x.T @ x)             # ascending eigenvalues
            x = x @ vecs[:, -pca_dims:]
        x = x / x.pow(2).sum(1).mean().sqrt().clamp(min=1e-12)
        parts.append(x * w ** 0.5)
    return torch.cat(parts, dim=1)


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances (N, K) by |x|^2 - 2 x.c + |c|^2 (one matmul)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)).clamp(min=0)


def _kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    centres = [x[int(torch.randint(n, (1,), generator=gen))]]
    d2 = (x - centres[0]).pow(2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: repeat a centre (its cluster ends up empty)
            centres.append(centres[-1])
            continue
        i = int(torch.multinomial(d2 / total, 1, generator=gen))
        centres.append(x[i])
        d2 = torch.minimum(d2, (x - x[i]).pow(2).sum(1))
    return torch.stack(centres)


def joint_kmeans(x: torch.Tensor, k: int, seed: int = 0, restarts: int = 3, iters: int = 60):
    """k-means++ then Lloyd iterations on points (N, D); best of ``restarts`` by inertia.

    Deterministic for a given seed (a private torch.Generator; CPU float64). Returns (labels (N,),
    centres (k, D), inertia)."""
    x = x.double()
    gen = torch.Generator().manual_seed(int(seed))
    best = None
    for _ in range(restarts):
        c = _kmeans_pp(x, k, gen)
        labels = None
        for _ in range(iters):
            new = _sq_dist(x, c).argmin(1)
            if labels is not None and torch.equal(new, labels):
                break
            labels = new
            onehot = F.one_hot(labels, k).to(x.dtype)        # (N, k)
            counts = onehot.sum(0)
            # An emptied cluster keeps its centre (rare; k-means++ starts every centre on a point).
            c = torch.where(counts[:, None] > 0, (onehot.T @ x) / counts.clamp(min=1)[:, None], c)
        inertia = float(_sq_dist(x, c).gather(1, labels[:, None]).sum())
        if best is None or inertia < best[2]:
            best = (labels, c, inertia)
    return best


def _merge_small(labels: torch.Tensor, x: torch.Tensor, n_content: int, min_area: float) -> torch.Tensor:
    """Merge the smallest label under ``min_area`` of either image into the nearest centroid's, repeatedly.
    Returns labels renumbered 0..K'-1."""
    labels = labels.clone()
    while True:
        ids = torch.unique(labels)
        if len(ids) <= 1:
            break
        frac_c = torch.stack([(labels[:n_content] == i).double().mean() for i in ids])
        frac_s = torch.stack([(labels[n_content:] == i).double().mean() for i in ids])
        frac = torch.minimum(frac_c, frac_s)
        j = int(frac.argmin())
        if frac[j] >= min_area:
            break
        centres = torch.stack([x[labels == i].mean(0) for i in ids])
        d = (centres - centres[j]).pow(2).sum(1)
        d[j] = float("inf")
        labels[labels == ids[j]] = ids[int(d.argmin())]
    return torch.unique(labels, return_inverse=True)[1]


def _silhouette(x: torch.Tensor, labels: torch.Tensor, sample: torch.Tensor) -> float:
    """Mean silhouette of the points ``sample`` (indices) against the same subsample; 0 for one cluster."""
    xs, ls = x[sample], labels[sample]
    ids = torch.unique(ls)
    if len(ids) < 2:
        return 0.0
    d = torch.cdist(xs, xs)
    onehot = (ls[:, None] == ids[None]).double()                      # (n, K)
    counts = onehot.sum(0)
    mean_d = d @ onehot                                               # (n, K) sums of distances
    own = onehot.argmax(1)
    own_n = counts[own]
    a = mean_d.gather(1, own[:, None])[:, 0] / (own_n - 1).clamp(min=1)
    other = (mean_d / counts).masked_fill(onehot.bool(), float("inf"))
    b = other.min(1).values
    s = (b - a) / torch.maximum(a, b).clamp(min=1e-12)
    s[own_n <= 1] = 0.0  # a singleton's silhouette is 0 by convention
    return float(s.mean())


# --------------------------------------------------------------------------------------------------
# Edge-aware refinement


def _argmax0(t: torch.Tensor) -> torch.Tensor:
    """argmax over the first dim of (K, H, W) (a loop over K: several times faster than a strided argmax)."""
    best, idx = t[0].clone(), torch.zeros(t.shape[1:], dtype=torch.int64)
    for k in range(1, t.shape[0]):
        better = t[k] > best
        best = torch.where(better, t[k], best)
        idx[better] = k
    return idx


def _majority_clean(labels: torch.Tensor, k: int, window: int = 5, rounds: int = 64) -> torch.Tensor:
    """Labels the mask parser reads back unchanged: no labelled pixel whose label holds under half of its
    ``window``^2 neighbourhood (the parser unlabels those, taking them for anti-aliasing lines).

    Such pixels take the neighbourhood's majority label, repeatedly (a thin line erodes by a pixel or
    two per round: 26 rounds on pair 5 of the examples); if some still oscillate after ``rounds``, they
    are unlabelled (-1), repeatedly, which must end as labels only ever become -1."""
    def support_of(lab):
        # The parser's own arithmetic (float32 average pooling, window clipped at the border), so that
        # "under half" is decided identically, ties at exactly 0.5 included.
        onehot = torch.stack([lab == i for i in range(k)]).to(torch.float32)
        support = box_mean(onehot, window // 2)
        own = support.gather(0, lab.clamp(min=0)[None])[0]
        return support, (lab >= 0) & (own < 0.5)

    for _ in range(rounds):
        support, bad = support_of(labels)
        if not bool(bad.any()):
            return labels
        labels = torch.where(bad, _argmax0(support), labels)
    while True:
        _, bad = support_of(labels)
        if not bool(bad.any()):
            return labels
        labels = torch.where(bad, -1, labels)


def _soft_full(full: torch.Tensor, work: torch.Tensor, grid_labels: torch.Tensor, k: int, radius: int, eps: float):
    """Full-resolution soft label maps (K, H, W) from grid labels (gh, gw): one-hot, upsampled, guided filter."""
    onehot = F.one_hot(grid_labels, k).permute(2, 0, 1)[None].to(torch.float32)
    soft = F.interpolate(onehot, size=tuple(work.shape[1:]), mode="bilinear", align_corners=False)[0]
    if radius > 0:
        coef = guided_coefficients(work, soft, radius, eps)
        return apply_coefficients(coef, full.to(torch.float32))
    return F.interpolate(soft[None], size=tuple(full.shape[1:]), mode="bilinear", align_corners=False)[0]


def _shared_argmax(softs: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Argmax of each image's soft maps, cleaned; a label that vanishes from either image (refinement can
    erase a label that was small on the grid) is dropped from both and the argmax repeated, so the label
    sets match. Labels are renumbered 0..K'-1 in their original order."""
    alive = list(range(k))
    while True:
        labels = []
        for soft in softs:
            masked = soft.clone()
            dead = [i for i in range(k) if i not in alive]
            if dead:
                masked[dead] = -float("inf")
            labels.append(_majority_clean(_argmax0(masked), k))
        present = sorted((set(labels[0].unique().tolist()) & set(labels[1].unique().tolist())) - {-1})
        if present == alive:
            break
        alive = present or [0]
        if len(alive) == 1:
            return [torch.zeros_like(lab) for lab in labels]
    lut = torch.zeros(k, dtype=torch.int64)
    lut[torch.tensor(alive)] = torch.arange(len(alive))
    return [torch.where(lab >= 0, lut[lab.clamp(min=0)], -1) for lab in labels]


# --------------------------------------------------------------------------------------------------
# Public API


def _check_k(k, k_range):
    lo, hi = k_range
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= len(NAMES)):
        raise ValueError(f"k_range must be (lo, hi) integers with 1 <= lo <= hi <= {len(NAMES)}, got {k_range}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(NAMES)):
        raise ValueError(f"k must be None (automatic) or an integer in 1..{len(NAMES)} (the palette's colours), "
                         f"got {k!r}")


def auto_masks(content, style, k: int | None = None, seed: int = 0, vgg=None, *, k_range=K_RANGE,
               work_size: int = 256, min_area: float = 0.03, weights: dict | None = None,
               colour_per_image: bool = True, radius: int = 8, eps: float = 1e-2, restarts: int = 3,
               pca_dims: int = 16, return_info: bool = False):
    """Co-segment ``content`` and ``style`` into shared labels (module docstring for the method).

    Images: paths, PIL images, numpy arrays or (3, H, W) tensors in 0..1. ``k``: number of labels (None:
    chosen in ``k_range`` by silhouette). ``vgg``: a VGG19Features whose layers include relu3_1 and
    relu4_1 (None: built from the bundled weights). ``work_size``: long side at which features are
    computed; ``min_area``: smallest area fraction a label may cover in either image; ``radius``/``eps``:
    guided filter at working size (radius 0: bilinear soft maps, no edge awareness).
    Returns (content_labels (Hc, Wc), style_labels (Hs, Ws)), int64 palette indices 0..K-1 at each
    photo's own size, the same K labels present in both (fewer than ``k`` if merged for ``min_area``);
    rarely, a few pixels of an oscillating thin line are -1 (no label; see _majority_clean).
    With ``return_info``, a third element: {"k": K, "scores": {K tried: silhouette}}.
    """
    _check_k(k, k_range)
    if not 0 <= min_area < 0.5:
        raise ValueError(f"min_area must be a fraction in [0, 0.5), got {min_area}")
    if work_size < 32:
        raise ValueError(f"work_size must be at least 32 px (features are on a 1/4 grid), got {work_size}")
    if radius < 0 or eps <= 0:
        raise ValueError(f"radius must be >= 0 and eps > 0, got radius={radius}, eps={eps}")
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"weights keys must be among {sorted(DEFAULT_WEIGHTS)}, got {sorted(unknown)}")
    c_full = load_image(content, "content")
    s_full = load_image(style, "style")
    if vgg is None:
        from .vgg import VGG19Features
        vgg = VGG19Features(AUTO_LAYERS)
    elif not set(AUTO_LAYERS) <= set(getattr(vgg, "layers", ())):
        raise ValueError(f"vgg must be a VGG19Features computing {AUTO_LAYERS}, got layers {getattr(vgg, 'layers', None)}")
    dev = next(vgg.parameters()).device
    bc, gc, wc = _grid_features(c_full.to(dev), vgg, work_size)
    bs, gs, ws = _grid_features(s_full.to(dev), vgg, work_size)
    bc = {n: t.cpu() for n, t in bc.items()}
    bs = {n: t.cpu() for n, t in bs.items()}
    x = _joint_points(bc, bs, weights, colour_per_image, pca_dims)
    nc = gc[0] * gc[1]

    candidates = [k] if k is not None else list(range(k_range[0], k_range[1] + 1))
    gen = torch.Generator().manual_seed(int(seed))
    sample = torch.randperm(x.shape[0], generator=gen)[:2000]
    results, scores = {}, {}
    for kk in candidates:
        if kk == 1:
            labels = torch.zeros(x.shape[0], dtype=torch.int64)
        else:
            labels = joint_kmeans(x, kk, seed=seed, restarts=restarts)[0]
            labels = _merge_small(labels, x, nc, min_area)
        scores[kk] = _silhouette(x, labels, sample)
        results[kk] = labels
    top = max(scores.values())
    labels = results[min(kk for kk in candidates if scores[kk] >= top - SILHOUETTE_TOLERANCE)]
    kk = int(labels.max()) + 1

    # Palette order by mean height in the content grid: top-most label first (blue).
    y = bc["position"][:, 1]
    lc = labels[:nc]
    heights = torch.tensor([float(y[lc == i].mean()) for i in range(kk)])
    rank = torch.empty(kk, dtype=torch.int64)
    rank[heights.argsort()] = torch.arange(kk)
    labels = rank[labels]

    if kk > 1:
        softs = [_soft_full(full, work, lab.reshape(grid), kk, radius, eps)
                 for full, work, grid, lab in ((c_full, wc.cpu(), gc, labels[:nc]), (s_full, ws.cpu(), gs, labels[nc:]))]
        result = tuple(_shared_argmax(softs, kk))
        kk = int(result[0].max()) + 1
    else:
        result = (torch.zeros(c_full.shape[1:], dtype=torch.int64), torch.zeros(s_full.shape[1:], dtype=torch.int64))
    if return_info:
        return (*result, {"k": kk, "scores": scores})
    return result


def segmenter_masks(content, style, segmenter: Callable, mapping: dict | None = None):
    """Label pair from a user segmenter: ``segmenter(image)`` gets a (3, H, W) float tensor in 0..1 and
    must return an integer class map (H, W) (numpy or torch).

    ``mapping`` {class id: group} merges classes into groups (e.g. ADE20K's lake, river and sea into
    "water", as the paper did); a group of None unlabels its classes; classes not in ``mapping`` stay
    their own group. Groups become palette indices in order: mapping's groups first (in order of first
    appearance), then unmapped classes by id; at most 9 groups may occur in the two images.
    Returns (content_labels, style_labels) as ``auto_masks`` does (orphans are left to MaskPair).
    """
    if not callable(segmenter):
        raise TypeError(f"segmenter must be a callable image -> (H, W) label map, got {type(segmenter).__name__}")
    if mapping is not None and not isinstance(mapping, dict):
        raise TypeError(f"mapping must be a dict {{class id: group}} or None, got {type(mapping).__name__}")
    mapping = {int(c): g for c, g in (mapping or {}).items()}
    maps = []
    for name, src in (("content", content), ("style", style)):
        img = load_image(src, name)
        m = segmenter(img)
        if isinstance(m, np.ndarray):
            m = torch.from_numpy(np.ascontiguousarray(m))
        if not isinstance(m, torch.Tensor):
            raise TypeError(f"segmenter must return a numpy array or torch tensor for the {name}, "
                            f"got {type(m).__name__}")
        if m.dtype.is_floating_point or m.dtype == torch.bool or m.dtype.is_complex:
            raise TypeError(f"segmenter must return an integer label map for the {name}, got dtype {m.dtype}")
        if tuple(m.shape) != tuple(img.shape[1:]):
            raise ValueError(f"segmenter output for the {name} must have the image's shape (H, W) = "
                             f"{tuple(img.shape[1:])}, got {tuple(m.shape)}")
        maps.append(m.to(torch.int64).cpu())
    present = sorted(set(torch.unique(maps[0]).tolist()) | set(torch.unique(maps[1]).tolist()))
    groups = list(dict.fromkeys(g for g in mapping.values() if g is not None))
    used = [g for g in groups if any(mapping.get(c) == g for c in present)]
    unmapped = [c for c in present if c not in mapping]
    order = used + [("class", c) for c in unmapped]
    if len(order) > len(NAMES):
        raise ValueError(f"the segmenter's classes form {len(order)} groups in these images but masks hold at most "
                         f"{len(NAMES)}: pass a mapping that merges classes into fewer groups")
    index = {g: i for i, g in enumerate(order)}
    lut = {c: (-1 if mapping[c] is None else index[mapping[c]]) if c in mapping else index[("class", c)]
           for c in present}
    out = []
    for m in maps:
        labels = torch.full_like(m, -1)
        for c, i in lut.items():
            labels[m == c] = i
        out.append(labels)
    return tuple(out)


def labels_to_image(labels: torch.Tensor) -> Image.Image:
    """The 9-colour mask picture of a label map (palette indices; -1 painted in an off-palette colour)."""
    labels = torch.as_tensor(labels)
    if labels.dim() != 2 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be an integer (H, W) map, got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= len(NAMES)):
        raise ValueError(f"labels must be palette indices in -1..{len(NAMES) - 1}, got "
                         f"{int(labels.min())}..{int(labels.max())}")
    colours = np.array([UNLABELLED_RGB] + list(PALETTE.values()), dtype=np.float64)
    rgb = np.round(colours[(labels + 1).cpu().numpy()] * 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def save_masks(content_labels, style_labels, content_path, style_path) -> tuple[Path, Path]:
    """Write the two label maps as 9-colour PNG masks (atomically), readable by ``parse_mask``."""
    return (save_image(labels_to_image(content_labels), content_path),
            save_image(labels_to_image(style_labels), style_path))
