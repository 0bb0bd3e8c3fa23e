"""Automatic semantic masks: co-segmentation of the content and style photos into shared labels.

    >>> cl, sl = auto_masks("content.png", "style.png")        # (Hc, Wc), (Hs, Ws) int64 palette indices
    >>> save_masks(cl, sl, "c_mask.png", "s_mask.png")          # dpst_ext.masks: 9-colour PNGs to repaint

A user's own segmentation model gives the label pair instead through dpst_ext.masks.segmenter_masks; how
well a label pair agrees with hand masks is dpst_ext.metrics.mask_agreement.

How (``auto_masks``):

1. Features on a coarse grid (1/4 of a working size, ``work_size`` long side): VGG-19 relu3_1, relu4_1
   and relu5_1 (upsampled to relu3_1's grid), the (x, y) position in 0..1, and the Lab colour averaged
   over each grid cell. Each block is centred, reduced to 16 principal components and scaled to unit
   mean squared norm, then weighted (``weights``, DEFAULT_WEIGHTS).
2. Joint k-means over the points of both photos (``joint_kmeans``) in which a label's centroid is
   shared by the two photos in the VGG and position blocks (what a region is and where it lies) but
   has one Lab colour per photo: colour delimits regions inside each photo, yet cannot say which region
   of the style corresponds to which region of the content, since restyling a photo changes its
   colours by design (pair 1 of the examples: a sunlit town against a black silhouetted skyline).
   k-means++ seeds and the first assignment use the shared blocks only; best of ``restarts`` by
   inertia, from a seeded torch.Generator.
   Which region of the style goes with which of the content is thus decided by VGG features and by
   layout (position). Where the two photos show the same things strongly (the median similarity of
   each cell's best feature matches, ``_correspondence``), the matches take over from the layout: the
   position block holds each cell's place in both photos' frames, in the other photo's frame where its
   matches lie. A photo and its mirror image, or a scene with its regions swapped, are then paired by
   content. On the example pairs the matches' similarity is low and the layout alone decides (MATCH_TRUST).
3. How many labels (``k=None``): as many as both photos can support. K_MAX (8) labels are clustered;
   the smallest label under ``min_area`` of either photo is merged into the nearest centroid's,
   repeatedly (it could not carry a style, or would have no target), so every label left exists in
   both photos; then the two labels closest in mean colour are merged while they differ by less than
   ``merge_delta`` (20 Lab units) in the content AND in the style, as they would carry much the same
   style. If the style's labels are then all that alike, the style has no distinct regions to give:
   one label, with an AutoMaskWarning. One label too, with a warning, when the labels agree with the
   cells' best feature matches across the photos no better than chance (``_match_agreement``, a kappa,
   under ``min_agreement``): such labels pair regions by layout alone, which did worse than one label on
   most example pairs where it happened (docs/masks.md). A label straddling two regions of different
   colour is what hurts the transfer most, so K starts high; but a label splitting a smooth region is
   not free either: its boundary is a seam the photorealism term has to smooth over. On the example pairs
   (docs/experiments/2026-11-automatic-masks.md) a colour proxy of the transfer rose with K; the transfer
   itself gave the same style distance after merging at 20 as at 10, with fewer labels and a lower
   photorealism residual; clustering only 4 labels did much worse; the silhouette criterion of the first
   version (K in 2..6) recovered far less.
4. Edge-aware boundaries: soft label maps on the grid (one-hot, upsampled to the working image) are
   filtered by a colour guided filter (He et al. 2010) whose local affine coefficients are fitted at
   working size and applied to the full-resolution photo (dpst_ext.engine.upsample), then argmax; a
   majority filter finally removes lines under 3 px, which the mask parser would drop. A label the
   refinement erased from one image is dropped from both, so the label sets still match.

Labels are palette indices (dpst_ext.masks.NAMES) ordered by mean height in the content: the
top-most label (often the sky) is blue, the next green, and so on.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .image_io import load_image, resize_long_side, rgb_to_lab
from .masks import NAMES, PALETTE
from .engine.upsample import apply_coefficients, guided_coefficients

__all__ = ["auto_masks", "joint_kmeans", "AutoMaskWarning", "AUTO_LAYERS", "K_MAX"]


class AutoMaskWarning(UserWarning):
    """The automatic masks fell back to one label."""

AUTO_LAYERS = ("relu3_1", "relu4_1", "relu5_1")
# Labels clustered before merging (k=None): the most labels both photos can support, see auto_masks.
# The proxy of docs/experiments/2026-11-automatic-masks.md on the 15 example pairs (position weight 4,
# three seeds): the share of the hand masks' style-distance gain recovered rose with K, 0.72-0.74 at 6,
# 0.78-0.83 at 7 and 0.80-0.87 at 8; choosing K by silhouette recovered 0.21-0.66. (Palette: 9 colours.)
K_MAX = 8
# Weights of the feature blocks in the squared distance (each block normalised to unit mean squared norm).
# Shared blocks (one centroid per label for both photos) say what and where a region is; "lab" has a
# centroid per label AND per photo (PER_PHOTO): colour delimits regions inside a photo but cannot match
# them across photos, because a style photo differs in colour by design. Position 4 (proxy at K=6, one
# seed: position 1 -> 0.52, 2 -> 0.61, 3 -> 0.85, 5 -> 0.78): the example pairs share a layout far more
# reliably than VGG features tell regions apart.
DEFAULT_WEIGHTS = {"relu3_1": 1.0, "relu4_1": 1.0, "relu5_1": 1.0, "position": 4.0, "lab": 1.0}
PER_PHOTO = ("lab",)
# Two labels whose mean Lab colours differ by less than this in the content AND in the style would carry
# much the same style: they are merged (a smooth sky cut into blocks by the position term becomes one
# label). In style transfer on the example pairs (docs/experiments/2026-11-automatic-masks.md, 192 px),
# 20 against 10 gave the same style distance on the 10 pairs it was chosen on and a better one on the 2
# held out, with fewer labels (mean 4.1 against 6.1 on those 10) and a photorealism residual close to the
# hand masks' (0.00129 against 0.00157; hand 0.00124): every label boundary across a smooth region is a
# seam to smooth over.
MERGE_DELTA = 20.0
# Region correspondence (``_correspondence``): cells are matched across the photos by the cosine of their
# relu4_1 + relu5_1 features (each photo's mean removed), MATCH_TOPK best matches per cell. The matches
# replace the layout as the guide to which region is which only as far as they are strong: the median
# match similarity ramps the trust from 0 at MATCH_TRUST[0] to 1 at MATCH_TRUST[1]. Measured (2026-12-03,
# benchmarks/correspondence.py): on the 15 example pairs the matches' similarity is low (median 0.22-0.43)
# and, although a cell's best match carries its hand label more often than the cell at the same place
# does (83% against 74% on the tuning pairs), every labelling built on the matches instead of the layout
# recovered less of the hand masks' gain (docs/masks.md); a photo against its
# mirror image gives 0.57-0.78 and a synthetic scene against its regions swapped 0.66-0.76, where the layout
# is what misleads.
MATCH_LAYERS = ("relu4_1", "relu5_1")
MATCH_TOPK = 4
MATCH_TRUST = (0.5, 0.6)
# A pair whose labels agree with the cells' best feature matches (``_match_agreement``, kappa) under this gets
# one label: its pairing of regions would come from the layout alone. Chosen on the tuning half of the example
# pairs (fast method, docs/masks.md): the automatic masks did worse than one label on the pairs at -0.15 and
# 0.04, better on one at -0.01, and better or alike (pair 57 at 0.52: 3.55 against 3.53) on those at
# 0.44-0.81; any threshold in (0.04, 0.44) falls back on the three below, a net gain, and 0.2 lies near its
# middle. The held-out half alone would have put it in (0.16, 0.27).
MIN_AGREEMENT = 0.2

# --------------------------------------------------------------------------------------------------
# Features and clustering


def _grid_features(img: torch.Tensor, vgg, work_size: int) -> tuple[dict, tuple[int, int], torch.Tensor]:
    """Per-block features (N, C) on the relu3_1 grid of ``img`` resized to ``work_size``."""
    x = resize_long_side(img, work_size)
    with torch.no_grad():
        feats = vgg(x[None])
    gh, gw = feats["relu3_1"].shape[-2:]
    grid = lambda t: F.interpolate(t, size=(gh, gw), mode="bilinear", align_corners=False)  # noqa: E731
    flat = lambda t: t[0].flatten(1).T.contiguous()  # noqa: E731  (1, C, h, w) -> (h*w, C)
    blocks = {name: flat(grid(feats[name])) for name in AUTO_LAYERS}
    blocks["lab"] = flat(F.interpolate(rgb_to_lab(x)[None], size=(gh, gw), mode="bilinear", align_corners=False,
                                       antialias=True))
    yy, xx = torch.meshgrid((torch.arange(gh) + 0.5) / gh, (torch.arange(gw) + 0.5) / gw, indexing="ij")
    blocks["position"] = torch.stack([xx, yy]).flatten(1).T.contiguous()
    return blocks, (gh, gw), x


def _match_features(blocks: dict) -> torch.Tensor:
    """(N, D) unit vectors for matching: MATCH_LAYERS each L2-normalised, concatenated, the photo's mean
    feature removed (what differs inside the photo, not its overall look), normalised again."""
    f = F.normalize(torch.cat([F.normalize(blocks[n].double(), dim=1) for n in MATCH_LAYERS], 1), dim=1)
    return F.normalize(f - f.mean(0), dim=1)


def _correspondence(bc: dict, bs: dict, ramp: tuple[float, float] | None = None
                    ) -> tuple[dict, dict, float, float, tuple[torch.Tensor, torch.Tensor]]:
    """The blocks with the position block made two-framed, the trust and strength of the matches, and each
    cell's best match in the other photo (content -> style indices, style -> content indices).

    Each cell's position block becomes (position in the content's frame, position in the style's frame):
    its own position in its own photo's frame, and in the other photo's frame a blend of its own position
    (the layout: the photos are framed alike) and the mean position of its MATCH_TOPK best matches there
    (the correspondence), weighted by the trust (``ramp``, default MATCH_TRUST). At trust 0 this is the
    plain position block twice, which clusters exactly as one copy (blocks are scaled to unit mean squared
    norm)."""
    sim = _match_features(bc) @ _match_features(bs).T                  # (Nc, Ns) cosines
    c_sim, c_idx = sim.topk(min(MATCH_TOPK, sim.shape[1]), dim=1)
    s_sim, s_idx = sim.T.topk(min(MATCH_TOPK, sim.shape[0]), dim=1)
    strength = float(torch.cat([c_sim.mean(1), s_sim.mean(1)]).median())
    lo, hi = MATCH_TRUST if ramp is None else ramp
    trust = min(max((strength - lo) / (hi - lo), 0.0), 1.0)
    pc, ps = bc["position"].double(), bs["position"].double()
    c_there = (1 - trust) * pc + trust * ps[c_idx].mean(1)             # content cells in the style's frame
    s_there = (1 - trust) * ps + trust * pc[s_idx].mean(1)             # style cells in the content's frame
    return (dict(bc, position=torch.cat([pc, c_there], 1)), dict(bs, position=torch.cat([s_there, ps], 1)),
            trust, strength, (c_idx[:, 0], s_idx[:, 0]))


def _match_agreement(labels: torch.Tensor, best: tuple[torch.Tensor, torch.Tensor], n_content: int) -> float:
    """How far the labels agree with the feature matches beyond chance, in [-1, 1] (Cohen's kappa): the share
    of cells whose best match in the other photo (``best``, _correspondence) carries their own label, both
    photos' cells together, against the share expected if matches fell on labels at random (the sum over
    labels of the label's area in the content times its area in the style). NaN for one label."""
    lc, ls = labels[:n_content], labels[n_content:]
    k = int(labels.max()) + 1
    if k < 2:
        return float("nan")
    observed = float(torch.cat([ls[best[0]] == lc, lc[best[1]] == ls]).double().mean())
    chance = float((torch.bincount(lc, minlength=k).double() / len(lc)
                    * torch.bincount(ls, minlength=k).double() / len(ls)).sum())
    return (observed - chance) / (1 - chance)


def _joint_points(bc: dict, bs: dict, weights: dict, pca_dims: int) -> tuple[torch.Tensor, int]:
    """Content and style points stacked (Nc + Ns, D), the PER_PHOTO blocks in the last columns (their
    number is returned too). Each block is centred (PER_PHOTO ones per photo), reduced to its top
    ``pca_dims`` principal components (VGG blocks: the clustering then costs O(N K pca_dims), not
    O(N K 768)), scaled to unit mean squared norm and multiplied by sqrt(weight)."""
    parts, photo_parts = [], []
    for name, w in weights.items():
        if w <= 0:
            continue
        a, b = bc[name].double(), bs[name].double()
        if name in PER_PHOTO:
            a, b = a - a.mean(0), b - b.mean(0)
        x = torch.cat([a, b])
        x = x - x.mean(0)
        if x.shape[1] > pca_dims:
            _, vecs = torch.linalg.eigh(x.T @ x)             # ascending eigenvalues
            x = x @ vecs[:, -pca_dims:]
        x = x / x.pow(2).sum(1).mean().sqrt().clamp(min=1e-12)
        (photo_parts if name in PER_PHOTO else parts).append(x * w ** 0.5)
    photo_dims = sum(t.shape[1] for t in photo_parts)
    return torch.cat(parts + photo_parts, dim=1), photo_dims


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


def _photo_sq_dist(x: torch.Tensor, c: torch.Tensor, n_content: int) -> torch.Tensor:
    """Squared distances (N, K) of content points to the content centroids c[0], style points to c[1]."""
    return torch.cat([_sq_dist(x[:n_content], c[0]), _sq_dist(x[n_content:], c[1])])


def joint_kmeans(x: torch.Tensor, k: int, n_content: int | None = None, photo_dims: int = 0, seed: int = 0,
                 restarts: int = 10, iters: int = 60):
    """k-means over the points (N, D) of both photos, the first ``n_content`` from the content.

    A label's centroid is shared by the two photos in the first D - ``photo_dims`` columns and has one
    value per photo in the last ``photo_dims`` (Lloyd's two steps stay exact: each part of a centroid is
    the mean of the points it serves). k-means++ seeding from a private torch.Generator, best of
    ``restarts`` by inertia; deterministic for a seed (CPU float64). Returns (labels (N,), centres
    (2, k, D): content's then style's, inertia)."""
    x = x.double()
    nc = x.shape[0] if n_content is None else int(n_content)
    d_shared = x.shape[1] - photo_dims
    photos = (slice(0, nc), slice(nc, None))
    gen = torch.Generator().manual_seed(int(seed))
    best = None
    for _ in range(restarts):
        # Seeds and the first assignment use the shared columns only: a seed's per-photo columns come from
        # one photo and would pull the other photo's points by colour, which is what they must not do.
        shared = x[:, :d_shared]
        c = torch.cat([_kmeans_pp(shared, k, gen), x.new_zeros(k, photo_dims)], 1).expand(2, k, -1).clone()
        new = _sq_dist(shared, c[0, :, :d_shared]).argmin(1)
        labels = None
        for _ in range(iters):
            if labels is not None:
                new = _photo_sq_dist(x, c, nc).argmin(1)
                if torch.equal(new, labels):
                    break
            labels = new
            onehot = F.one_hot(labels, k).to(x.dtype)        # (N, k)
            for p, rows in enumerate(photos):
                # Shared columns from both photos, per-photo columns from this one; a label with no
                # points (in both photos, or in this photo) keeps that part of its centre.
                for cols, oh, xx in ((slice(0, d_shared), onehot, x), (slice(d_shared, None), onehot[rows], x[rows])):
                    counts = oh.sum(0)[:, None]
                    c[p, :, cols] = torch.where(counts > 0, (oh.T @ xx[:, cols]) / counts.clamp(min=1), c[p, :, cols])
        inertia = float(_photo_sq_dist(x, c, nc).gather(1, labels[:, None]).sum())
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


def _all_alike(labels: torch.Tensor, lab: torch.Tensor, delta: float) -> bool:
    """Whether 2+ labels all have mean Lab colours (``lab`` (N, 3) of the points) within ``delta`` of each
    other: in the style photo, labels that would all carry the same style. Labelled apart, each content
    region would be mapped onto that one look and lose its contrast with the others; one label keeps it."""
    ids = torch.unique(labels)
    if len(ids) < 2:
        return False
    means = torch.stack([lab[labels == i].mean(0) for i in ids])
    return bool(torch.cdist(means, means).max() < delta)


def _merge_alike(labels: torch.Tensor, lab: torch.Tensor, n_content: int, delta: float) -> torch.Tensor:
    """Merge the two labels whose mean Lab colours (``lab`` (N, 3), the points' own colours) are closest,
    measured as the larger of the distances in the content and in the style, while that is under
    ``delta``. Labels are 0..K-1 present in both photos (after _merge_small); returns them renumbered."""
    labels = labels.clone()
    while True:
        ids = torch.unique(labels)
        if len(ids) <= 1:
            break
        means = [torch.stack([lab[rows][labels[rows] == i].mean(0) for i in ids])
                 for rows in (slice(0, n_content), slice(n_content, None))]
        d = torch.maximum(torch.cdist(means[0], means[0]), torch.cdist(means[1], means[1]))
        d.fill_diagonal_(float("inf"))
        i, j = divmod(int(d.argmin()), len(ids))
        if d[i, j] >= delta:
            break
        labels[labels == ids[j]] = ids[i]
    return torch.unique(labels, return_inverse=True)[1]


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


def _window_of(idx: torch.Tensor, h: int, w: int, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices (n, (2r+1)^2) of the window around each flat index ``idx`` of an (h, w) map (clamped
    into the map) and whether each is inside it."""
    d = torch.arange(-r, r + 1)
    yy = (idx // w)[:, None, None] + d[None, :, None]
    xx = (idx % w)[:, None, None] + d[None, None, :]
    inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)).flatten(1)
    return (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).flatten(1), inside


def _majority_clean(labels: torch.Tensor, k: int, window: int = 5, rounds: int = 64,
                    patience: int = 4) -> torch.Tensor:
    """Labels the mask parser reads back unchanged: no labelled pixel whose label holds under half of its
    ``window``^2 neighbourhood, the window clipped at the border (the parser, masks._drop_thin, unlabels
    those, taking them for anti-aliasing lines).

    Such pixels take the neighbourhood's majority label, all at once, repeatedly (a thin line erodes by a
    pixel or two per round: 26 rounds on pair 5 of the examples); once their count has not reached a new
    low for ``patience`` rounds (pixels at junctions of 3+ labels flip back and forth), or after
    ``rounds``, the rest are unlabelled (-1), repeatedly, which must end as labels only ever become -1.
    Only pixels near a label boundary, then near a change, are examined, so the cost follows the
    boundary length, not the image size; supports are exact integer ratios (the parser's float32 means
    of 0/1 values decide "under half" identically)."""
    h, w = labels.shape
    r = window // 2
    flat = labels.reshape(-1).clone()

    def bad_among(idx):
        nbr, inside = _window_of(idx, h, w, r)
        lab = torch.where(inside, flat[nbr], -1)
        counts = F.one_hot(lab + 1, k + 1)[:, :, 1:].sum(1)            # (n, k) labelled neighbours
        own = flat[idx]
        # count / n < 1/2 as integers: 2 count < n
        bad = (own >= 0) & (2 * counts.gather(1, own.clamp(min=0)[:, None])[:, 0] < inside.sum(1))
        return idx[bad], counts[bad]

    def near(idx):
        return torch.unique(_window_of(idx, h, w, r)[0])

    x = labels[None, None].to(torch.float32)
    spread = F.max_pool2d(x, window, 1, r) + F.max_pool2d(-x, window, 1, r)  # max - min over the window
    bad, counts = bad_among(torch.nonzero(spread.reshape(-1) != 0)[:, 0])
    fewest, since = None, 0
    for _ in range(rounds):
        if len(bad) == 0:
            break
        fewest, since = (len(bad), 0) if fewest is None or len(bad) < fewest else (fewest, since + 1)
        if since >= patience:
            break
        new = counts.argmax(1)                                       # first of equal counts
        changed = bad[new != flat[bad]]
        flat[bad] = new
        bad, counts = bad_among(torch.unique(torch.cat([bad, near(changed)])))
    while len(bad):
        flat[bad] = -1
        bad, counts = bad_among(near(bad))
    return flat.view(h, w)


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


def _order_and_refine(labels: torch.Tensor, heights: torch.Tensor, nc: int, grids, fulls, works, radius: int,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid labels (content cells first, ``nc`` of them) at full size: palette order by mean height
    (``heights``: the content cells' y) in the content, top-most label first (blue), then edge-aware
    boundaries on each photo (``grids``, ``fulls``, ``works``: the grid shapes, full-size photos and
    working-size photos, content then style)."""
    kk = int(labels.max()) + 1
    if kk == 1:
        return tuple(torch.zeros(f.shape[1:], dtype=torch.int64) for f in fulls)
    mean_y = torch.tensor([float(heights[labels[:nc] == i].mean()) for i in range(kk)])
    rank = torch.empty(kk, dtype=torch.int64)
    rank[mean_y.argsort()] = torch.arange(kk)
    labels = rank[labels]
    softs = [_soft_full(full, work, lab.reshape(grid), kk, radius, eps)
             for full, work, grid, lab in zip(fulls, works, grids, (labels[:nc], labels[nc:]))]
    return tuple(_shared_argmax(softs, kk))


def _check_k(k, name="k"):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(NAMES):
        raise ValueError(f"{name} must be an integer in 1..{len(NAMES)} (the palette's colours), got {k!r}")


def auto_masks(content, style, k: int | None = None, seed: int = 0, vgg=None, *, k_max: int = K_MAX,
               work_size: int = 256, min_area: float = 0.03, merge_delta: float = MERGE_DELTA,
               weights: dict | None = None, radius: int = 8, eps: float = 1e-2, restarts: int = 10,
               pca_dims: int = 16, min_agreement: float = MIN_AGREEMENT, return_info: bool = False):
    """Co-segment ``content`` and ``style`` into shared labels (module docstring for the method).

    Images: paths, PIL images, numpy arrays or (3, H, W) tensors in 0..1. ``k``: number of labels
    clustered, merged only where one is under ``min_area`` of either photo (None: ``k_max`` clustered,
    then also labels alike in colour merged, ``merge_delta``, and one label when the labels agree with the
    feature matches less than ``min_agreement``, a kappa; -1: never). ``vgg``: a VGG19Features whose layers
    include AUTO_LAYERS (None: built from the bundled weights). ``work_size``: long side at which features
    are computed; ``radius``/``eps``: guided filter at working size (radius 0: bilinear soft maps, no
    edge awareness).
    Returns (content_labels (Hc, Wc), style_labels (Hs, Ws)), int64 palette indices 0..K-1 at each
    photo's own size, the same K labels present in both; rarely, a few pixels of an oscillating thin
    line are -1 (no label; see _majority_clean).
    With ``return_info``, a third element: {"k": K, "clustered": labels clustered, "after_small": K
    after merging small labels, "trust": how far the feature matches replaced the layout (0..1),
    "strength": their median similarity, "agreement": the labels' agreement with the matches before any
    fall-back to one label (NaN for one label)}.
    """
    if k is not None:
        _check_k(k)
    _check_k(k_max, "k_max")
    if not 0 <= min_area < 0.5:
        raise ValueError(f"min_area must be a fraction in [0, 0.5), got {min_area}")
    if not merge_delta >= 0:
        raise ValueError(f"merge_delta must be a Lab distance >= 0, got {merge_delta}")
    if not -1 <= min_agreement <= 1:
        raise ValueError(f"min_agreement must lie in [-1, 1] (a kappa; -1: never fall back), got {min_agreement}")
    if work_size < 32:
        raise ValueError(f"work_size must be at least 32 px (features are on a 1/4 grid), got {work_size}")
    if radius < 0 or eps <= 0:
        raise ValueError(f"radius must be >= 0 and eps > 0, got radius={radius}, eps={eps}")
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"weights keys must be among {sorted(DEFAULT_WEIGHTS)}, got {sorted(unknown)}")
    if not any(w > 0 for n, w in weights.items() if n not in PER_PHOTO):
        raise ValueError(f"weights must give a positive weight to a block shared by the photos "
                         f"({sorted(set(DEFAULT_WEIGHTS) - set(PER_PHOTO))}): labels could not correspond")
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
    mc, ms, trust, strength, best = _correspondence(bc, bs)
    if weights.get("position", 0) > 0 and trust > 0:
        bc, bs = mc, ms
    else:
        trust = 0.0
    x, photo_dims = _joint_points(bc, bs, weights, pca_dims)
    nc = gc[0] * gc[1]

    clustered = k if k is not None else k_max
    labels = torch.zeros(x.shape[0], dtype=torch.int64)
    if clustered > 1:
        labels = joint_kmeans(x, clustered, nc, photo_dims, seed=seed, restarts=restarts)[0]
        labels = _merge_small(labels, x, nc, min_area)
    after_small = int(labels.max()) + 1
    if k is None:
        labels = _merge_alike(labels, torch.cat([bc["lab"], bs["lab"]]).double(), nc, merge_delta)
        if _all_alike(labels[nc:], bs["lab"].double(), merge_delta):
            warnings.warn("automatic masks: the style photo has no regions that differ in colour by "
                          f"{merge_delta:g} Lab units or more, so the content's regions could only all get the "
                          "same style: one label is used", AutoMaskWarning, stacklevel=2)
            labels = torch.zeros_like(labels)
    agreement = _match_agreement(labels, best, nc)
    if k is None and agreement < min_agreement:
        warnings.warn(f"automatic masks: the labels agree with what the two photos' features match no better than "
                      f"chance (agreement {agreement:.2f} < {min_agreement:g}), so they would pair regions by "
                      "layout alone: one label is used (paint masks to pair regions yourself)",
                      AutoMaskWarning, stacklevel=2)
        labels = torch.zeros_like(labels)
    result = _order_and_refine(labels, bc["position"][:nc, 1], nc, (gc, gs), (c_full, s_full),
                               (wc.cpu(), ws.cpu()), radius, eps)
    kk = int(result[0].max()) + 1
    if return_info:
        return (*result, {"k": kk, "clustered": clustered, "after_small": after_small, "trust": trust,
                          "strength": strength, "agreement": agreement})
    return result
