"""The dpst command end to end (subprocesses), bad inputs, Ctrl-C, and image loading edge cases."""
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dpst_ext.image_io import load_image, save_image, to_pil

from common import CMD, ENV, run_cli as run



@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:36, 0:48]
    content = np.stack([x / 48, y / 36, 0.5 + 0 * x], -1) * 255 + rng.normal(0, 5, (36, 48, 3))
    style = np.stack([0.8 + 0 * x, 0.3 + y / 100, x / 60], -1) * 255
    Image.fromarray(np.clip(content, 0, 255).astype(np.uint8)).save(d / "content.png")
    Image.fromarray(np.clip(style, 0, 255).astype(np.uint8)).save(d / "style.jpg")
    mask = np.zeros((36, 48, 3), np.uint8)
    mask[:, 24:] = (0, 0, 255)
    Image.fromarray(mask).save(d / "cmask.png")
    Image.fromarray(mask).save(d / "smask.png")
    Image.fromarray(mask[:20]).save(d / "badmask.png")
    return d


def test_help():
    r = run(["transfer", "--help"])
    assert r.returncode == 0 and "--content-mask" in r.stdout and "--iters" in r.stdout


def test_end_to_end_with_masks(images, tmp_path):
    out = tmp_path / "out.png"
    s1 = tmp_path / "s1.png"
    r = run(["transfer", str(images / "content.png"), str(images / "style.jpg"), "-o", str(out),
             "--content-mask", str(images / "cmask.png"), "--style-mask", str(images / "smask.png"),
             "--size", "32", "--iters", "3,2", "--save-stage1", str(s1), "--refine-posterization"])
    assert r.returncode == 0, r.stderr
    assert "] 3/3 loss" in r.stderr and "stage 2 [####################] 2/2" in r.stderr
    assert "it/s" in r.stderr and "ETA" in r.stderr
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (48, 36) and im.mode == "RGB"  # the content's own size
    assert s1.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temp files


@pytest.mark.parametrize("args,message", [
    (["missing.png", "STYLE", "-o", "OUT"], "content file not found"),
    (["CONTENT", "STYLE", "-o", "OUT", "--content-mask", "CMASK", "--style-mask", "BADMASK"], "must match"),
    (["CONTENT", "STYLE", "-o", "OUT", "--content-mask", "CMASK"], "both content_mask and style_mask"),
    (["CONTENT", "STYLE", "-o", "OUT", "--size", "0"], "positive integer"),
    (["CONTENT", "STYLE", "-o", "OUT", "--iters", "a,b"], "N1,N2"),
    (["CONTENT", "STYLE", "-o", "/nonexistent-dir/x.png"], "output folder does not exist"),
    (["CONTENT", "CMASK.txt", "-o", "OUT"], "style file not found"),
])
def test_bad_inputs_fail_with_one_line(images, tmp_path, args, message):
    sub = {"CONTENT": str(images / "content.png"), "STYLE": str(images / "style.jpg"), "OUT": str(tmp_path / "o.png"),
           "CMASK": str(images / "cmask.png"), "BADMASK": str(images / "badmask.png"), "CMASK.txt": str(tmp_path / "x.txt")}
    extra = [] if "--iters" in args else ["--iters", "1,1"]
    r = run(["transfer"] + [sub.get(a, a) for a in args] + extra)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    if "positive integer" not in message and "N1,N2" not in message:  # argparse adds its usage line
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.png").exists()


def test_bad_image_file(images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = run(["transfer", str(bad), str(images / "style.jpg"), "-o", str(tmp_path / "o.png")])
    assert r.returncode == 2 and "cannot read image" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_writes_best_image_so_far(images, tmp_path):
    out = tmp_path / "out.png"
    p = subprocess.Popen(CMD + ["transfer", str(images / "content.png"), str(images / "style.jpg"), "-o", str(out),
                                "--size", "32", "--iters", "100000,0"],
                         stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline:
        line = p.stderr.readline()
        seen += line
        if line.startswith("stage 1 [") and "] 1/" in line:
            break
    assert "] 1/100000 loss" in seen, seen
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130, err
    assert "best image so far" in err
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (32, 24)
    # The automatic masks (on by default) are written too, for the rerun with repainted masks.
    assert "automatic masks" in err
    for mask in (tmp_path / "out_content_mask.png", tmp_path / "out_style_mask.png"):
        with Image.open(mask) as im:
            assert im.size == (48, 36)


# ---- image loading -------------------------------------------------------------------------------

def test_load_16bit_grayscale_alpha_exif(tmp_path):
    a16 = (np.arange(12 * 10).reshape(10, 12) * 500).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    t = load_image(tmp_path / "g16.png")
    assert t.shape == (3, 10, 12) and torch.allclose(t[0], torch.from_numpy(a16 / 65535.0).float(), atol=1e-6)
    assert torch.equal(t[0], t[2])
    # A dark 16-bit photo (every value under 256) is still 16-bit: scaled by 65535, not taken for 8-bit.
    Image.fromarray((a16 // 500).astype(np.uint16)).save(tmp_path / "dark16.png")
    assert torch.allclose(load_image(tmp_path / "dark16.png")[0], torch.from_numpy(a16 // 500 / 65535.0).float())
    Image.fromarray(np.full((5, 6), 128, np.uint8), "L").save(tmp_path / "g8.png")
    assert torch.allclose(load_image(tmp_path / "g8.png"), torch.full((3, 5, 6), 128 / 255))
    rgba = np.zeros((4, 7, 4), np.uint8)
    rgba[..., 0] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    t = load_image(tmp_path / "a.png")
    assert t.shape == (3, 4, 7) and float(t[0].min()) == 1.0  # alpha dropped, colour kept
    # EXIF orientation 6 (rotate 90 CW): a 4x8 stored image is shown 8x4.
    img = Image.fromarray(np.zeros((4, 8, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (3, 8, 4)


def _matrix_profile(colorants, gamma: float) -> bytes:
    """A minimal ICC v2 RGB display profile: D50 colorants (the columns of linear RGB -> XYZ) and one gamma."""
    def s15(x):
        return struct.pack(">i", round(x * 65536))

    def xyz(v):
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    desc = b"test RGB\0"
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(desc)) + desc + bytes(8 + 3 + 67)),
            (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"cprt", b"text\0\0\0\0none\0")]
    tags += [(sig, xyz(c)) for sig, c in zip((b"rXYZ", b"gXYZ", b"bXYZ"), colorants)]
    tags += [(sig, b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))) for sig in (b"rTRC", b"gTRC", b"bTRC")]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = struct.pack(">I", offset + len(data)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
    header += bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249)
    return header + bytes(128 - len(header)) + struct.pack(">I", len(tags)) + table + data


# Adobe RGB (1998) and sRGB: colorants adapted to D50, as in their ICC profiles.
ADOBE_RGB = np.array([[0.60974, 0.20528, 0.14919], [0.31111, 0.62567, 0.06322], [0.01947, 0.06087, 0.74457]])
SRGB_D50 = np.array([[0.43607, 0.38515, 0.14307], [0.22249, 0.71687, 0.06061], [0.01392, 0.09708, 0.71410]])


def test_a_photo_with_a_colour_profile_is_converted_to_srgb(tmp_path):
    """Adobe RGB values come out as the sRGB values of the same colours (computed here from the two spaces'
    matrices and curves; outside sRGB, clipped), an sRGB profile changes nothing, masks keep their values,
    and a profile that cannot be read is reported and ignored."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(0, 256, (1, 62, 3)), [[[128, 128, 128], [60, 200, 60]]]], axis=1).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "adobe.png", icc_profile=_matrix_profile(ADOBE_RGB.T, 563 / 256))
    lin = np.clip(np.linalg.solve(SRGB_D50, ADOBE_RGB @ ((a[0] / 255.0) ** (563 / 256)).T).T, 0, 1)
    expected = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    got = load_image(tmp_path / "adobe.png")[:, 0].T.numpy()
    assert np.abs(got - expected).max() < 1.0 / 255                  # (measured 0.55 / 255)
    assert np.abs(got - a[0] / 255.0).max() > 30 / 255               # (the conversion is not a no-op)
    raw = load_image(tmp_path / "adobe.png", to_srgb=False)[:, 0].T.numpy()
    assert np.array_equal(raw * 255, a[0])
    rgba = np.concatenate([a, np.full_like(a[..., :1], 200)], axis=2)     # alpha is dropped, the profile kept
    Image.fromarray(rgba, "RGBA").save(tmp_path / "adobe_rgba.png", icc_profile=_matrix_profile(ADOBE_RGB.T, 563 / 256))
    assert torch.equal(load_image(tmp_path / "adobe_rgba.png"), load_image(tmp_path / "adobe.png"))

    from PIL import ImageCms

    from dpst_ext.image_io import ColourProfileWarning
    from dpst_ext.masks import parse_mask

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(a).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert np.abs(load_image(tmp_path / "srgb.png")[:, 0].T.numpy() * 255 - a[0]).max() <= 1
    mask = np.zeros((4, 8, 3), np.uint8)
    mask[:, 4:, 1] = 255                                              # black | green
    Image.fromarray(mask).save(tmp_path / "mask.png", icc_profile=_matrix_profile(ADOBE_RGB.T, 563 / 256))
    Image.fromarray(mask).save(tmp_path / "mask_plain.png")
    assert torch.equal(parse_mask(tmp_path / "mask.png"), parse_mask(tmp_path / "mask_plain.png"))
    Image.fromarray(a).save(tmp_path / "broken.png", icc_profile=b"not a profile")
    with pytest.warns(ColourProfileWarning, match="taken as sRGB"):
        assert np.array_equal(load_image(tmp_path / "broken.png")[:, 0].T.numpy() * 255, a[0])


def test_the_output_keeps_the_content_photos_exif(tmp_path):
    """Camera and date taken go from the content photo to the output (CLI, JPEG and PNG), with the orientation
    set upright (the pixels are), the stored pixel size dropped and the colour space said to be sRGB."""
    from PIL import ExifTags

    from dpst_ext import samples

    photo = to_pil(samples.photo_megapixels(0.02, name="astronaut", dtype=torch.float32))   # stored sideways
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Orientation] = "TestCam", 6
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = "2026:01:02 03:04:05"
    sub[ExifTags.Base.ExifImageWidth], sub[ExifTags.Base.ColorSpace] = photo.width, 0xFFFF
    photo.save(tmp_path / "content.jpg", exif=exif, quality=95)
    save_image(samples.photo_megapixels(0.02, name="coffee", dtype=torch.float32), tmp_path / "style.png")
    for ext in ("jpg", "png"):
        r = run(["transfer", str(tmp_path / "content.jpg"), str(tmp_path / "style.png"),
                 "-o", str(tmp_path / f"o.{ext}"), "--method", "fast", "--no-auto-masks", "-q"])
        assert r.returncode == 0, r.stderr
        with Image.open(tmp_path / f"o.{ext}") as out:
            assert out.size == (photo.height, photo.width)        # upright
            got = out.getexif()
            sub = got.get_ifd(ExifTags.IFD.Exif)
        assert got[ExifTags.Base.Make] == "TestCam" and got[ExifTags.Base.Orientation] == 1
        assert sub[ExifTags.Base.DateTimeOriginal] == "2026:01:02 03:04:05" and sub[ExifTags.Base.ColorSpace] == 1
        assert ExifTags.Base.ExifImageWidth not in sub
    from dpst_ext.image_io import photo_exif

    assert photo_exif(tmp_path / "style.png") is None and photo_exif(tmp_path / "missing.jpg") is None


def test_heic_photos_in_and_out(tmp_path):
    """A HEIC photo (the iPhone's format; pillow-heif, the heif extra) is read like a PNG of the same pixels, its
    colour profile converted to sRGB (its orientation is the container's, applied by libheif); `dpst transfer`
    takes it and writes HEIC too, with the photo's EXIF. Without pillow-heif, the error says what to install."""
    import pillow_heif
    from PIL import ExifTags

    from dpst_ext import samples

    pillow_heif.register_heif_opener()
    photo = to_pil(samples.photo_megapixels(0.02, name="astronaut", dtype=torch.float32)).crop((0, 0, 120, 80))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    adobe = _matrix_profile(ADOBE_RGB.T, 563 / 256)
    lossless = dict(quality=-1, chroma=444, matrix_coefficients=0)               # RGB kept exactly
    photo.save(tmp_path / "content.heic", exif=exif, icc_profile=adobe, **lossless)
    photo.save(tmp_path / "content.png", icc_profile=adobe)
    got = load_image(tmp_path / "content.heic")
    assert torch.equal(got, load_image(tmp_path / "content.png"))               # same pixels, same conversion
    raw = load_image(tmp_path / "content.heic", to_srgb=False)
    assert np.abs(raw.numpy() * 255 - np.asarray(photo).transpose(2, 0, 1)).max() < 1e-3
    assert float((got - raw).abs().max()) > 20 / 255                             # (the profile was applied)

    save_image(samples.photo_megapixels(0.02, name="coffee", dtype=torch.float32), tmp_path / "style.png")
    r = run(["transfer", str(tmp_path / "content.heic"), str(tmp_path / "style.png"), "-o", str(tmp_path / "o.heic"),
             "--method", "fast", "--no-auto-masks", "-q"])
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "o.heic") as out:
        assert out.format == "HEIF" and out.size == (120, 80) and out.getexif()[ExifTags.Base.Make] == "TestCam"

    no_heif = ("import sys; sys.modules['pillow_heif'] = None\n"
               "from dpst_ext.image_io import load_image\n"
               "try:\n    load_image(sys.argv[1])\nexcept ValueError as e:\n    print(e)")
    r = subprocess.run([sys.executable, "-c", no_heif, str(tmp_path / "content.heic")], capture_output=True, text=True)
    assert "is a HEIC/HEIF photo: reading it needs pillow-heif" in r.stdout, (r.stdout, r.stderr)


def test_save_is_atomic_and_follows_extension(tmp_path):
    t = torch.rand(3, 6, 5)
    save_image(t, tmp_path / "x.jpg")
    with Image.open(tmp_path / "x.jpg") as im:
        assert im.format == "JPEG"
    save_image(t, tmp_path / "x.png")
    assert torch.allclose(load_image(tmp_path / "x.png"), t, atol=0.5 / 255 + 1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jpg", "x.png"]


def test_jpeg_and_webp_outputs_are_encoded_for_a_finished_photo(tmp_path):
    """Quality 95, and JPEG without chroma subsampling: a photo comes back closer than with Pillow's defaults
    (quality 75 / 80, JPEG 4:2:0; measured mean error 0.37x theirs for JPEG, 0.63x for WebP, whose lossy mode
    always halves the chroma)."""
    from PIL import JpegImagePlugin

    from dpst_ext import samples

    t = samples.photo_megapixels(0.05, name="astronaut", dtype=torch.float32)
    for ext, bound in (("jpg", 0.5), ("webp", 0.75)):
        save_image(t, tmp_path / f"ours.{ext}")
        to_pil(t).save(tmp_path / f"pillow.{ext}")
        ours, pillow = (float((load_image(tmp_path / f"{n}.{ext}") - t).abs().mean()) for n in ("ours", "pillow"))
        assert ours < bound * pillow, (ext, ours, pillow)
    with Image.open(tmp_path / "ours.jpg") as im:
        assert JpegImagePlugin.get_sampling(im) == 0      # 4:4:4


def test_saved_files_get_the_usual_permissions(tmp_path):
    # Written through a temporary file and a rename, but with the mode a plain open() would give (0666 less
    # the umask), not the 0600 of a private temporary file.
    import os
    import stat

    old = os.umask(0o022)
    try:
        save_image(torch.rand(3, 4, 4), tmp_path / "x.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.png").stat().st_mode) == 0o644


@pytest.mark.parametrize("method,extra", [("fast", []), ("reference", ["--iters", "1,1", "--size", "32"]),
                                          ("default", ["--iters", "0,2", "--size", "32"])])
def test_methods_end_to_end(images, tmp_path, method, extra):
    out = tmp_path / f"{method}.png"
    r = run(["transfer", str(images / "content.png"), str(images / "style.jpg"), "-o", str(out), "--method", method,
             "--content-mask", str(images / "cmask.png"), "--style-mask", str(images / "smask.png"), *extra])
    assert r.returncode == 0, r.stderr
    assert load_image(out).shape == (3, 36, 48)


def test_help_shows_the_recipes():
    r = run(["transfer", "--help"])
    from dpst_ext.options import RECIPES

    assert f"default {RECIPES['default']['size']}" in " ".join(r.stdout.split())


def test_output_format_names_and_extension_case(tmp_path):
    """--format takes png, jpg, jpeg, tif, tiff in any case; an extension in capitals names its format."""
    from dpst_ext.image_io import output_target

    for given, fmt in (("jpg", "JPEG"), ("JPEG", "JPEG"), ("tif", "TIFF"), ("tiff", "TIFF"), ("png", "PNG")):
        assert output_target(tmp_path / "out", format=given)[1] == fmt, given
    assert output_target(tmp_path / "OUT.JPG")[1] == "JPEG"
    assert output_target(tmp_path / "out.Tiff")[1] == "TIFF"
