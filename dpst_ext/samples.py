"""Sample photos that ship inside a package (scikit-image's data), for the demo, tests and benchmarks.

Images are returned as (3, H, W) float tensors in 0..1, quantised to 8 bits as real photos are.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["photo", "photo_megapixels", "PHOTOS"]

# scikit-image sample photos bundled in its wheel (no download needed).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def _load_rgb_uint8(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('the sample photos ship with scikit-image: pip install "dpst_ext[demo]" '
                          "(or scikit-image)") from e
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {PHOTOS}, got {name!r}")
    img = getattr(skimage.data, name)()
    return np.ascontiguousarray(img[..., :3])


def _to_tensor(img: np.ndarray, dtype) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1).astype(np.float64) / 255.0).to(dtype).contiguous()


def photo(name: str = "astronaut", long_side: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """A bundled photo as (3, H, W), optionally resized (Lanczos) to a given long side, 8-bit values."""
    img = _load_rgb_uint8(name)
    if long_side is not None:
        h, w = img.shape[:2]
        s = long_side / max(h, w)
        img = np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))
    return _to_tensor(img, dtype)


def photo_megapixels(megapixels: float, name: str = "hubble_deep_field", dtype=torch.float32) -> torch.Tensor:
    """A bundled photo resized (Lanczos, 8-bit) to about ``megapixels`` million pixels, aspect kept."""
    img = _load_rgb_uint8(name)
    h, w = img.shape[:2]
    s = (megapixels * 1e6 / (h * w)) ** 0.5
    img = np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.LANCZOS))
    return _to_tensor(img, dtype)


# ---- test and benchmark factories -----------------------------------------------------------------

__all__ += ["random_image", "hard_crops", "HARD_CROPS"]

# Top-left corners of crops whose 3x3 windows are the hardest for the Laplacian: windows whose colour
# covariance is exactly singular but not zero (pixels on a line or plane in colour space: pure black
# with a few coloured pixels, grey sky, a saturated channel). There, Sigma + eps/9 I has condition
# number ~1e8. Found by scanning each photo for the 40x40 crop with the most such windows (astronaut:
# also windows with 6-8 of 9 pixels pure black); the counts are for 40x40.
HARD_CROPS = {
    "astronaut_black": ("astronaut", 298, 369),          # 273 singular windows, 222 with >= 6 black
    "rocket_sky": ("rocket", 192, 344),                  # 1398 singular of 1444
    "hubble_dark": ("hubble_deep_field", 696, 688),      # dark sky, faint stars; 173 singular
    "coffee_saturated": ("coffee", 35, 4),               # 399 singular
    "retina_border": ("retina", 564, 614),               # 1421 singular
}


def random_image(height: int, width: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Uniform noise in 0..1 as (3, H, W): the easy, well-conditioned case."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, height, width, generator=g, dtype=torch.float64).to(dtype)


def _pasted(size: int) -> np.ndarray:
    """A coffee crop with synthetic pure black, pure white and flat grey patches, a 1-pixel black line
    and a saturated red channel pasted in: windows straddling their borders have 3 to 8 identical
    pixels, the near-singular case."""
    img = _load_rgb_uint8("coffee")[100:100 + size, 200:200 + size].copy()
    q = max(size // 4, 1)
    img[:q, :q] = 0                      # pure black square
    img[:q, -q:] = 255                   # pure white square
    img[-q:, :q] = 128                   # flat grey square
    img[size // 2, :] = 0                # 1-pixel black line
    img[-q:, -q:, 0] = 255               # saturated red channel
    return img


def hard_crops(size: int = 40, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Real-photo crops (3, size, size) with near-singular windows, 8-bit values, keyed by name.

    The crops of HARD_CROPS plus "pasted" (synthetic black/white/flat patches in a real photo).
    """
    out = {}
    for key, (name, y, x) in HARD_CROPS.items():
        img = _load_rgb_uint8(name)
        y = min(y, img.shape[0] - size)
        x = min(x, img.shape[1] - size)
        out[key] = _to_tensor(np.ascontiguousarray(img[y:y + size, x:x + size]), dtype)
    out["pasted"] = _to_tensor(_pasted(size), dtype)
    return out


# ---- the paper's example pairs (development data, not shipped) -----------------------------------

__all__ += ["EXAMPLES", "EXAMPLE_PAIRS", "ExamplePair", "example_pair"]

# Where the developers' copy of 15 of the paper's example pairs lies (beside the repository); tests that
# use it skip when it is absent. DPST_EXAMPLES overrides.
EXAMPLES = Path(os.environ.get("DPST_EXAMPLES",
                               Path(__file__).resolve().parents[2] / "shared" / "data" / "dpst_examples"))
EXAMPLE_PAIRS = tuple(range(1, 60, 4))


@dataclass
class ExamplePair:
    """Example pair n: content and style (3, H, W) in 0..1, their hand-painted masks as palette labels
    (specks from anti-aliasing removed, as MaskPair.from_labels does), and the published final result
    (resized to the content's size when it is off by a pixel)."""

    n: int
    content: torch.Tensor
    style: torch.Tensor
    content_labels: torch.Tensor
    style_labels: torch.Tensor
    published: torch.Tensor
    paths: dict

    def masks(self, orphans: str = "restrict") -> "MaskPair":
        from .masks import MaskPair

        return MaskPair.from_labels(self.content_labels, self.style_labels, orphans=orphans, warn=False)


def example_pair(n: int, root: Path | str | None = None) -> ExamplePair:
    """Load example pair ``n`` (1, 5, ..., 57) from ``root`` (default EXAMPLES)."""
    from .image_io import load_image
    from .masks import _drop_specks, parse_mask

    d = Path(root) if root is not None else EXAMPLES
    paths = {"content": d / "input" / f"in{n}.png", "style": d / "style" / f"tar{n}.png",
             "content_mask": d / "segmentation" / f"in{n}.png", "style_mask": d / "segmentation" / f"tar{n}.png",
             "published": d / "final_results" / f"best{n}_t_1000.png"}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"example pair {n}: missing {', '.join(missing)}")
    c, s = load_image(paths["content"], "content"), load_image(paths["style"], "style")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the pairs' masks are anti-aliased and a pixel off: known
        cl = _drop_specks(parse_mask(paths["content_mask"], tuple(c.shape[1:])), 1e-3)
        sl = _drop_specks(parse_mask(paths["style_mask"], tuple(s.shape[1:])), 1e-3)
    pub = load_image(paths["published"], "published")
    if tuple(pub.shape[1:]) != tuple(c.shape[1:]):
        pub = torch.nn.functional.interpolate(pub[None], size=tuple(c.shape[1:]), mode="bilinear",
                                              align_corners=False)[0].clamp(0, 1)
    return ExamplePair(n, c, s, cl, sl, pub, paths)
