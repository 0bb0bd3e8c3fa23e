"""Sample photos that ship inside a package (scikit-image's data), for the demo, tests and benchmarks.

Images are returned as (3, H, W) float tensors in 0..1, quantised to 8 bits as real photos are.
"""
from __future__ import annotations

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
        raise ImportError("sample photos need scikit-image: pip install scikit-image") from e
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
