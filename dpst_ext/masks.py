"""Colour-coded semantic masks: parsing, size checks, orphan labels and per-layer downsampling.

A mask is a picture painted with up to 9 palette colours (PALETTE). Real masks are anti-aliased,
sometimes grayscale, sometimes a pixel off in size; :func:`parse_mask` turns one into a label map
(H, W) of palette indices, -1 where a pixel matches no colour (such pixels get no style target).

    >>> labels = parse_mask("in1.png", size=(437, 700))          # (H, W) int64 in -1..8
    >>> pair = MaskPair.from_labels(content_labels, style_labels)  # orphan handling, one-hot masks
    >>> pair.content.shape                                        # (K, H, W) float, K labels in use
    >>> save_masks(cl, sl, "c_mask.png", "s_mask.png")            # label maps back to 9-colour PNGs
    >>> cl, sl = segmenter_masks(c, s, my_net, mapping={21: "water", 26: "water", 2: "sky"})
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .image_io import load_image, save_image

__all__ = ["PALETTE", "parse_mask", "labels_to_masks", "MaskPair", "downsample_for_layers", "segmenter_masks",
           "labels_to_image", "save_masks", "OrphanLabelWarning", "MaskSizeWarning", "MaskPaletteWarning"]

# The colour-coded format of the reference release (0..1 RGB).
PALETTE: dict[str, tuple[float, float, float]] = {
    "blue": (0.0, 0.0, 1.0),
    "green": (0.0, 1.0, 0.0),
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "yellow": (1.0, 1.0, 0.0),
    "grey": (0.5, 0.5, 0.5),
    "lightblue": (0.0, 1.0, 1.0),
    "purple": (1.0, 0.0, 1.0),
}
NAMES = tuple(PALETTE)
_COLOURS = torch.tensor(list(PALETTE.values()), dtype=torch.float32)  # (9, 3)

# Palette colours are at least 0.866 apart (grey to any corner), so any threshold below 0.433 makes
# the nearest-colour match unambiguous. 0.3 accepts anti-aliased pixels that are ~70% one colour.
DEFAULT_THRESHOLD = 0.3
# Off-by-a-pixel masks are common (exported at a rounded size); more than this is a different image.
SIZE_TOLERANCE = 2


class MaskSizeWarning(UserWarning):
    pass


class OrphanLabelWarning(UserWarning):
    pass


class MaskPaletteWarning(UserWarning):
    pass


def _mask_rgb(src, name: str = "mask") -> torch.Tensor:
    """(3, H, W) float 0..1 from a path / PIL / numpy / tensor mask (grayscale replicated, alpha dropped)."""
    return load_image(src, name=name, to_srgb=False)   # palette values, whatever profile the painter tagged


# A mask with more than this share of its pixels off the palette is reported: the anti-aliased borders of
# the paper's 30 hand-painted masks leave at most 1.5% of the pixels off it.
OFF_PALETTE_WARN = 0.05


def _palette_text() -> str:
    return ", ".join(f"{n} {_hex(c)}" for n, c in PALETTE.items())


def _hex(rgb) -> str:
    return "#" + "".join(f"{round(255 * float(v)):02X}" for v in rgb)


def _report_off_palette(rgb: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    """ValueError when no pixel of a mask is a palette colour; MaskPaletteWarning, with the share and the
    commonest colours found, when more than OFF_PALETTE_WARN of its pixels match none (they get no style
    target)."""
    off = labels < 0
    share = float(off.float().mean())
    if share <= OFF_PALETTE_WARN:
        return
    colours, counts = torch.unique((rgb[:, off] * 255).round().to(torch.int64), dim=1, return_counts=True)
    top = counts.argsort(descending=True)[:3]
    seen = ", ".join(f"{_hex(colours[:, i] / 255)} ({100 * float(counts[i]) / labels.numel():.0f}%)" for i in top)
    if share == 1.0:
        raise ValueError(f"{name}: no pixel matches a palette colour (found {seen}); the palette colours are "
                         f"{_palette_text()}")
    warnings.warn(f"{name}: {100 * share:.1f}% of the pixels match no palette colour (commonest: {seen}); they "
                  f"get no style target. The palette colours are {_palette_text()}", MaskPaletteWarning,
                  stacklevel=3)


def _labels_nearest(rgb: torch.Tensor, threshold: float) -> torch.Tensor:
    d = torch.cdist(rgb.permute(1, 2, 0).reshape(-1, 3), _COLOURS)  # (HW, 9)
    dist, idx = d.min(dim=1)
    idx[dist > threshold] = -1
    return idx.reshape(rgb.shape[1:])


def _labels_reference(rgb: torch.Tensor) -> torch.Tensor:
    """The reference release's channel thresholds: < 0.1 is 0, > 0.9 is 1, grey in (0.4, 0.6)."""
    lo, hi = rgb < 0.1, rgb > 0.9
    mid = (rgb > 0.4) & (rgb < 0.6)
    labels = torch.full(rgb.shape[1:], -1, dtype=torch.int64)
    for k, colour in enumerate(PALETTE.values()):
        m = torch.ones(rgb.shape[1:], dtype=torch.bool)
        for c, v in enumerate(colour):
            m &= lo[c] if v == 0.0 else hi[c] if v == 1.0 else mid[c]
        labels[m] = k
    return labels


def parse_mask(src, size: tuple[int, int] | None = None, mode: str = "nearest",
               threshold: float = DEFAULT_THRESHOLD, name: str = "mask", clean: bool = True) -> torch.Tensor:
    """Label map (H, W) int64 of palette indices (see ``NAMES``), -1 for pixels matching no colour.

    ``size`` (H, W) is the size of the photo the mask belongs to: a mask up to 2 px off is resized
    (nearest, with a warning); a larger mismatch is an error. ``mode``: "nearest" (nearest palette
    colour within ``threshold`` in RGB 0..1 distance) or "reference" (the reference's channel thresholds).
    ``clean``: unlabel pixels whose label holds under half of their 5x5 neighbourhood, i.e. lines at
    most 2 px wide. Anti-aliasing draws such lines along label borders, and a black/white border's
    midtones are exactly the palette's grey: without this, a spurious "grey" label appears.
    """
    if mode not in ("nearest", "reference"):
        raise ValueError(f"mode must be 'nearest' or 'reference', got {mode!r}")
    if not 0 < threshold < 0.433:
        raise ValueError(f"threshold must be in (0, 0.433) so palette colours stay distinct, got {threshold}")
    rgb = _mask_rgb(src, name)
    labels = _labels_nearest(rgb, threshold) if mode == "nearest" else _labels_reference(rgb)
    _report_off_palette(rgb, labels, name)
    if clean:
        labels = _drop_thin(labels)
    if size is not None:
        labels = fit_labels(labels, size, name)
    return labels


def _drop_thin(labels: torch.Tensor, window: int = 5) -> torch.Tensor:
    onehot = torch.stack([labels == k for k in range(len(NAMES))]).to(torch.float32)[None]
    support = F.avg_pool2d(onehot, window, stride=1, padding=window // 2, count_include_pad=False)[0]
    own = support.gather(0, labels.clamp(min=0)[None])[0]
    out = labels.clone()
    out[(labels >= 0) & (own < 0.5)] = -1
    return out


def _drop_specks(labels: torch.Tensor, min_area: float) -> torch.Tensor:
    counts = torch.bincount((labels + 1).reshape(-1), minlength=len(NAMES) + 1)[1:]
    small = [k for k in range(len(NAMES)) if 0 < counts[k] < min_area * labels.numel()]
    if not small:
        return labels
    out = labels.clone()
    out[torch.isin(labels, torch.tensor(small))] = -1
    return out


def fit_labels(labels: torch.Tensor, size: tuple[int, int], name: str = "mask") -> torch.Tensor:
    """Resize a label map to the photo's size (H, W) if it is at most SIZE_TOLERANCE px off; else raise."""
    h, w = labels.shape
    H, W = size
    if (h, w) == (H, W):
        return labels
    if abs(h - H) > SIZE_TOLERANCE or abs(w - W) > SIZE_TOLERANCE:
        raise ValueError(f"{name} is {w}x{h} px but its photo is {W}x{H} px; masks must match their photo's "
                         f"size (up to {SIZE_TOLERANCE} px off)")
    warnings.warn(f"{name} is {w}x{h} px, its photo {W}x{H} px: resized (nearest)", MaskSizeWarning, stacklevel=3)
    return resize_labels(labels, size)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a label map (labels are categories: never interpolate them)."""
    if tuple(labels.shape) == tuple(size):
        return labels
    x = labels[None, None].to(torch.float32)
    return F.interpolate(x, size=tuple(size), mode="nearest-exact")[0, 0].to(torch.int64)


def labels_to_masks(labels: torch.Tensor, ids) -> torch.Tensor:
    """One-hot float masks (K, H, W) for the palette indices ``ids`` (a pixel with -1 is in none)."""
    return torch.stack([(labels == k) for k in ids]).to(torch.float32) if len(ids) else \
        torch.zeros((0, *labels.shape))


@dataclass
class MaskPair:
    """Masks of content and style over the same K labels, after orphan handling.

    ``content`` (K, Hc, Wc) and ``style`` (K, Hs, Ws) are float one-hot masks; ``names`` the K labels;
    ``orphans`` maps each orphan label (in the content, absent from the style) to its content area
    fraction.
    """

    content: torch.Tensor
    style: torch.Tensor
    names: list[str]
    orphans: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def single(content_size, style_size) -> "MaskPair":
        """No masks: one label covering both images."""
        return MaskPair(torch.ones((1, *content_size)), torch.ones((1, *style_size)), ["all"])

    @staticmethod
    def from_labels(content_labels: torch.Tensor, style_labels: torch.Tensor, orphans: str = "restrict",
                    warn: bool = True, min_area: float = 1e-3) -> "MaskPair":
        """Masks for the labels present in the content.

        orphans="restrict" (default, as the paper): content labels absent from the style get no mask,
        so their pixels get no style target. "keep" (the reference code's behaviour): keep them with an
        all-zero style mask, whose zero target Gram pushes those features towards zero.
        Labels covering less than ``min_area`` of an image are specks left by anti-aliasing (or
        painting slips): they are unlabelled in that image before anything else.
        """
        if orphans not in ("restrict", "keep"):
            raise ValueError(f"orphans must be 'restrict' or 'keep', got {orphans!r}")
        content_labels = _drop_specks(content_labels, min_area)
        style_labels = _drop_specks(style_labels, min_area)
        c_ids = [k for k in range(len(NAMES)) if bool((content_labels == k).any())]
        s_ids = {k for k in range(len(NAMES)) if bool((style_labels == k).any())}
        n = content_labels.numel()
        found = {NAMES[k]: float((content_labels == k).sum()) / n for k in c_ids if k not in s_ids}
        if found and warn:
            desc = ", ".join(f"{k} ({100 * a:.1f}% of the content)" for k, a in found.items())
            what = "those pixels get no style target" if orphans == "restrict" else \
                "kept with an empty style mask (reference behaviour)"
            warnings.warn(f"labels in the content mask but not in the style mask: {desc}; {what}",
                          OrphanLabelWarning, stacklevel=2)
        ids = c_ids if orphans == "keep" else [k for k in c_ids if k in s_ids]
        if not ids:
            raise ValueError("content and style masks share no label: nothing to transfer "
                             f"(content has {[NAMES[k] for k in c_ids]}, style has {[NAMES[k] for k in sorted(s_ids)]})")
        return MaskPair(labels_to_masks(content_labels, ids), labels_to_masks(style_labels, ids),
                        [NAMES[k] for k in ids], found)

    def resized(self, content_size, style_size) -> "MaskPair":
        """The same masks at other image sizes (nearest: masks stay hard at the image level)."""
        def rs(m, size):
            if tuple(m.shape[1:]) == tuple(size):
                return m
            return F.interpolate(m[None], size=tuple(size), mode="nearest-exact")[0]
        return MaskPair(rs(self.content, content_size), rs(self.style, style_size), list(self.names),
                        dict(self.orphans))


def downsample_for_layers(masks: torch.Tensor, layer_names, feature_sizes: dict) -> dict[str, torch.Tensor]:
    """Masks (K, H, W) at every layer's resolution, as the reference did it.

    Walk VGG's layers in order: 3x3 average pooling (stride 1) at each conv layer, a bilinear resize to
    the layer's output size at each pooling layer. This softens the masks near label borders. Unlike
    the reference (whose padding counted zeros), the average is over the pixels inside the image: the
    image edge is not a label border, and one all-ones mask stays all ones (plain Gram matrices). ``feature_sizes`` maps pooling layer names to their output (h, w).
    Returns {layer name: (K, h, w)} for every layer in ``layer_names`` (VGG order).
    """
    out = {}
    m = masks[None]
    for name in layer_names:
        if name.startswith("conv"):
            m = F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False)
        elif name.startswith("pool"):
            m = F.interpolate(m, size=tuple(feature_sizes[name]), mode="bilinear", align_corners=False)
        out[name] = m[0]
    return out


# ---- Label maps from elsewhere, and back to mask pictures ----------------------------------------

# Colour of "no label" in a written mask: at least 0.56 from every palette colour, so the parser
# (threshold 0.3) reads it back as unlabelled.
UNLABELLED_RGB = (0.5, 0.25, 0.0)


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
        try:
            m = segmenter(img)
        except Exception as e:  # the user's model: its failure in one line, the traceback chained
            raise ValueError(f"segmenter failed on the {name} photo: {type(e).__name__}: {e}") from e
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
