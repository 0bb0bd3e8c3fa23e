"""Images in and out: whatever the user hands us becomes a (3, H, W) float32 tensor in 0..1.

Accepted: a path, a PIL image, a numpy array (H, W), (H, W, 3) or (H, W, 4) in uint8 / uint16 / float
0..1, or a torch tensor (3, H, W) / (1, 3, H, W) in 0..1. Files go through Pillow with the EXIF
orientation applied (HEIC/HEIF too, with pillow-heif installed: the heif extra); alpha is dropped, grayscale
is replicated to RGB, 16-bit is scaled by 65535. A photo with an embedded ICC colour profile is converted to
sRGB by LittleCMS (tests/test_cli.py checks an Adobe RGB one), the space every step works in and the one an
untagged output is read as.
Outputs are written atomically (a temporary file in the same folder, then os.replace), so an
interrupted run never leaves a truncated image behind; ``output_target`` checks an output path before any
work (folder, writability, format, no directory or special file).
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import secrets
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["load_image", "to_pil", "save_image", "output_target", "atomic_output", "resize_long_side", "open_pil",
           "open_image_file", "heif_support",
           "rgb_to_lab", "ColourProfileWarning", "photo_exif"]


@functools.lru_cache(maxsize=None)
def heif_support() -> bool:
    """Whether Pillow reads and writes HEIC/HEIF photos (the iPhone's format): through pillow-heif, registered
    on first call (``pip install "dpst_ext[heif]"``)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


# ISO base media file brands of HEIF still images (the 'ftyp' box at offset 4).
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def _is_heif(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def open_image_file(path) -> Image.Image:
    """Image.open(path), HEIC/HEIF included where pillow-heif is installed (heif_support); a HEIF file without it
    is a ValueError saying what to install."""
    heif_support()
    try:
        return Image.open(path)
    except Exception:  # noqa: BLE001 - re-raised unless the reason is a missing HEIF reader
        if _is_heif(Path(path)) and not heif_support():
            raise ValueError(f"{path} is a HEIC/HEIF photo: reading it needs pillow-heif "
                             '(pip install pillow-heif, or pip install "dpst_ext[heif]")') from None
        raise


def open_pil(path) -> Image.Image:
    """Open an image file with its EXIF orientation applied; clear errors for missing / unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        img = open_image_file(path)
        img.load()
    except Exception as e:  # Pillow raises several types for bad files
        raise ValueError(f"cannot read image {path}: {e}") from None
    return ImageOps.exif_transpose(img)


class ColourProfileWarning(UserWarning):
    pass


def _to_srgb(img: Image.Image, name: str) -> Image.Image:
    """``img`` converted from its embedded ICC profile to sRGB (relative colorimetric; colours outside sRGB are
    clipped), as mode RGB; unchanged without a profile. A profile that cannot be used is reported and the
    values are taken as sRGB."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    from PIL import ImageCms

    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("L" if img.mode == "LA" else "RGB")   # (alpha is dropped anyway)
    try:
        if img.mode not in ("RGB", "L", "CMYK"):
            raise ImageCms.PyCMSError(f"mode {img.mode} is not converted")
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(img, profile, ImageCms.createProfile("sRGB"),
                                         renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        warnings.warn(f"{name}: its embedded colour profile cannot be applied ({e}); its values are taken as sRGB",
                      ColourProfileWarning, stacklevel=3)
        return img


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in 0..1 from any Pillow mode (16-bit modes scaled by 65535)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img).astype(np.float32)
        # Mode "I" holds 16-bit PNGs too; 32-bit integer images beyond 16 bits are not photos.
        a = a / 65535.0 if a.max(initial=0) > 255 or img.mode != "I" else a / 255.0
        return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)
    if img.mode == "F":
        a = np.asarray(img).astype(np.float32)
        return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)
    if img.mode != "RGB":
        # convert("RGB") drops alpha and replicates grey; palette images are expanded.
        img = img.convert("RGB")
    return np.asarray(img).astype(np.float32) / 255.0


def _array_to_tensor(a: np.ndarray, name: str) -> torch.Tensor:
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} as a numpy array must have shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    a = a[..., :3] if a.shape[2] >= 3 else np.repeat(a, 3, axis=2)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    else:
        raise ValueError(f"{name} as a numpy array must be uint8, uint16 or floating point, got {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def load_image(src, name: str = "image", to_srgb: bool = True) -> torch.Tensor:
    """(3, H, W) float32 tensor in 0..1 from a path, PIL image, numpy array or tensor. ``to_srgb``: convert a
    file or PIL image with an embedded colour profile to sRGB (photos; a mask's colours are labels: False)."""
    if isinstance(src, (str, os.PathLike)):
        src = open_pil(src)
    if isinstance(src, Image.Image):
        if to_srgb:
            src = _to_srgb(src, name)
        t = torch.from_numpy(np.ascontiguousarray(_pil_to_array(src).transpose(2, 0, 1)))
    elif isinstance(src, np.ndarray):
        t = _array_to_tensor(src, name)
    elif isinstance(src, torch.Tensor):
        t = src.detach()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(f"{name} as a tensor must have shape (3, H, W) or (1, 3, H, W), got {tuple(src.shape)}")
        t = t[:3] if t.shape[0] >= 3 else t.expand(3, -1, -1)
        if t.dtype == torch.uint8:
            t = t.to(torch.float32) / 255.0
        elif t.dtype.is_floating_point:
            t = t.to(torch.float32)
        else:
            raise ValueError(f"{name} as a {t.dtype} tensor: pass uint8 (0..255) or floating point (0..1)")
        t = t.cpu().contiguous()
    else:
        raise TypeError(f"{name} must be a path, PIL image, numpy array or torch tensor, got {type(src).__name__}")
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return _in_unit_range(t, name)


# Floating-point images may overshoot 0..1 by resampling (bicubic, Lanczos): clipped without a word.
RANGE_SLACK = 0.01


def _in_unit_range(t: torch.Tensor, name: str) -> torch.Tensor:
    lo, hi = float(t.min()), float(t.max())
    if hi > 1 + RANGE_SLACK:
        hint = "pass uint8 or divide by 255" if hi <= 255 + RANGE_SLACK else "scale it to 0..1"
        raise ValueError(f"{name} has values up to {hi:.4g}: floating-point images must be in 0..1 ({hint})")
    if lo < -RANGE_SLACK:
        raise ValueError(f"{name} has values down to {lo:.4g}: floating-point images must be in 0..1 "
                         "(undo any normalisation first)")
    return t.clamp_(0, 1) if lo < 0 or hi > 1 else t


def resize_long_side(image: torch.Tensor, long_side: int | None, mode: str = "bicubic") -> torch.Tensor:
    """Resize (3, H, W) so that max(H, W) == long_side (aspect kept; antialiased when shrinking)."""
    if long_side is None:
        return image
    h, w = image.shape[-2:]
    s = long_side / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if size == (h, w):
        return image
    out = torch.nn.functional.interpolate(image[None], size=size, mode=mode, align_corners=False,
                                          antialias=s < 1)[0]
    return out.clamp(0, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIE Lab (D65) of sRGB values in 0..1, channels first: (3, ...) -> (3, ...), L in 0..100; float64 in
    gives float64 out, anything else float32."""
    dt = torch.float64 if rgb.dtype == torch.float64 else torch.float32
    rgb = rgb.to(dt).clamp(0, 1)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.412453, 0.357580, 0.180423],
                      [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]], dtype=dt, device=rgb.device)
    white = torch.tensor([0.950456, 1.0, 1.088754], dtype=dt, device=rgb.device)
    xyz = torch.einsum("ij,j...->i...", m, lin) / white.view(3, *([1] * (rgb.dim() - 1)))
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def to_pil(image) -> Image.Image:
    """8-bit RGB PIL image from a (3, H, W) tensor in 0..1 (clamped, rounded)."""
    t = load_image(image) if not isinstance(image, torch.Tensor) else image.detach().cpu()
    if t.dim() == 4:
        t = t[0]
    a = (t.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(a), "RGB")


# The formats named in messages (Pillow writes more: any extension it knows for writing is accepted).
COMMON_FORMATS = ".png, .jpg, .tif, .webp or .bmp"


def output_target(path, format: str | None = None, name: str = "output", probe: bool = True) -> tuple[Path, str]:
    """Where and how ``save_image`` would write ``path``: (the file to replace, the Pillow format).

    Checks everything a write needs before any work, with errors naming ``name`` and the rule: the folder
    exists and can be written, the path is not a directory or a special file (a device, a pipe), and the
    format is one Pillow can write, from ``format`` or else the extension. A symlink is written through:
    its target file is replaced and the link is kept. ``probe=False`` skips the test of writability (a
    file created and removed), for a caller about to create its own file there.
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise ValueError(f"{name} {path} is a directory: give a file name, e.g. {path / 'out.png'}")
    if target.exists() and not target.is_file():
        raise ValueError(f"{name} {path} is not a regular file: give the path of an image file to write")
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"{name} folder does not exist: {folder}")
    heif_support()
    Image.init()
    if format is not None:
        fmt = format.upper().replace("JPG", "JPEG").replace("TIF", "TIFF").replace("TIFFF", "TIFF")
        if fmt not in Image.SAVE:
            raise ValueError(f"{name} format {format!r} cannot be written: use png, jpeg, tiff, webp or bmp")
    else:
        fmt = Image.registered_extensions().get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{name} {path}: unknown image extension {path.suffix or '(none)'!r}: use "
                             f"{COMMON_FORMATS}, or give the format (--format)")
        if fmt not in Image.SAVE:
            raise ValueError(f"{name} {path}: Pillow cannot write {fmt} files: use {COMMON_FORMATS}")
    if probe:
        tmp = _temporary(target)
        try:   # the one test of writability that holds for every user, root included: create a file
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as e:
            raise ValueError(f"{name} folder {folder} is not writable ({e.strerror})") from None
        tmp.unlink()
    return target, fmt


def _temporary(target: Path) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def atomic_output(path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` (hidden, unique) to write; when the block ends normally it
    replaces ``path`` in one rename, on any exception (Ctrl-C included) it is removed. So a reader sees the
    old file or the whole new one, never a part, and nothing is left behind: every output of the package
    (images, videos, state files) is written through this."""
    tmp = _temporary(Path(path))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# How outputs are encoded, where Pillow's defaults do not suit a finished photo. JPEG and WebP: quality 95
# (with Pillow's 75 and 80 a photo read back has 2.7x and 1.6x the mean error, tests/test_cli.py), JPEG
# without chroma subsampling (4:4:4: colour at full resolution). PNG: zlib level 3, not 6: a 12 MP result
# encoded in 1.3 s instead of 3.8 s, 13% larger (2026-12-07, 2-core AMD EPYC; JPEG q95 4:4:4: 0.06 s,
# 4.3 MB against q75 4:2:0's 1.0 MB).
ENCODER_OPTIONS = {"JPEG": dict(quality=95, subsampling=0), "WEBP": dict(quality=95), "PNG": dict(compress_level=3),
                   "HEIF": dict(quality=90)}


EXIF_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "HEIF")   # where save_image writes a photo's EXIF


def photo_exif(src) -> bytes | None:
    """The EXIF block (camera, lens, date taken, GPS, ...) of the photo file ``src``, for an image made from
    it: the orientation set to upright (loading applied it), the pixel dimensions dropped (the output's may
    differ), the colour space set to sRGB (loading converted to it). None without EXIF, or for anything
    that is not a readable image file."""
    if not isinstance(src, (str, os.PathLike)):
        return None
    from PIL import ExifTags

    try:
        with open_image_file(src) as im:
            exif = im.getexif()
            sub = exif.get_ifd(ExifTags.IFD.Exif)
            exif.get_ifd(ExifTags.IFD.GPSInfo)         # (loaded, so written back)
            if not exif:
                return None
            if ExifTags.Base.Orientation in exif:
                exif[ExifTags.Base.Orientation] = 1
            for tag in (ExifTags.Base.ExifImageWidth, ExifTags.Base.ExifImageHeight):
                sub.pop(tag, None)
            if ExifTags.Base.ColorSpace in sub:
                sub[ExifTags.Base.ColorSpace] = 1
            return exif.tobytes()
    except Exception:   # noqa: BLE001 (metadata is a courtesy: an unreadable block is left out)
        return None


def save_image(image, path, format: str | None = None, exif: bytes | None = None) -> Path:
    """Write ``image`` to ``path`` atomically (a temporary file beside it, then a rename); the format is
    ``format`` or follows the extension, encoded with ENCODER_OPTIONS, with ``exif`` (photo_exif) in the
    formats of EXIF_FORMATS. ``output_target`` says what is refused; a symlink is written through; a missing
    folder is created. Returns the path written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    target, fmt = output_target(path, format, probe=False)   # creating the temporary file tests writability
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    options = dict(ENCODER_OPTIONS.get(fmt, {}))
    if exif and fmt in EXIF_FORMATS:
        options["exif"] = exif
    with atomic_output(target) as tmp:
        # Created as open() creates files (mode 0666 less the umask): tempfile.mkstemp would make it 0600, and
        # the rename would keep that, leaving outputs unreadable to other users.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            pil.save(f, format=fmt, **options)
    return Path(path)
