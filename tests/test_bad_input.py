"""The catalogue of unusual input: every case is a clear error before any work (exit status 2, one line
naming the argument and the rule, nothing written) or a correct result (with a warning where something
was dropped). The command-line cases run in this process (``cli.main``) so that the catalogue stays fast;
the signal cases run the command in a child process.

``python tests/test_bad_input.py`` prints how each case ends (clear error / correct / traceback / silent /
unclear) without asserting, for a before-and-after count.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import CMD, ENV  # noqa: E402

import dpst_ext  # noqa: E402
from dpst_ext import cli  # noqa: E402
from dpst_ext.engine import MattingLaplacian  # noqa: E402
from dpst_ext.image_io import load_image  # noqa: E402

FAST = ["--method", "fast", "--no-auto-masks"]


# ---- files the cases use -------------------------------------------------------------------------

def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x / max(w, 1), y / max(h, 1), 0.5 + 0 * x], -1) * 200 + rng.normal(0, 8, (h, w, 3)) + 20
    return np.clip(a, 0, 255).astype(np.uint8)


def make_files(d: Path) -> dict[str, str]:
    """Every input file a case names, by placeholder."""
    f = {}

    def img(name, array, **save):
        Image.fromarray(array).save(d / name, **save)
        f[name] = str(d / name)

    img("content.png", _photo(36, 48))
    img("style.jpg", _photo(40, 30, seed=1)[..., ::-1].copy())
    for h, w in [(1, 1), (8, 8), (1, 50), (50, 1), (300, 40), (12, 200)]:
        img(f"c{h}x{w}.png", _photo(h, w))
    img("s40x300.png", _photo(40, 300, seed=2))
    img("gray16.png", (np.linspace(0, 65535, 36 * 48).reshape(36, 48)).astype(np.uint16))
    img("rgba.png", np.dstack([_photo(36, 48), np.full((36, 48), 128, np.uint8)]))
    img("cmyk.jpg", _photo(36, 48), )
    Image.open(d / "cmyk.jpg").convert("CMYK").save(d / "cmyk.jpg")
    mask = np.zeros((36, 48, 3), np.uint8)
    mask[:, 24:] = (0, 0, 255)
    img("cmask.png", mask)
    smask = np.zeros((40, 30, 3), np.uint8)
    smask[20:] = (0, 0, 255)
    img("smask.png", smask)
    half = mask.copy()
    half[:18] = (40, 160, 90)                    # half the mask painted off the palette
    img("halfmask.png", half)
    img("offmask.png", np.full((36, 48, 3), (40, 160, 90), np.uint8))
    img("smallmask.png", mask[:20])
    (d / "notimage.png").write_bytes(b"this is not an image")
    f["notimage.png"] = str(d / "notimage.png")
    (d / "empty.jpg").write_bytes(b"")
    f["empty.jpg"] = str(d / "empty.jpg")
    (d / "truncated.png").write_bytes((d / "content.png").read_bytes()[:200])
    f["truncated.png"] = str(d / "truncated.png")
    (d / "adir").mkdir()
    f["adir"] = str(d / "adir")
    (d / "raises.py").write_text("def seg(image):\n    raise RuntimeError('model file missing')\n")
    f["raises.py"] = str(d / "raises.py")
    (d / "badshape.py").write_text("import numpy as np\ndef seg(image):\n    return np.zeros((3, 3), np.int64)\n")
    f["badshape.py"] = str(d / "badshape.py")
    return f


# ---- the cases -----------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    argv: list | None = None              # a dpst command line (placeholders: file names, OUT, OUTDIR)
    api: Callable | None = None           # or a Python call, given the files dict and the output folder
    error: str | None = None              # the expected message fragment (an error: exit 2 / an exception)
    warning: str | None = None            # a correct result that warns with this fragment
    check: Callable | None = None         # a correct result: check(output path or returned value)
    setup: Callable | None = None         # prepares the output folder (gets it and the files dict)
    exc: type = ValueError                # the API error's type
    out: str = "out.png"
    tags: set = field(default_factory=set)


def _size(w, h):
    def check(path):
        with Image.open(path) as im:
            assert im.size == (w, h), im.size
            a = np.asarray(im.convert("RGB"), np.float64)
        assert 5 < a.mean() < 250, a.mean()      # neither black nor white
    return check


def _symlink(outdir, files):
    target = outdir / "real.png"
    target.write_bytes(b"old")
    (outdir / "out.png").symlink_to(target)


def _link_written_through(path):
    path = Path(path)
    assert path.is_symlink(), "the link was replaced"
    _size(48, 36)(path.resolve())


def _readonly(outdir, files):
    (outdir / "ro").mkdir()
    os.chmod(outdir / "ro", stat.S_IRUSR | stat.S_IXUSR)


def _readonly_path():   # root ignores permission bits: /proc refuses new files to everybody
    return "/proc/out.png" if os.geteuid() == 0 else "OUTDIR/ro/out.png"


def _bright(files, outdir):
    c = torch.rand(3, 24, 32) * 255
    return dpst_ext.transfer(c, files["style.jpg"], method="fast", auto_masks=False)


def _centred(files, outdir):
    return dpst_ext.transfer(torch.rand(3, 24, 32) - 0.5, files["style.jpg"], method="fast", auto_masks=False)


def _overshoot(files, outdir):   # resampling overshoot of a few 1e-3 is not an error
    c = (torch.rand(3, 24, 32) * 1.004 - 0.002)
    return dpst_ext.transfer(c, files["style.jpg"], method="fast", auto_masks=False, return_tensor=True)


def _in_unit_range(t):
    assert t.shape == (3, 24, 32) and float(t.min()) >= 0 and float(t.max()) <= 1


CASES = [
    # -- input files
    Case("content missing", ["transfer", "missing.png", "style.jpg", "-o", "OUT"], error="content file not found"),
    Case("style missing", ["transfer", "content.png", "missing.jpg", "-o", "OUT"], error="style file not found"),
    Case("content is a directory", ["transfer", "adir", "style.jpg", "-o", "OUT"], error="is a directory"),
    Case("content not an image", ["transfer", "notimage.png", "style.jpg", "-o", "OUT"], error="cannot read image"),
    Case("content empty file", ["transfer", "empty.jpg", "style.jpg", "-o", "OUT"], error="cannot read image"),
    Case("content truncated", ["transfer", "truncated.png", "style.jpg", "-o", "OUT"], error="cannot read image"),
    Case("mask missing", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--content-mask", "nomask.png",
                          "--style-mask", "smask.png"], error="content mask file not found"),
    Case("mask not an image", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--content-mask", "notimage.png",
                               "--style-mask", "smask.png"], error="cannot read image"),
    Case("vgg weights missing", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--vgg-weights", "w.pth"],
         error="vgg weights file not found"),
    # -- image sizes
    Case("content 1x1", ["transfer", "c1x1.png", "style.jpg", "-o", "OUT"] + FAST, error="at least 16 px"),
    Case("content 8x8", ["transfer", "c8x8.png", "style.jpg", "-o", "OUT"] + FAST, error="at least 16 px"),
    Case("content 1x50", ["transfer", "c1x50.png", "style.jpg", "-o", "OUT"] + FAST, error="at least 16 px"),
    Case("content 50x1", ["transfer", "c50x1.png", "style.jpg", "-o", "OUT"] + FAST, error="at least 16 px"),
    Case("content 12x200", ["transfer", "c12x200.png", "style.jpg", "-o", "OUT"] + FAST, error="at least 16 px"),
    Case("content 300x40 default size", ["transfer", "c300x40.png", "style.jpg", "-o", "OUT"] + FAST,
         check=_size(40, 300)),
    Case("content 300x40 at --size 64", ["transfer", "c300x40.png", "style.jpg", "-o", "OUT", "--size", "64"] + FAST,
         error="at least 16 px"),
    Case("style 1x50", ["transfer", "content.png", "c1x50.png", "-o", "OUT"] + FAST, error="at least 16 px"),
    Case("style 40x300 at --size 64", ["transfer", "content.png", "s40x300.png", "-o", "OUT", "--size", "64"] + FAST,
         error="at least 16 px"),
    Case("--max-output 20", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--max-output", "20"] + FAST,
         error="at least 16 px"),
    Case("--size 8", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--size", "8"] + FAST,
         error="at least 16 px"),
    Case("16-bit grey content", ["transfer", "gray16.png", "style.jpg", "-o", "OUT"] + FAST, check=_size(48, 36)),
    Case("RGBA content", ["transfer", "rgba.png", "style.jpg", "-o", "OUT"] + FAST, check=_size(48, 36)),
    Case("CMYK JPEG content", ["transfer", "cmyk.jpg", "style.jpg", "-o", "OUT"] + FAST, check=_size(48, 36)),
    # -- masks
    Case("mask half off the palette", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--method", "fast",
                                       "--content-mask", "halfmask.png", "--style-mask", "smask.png"],
         warning="match no palette colour", check=_size(48, 36)),
    Case("mask all off the palette", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--method", "fast",
                                      "--content-mask", "offmask.png", "--style-mask", "smask.png"],
         error="palette colours are"),
    Case("mask of another size", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--content-mask",
                                  "smallmask.png", "--style-mask", "smask.png"] + FAST[:2], error="must match"),
    Case("one mask only", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--content-mask", "cmask.png"],
         error="both content_mask and style_mask"),
    # -- outputs
    Case("output folder missing", ["transfer", "content.png", "style.jpg", "-o", "OUTDIR/nope/out.png"] + FAST,
         error="output folder does not exist"),
    Case("output is a directory", ["transfer", "content.png", "style.jpg", "-o", "adir"] + FAST,
         error="is a directory"),
    Case("output in a read-only folder", ["transfer", "content.png", "style.jpg", "-o", _readonly_path()] + FAST,
         setup=_readonly, error="not writable"),
    Case("output format Pillow cannot write", ["transfer", "content.png", "style.jpg", "-o", "OUTDIR/r.psd"] + FAST,
         error="cannot write"),
    Case("output extension unknown", ["transfer", "content.png", "style.jpg", "-o", "OUTDIR/r.xyz"] + FAST,
         error="unknown image extension"),
    Case("output without extension", ["transfer", "content.png", "style.jpg", "-o", "OUTDIR/result"] + FAST,
         error="unknown image extension"),
    Case("--format for an unknown extension", ["transfer", "content.png", "style.jpg", "-o", "OUTDIR/r.img",
                                               "--format", "png"] + FAST, out="r.img", check=_size(48, 36)),
    Case("output is the content photo", ["transfer", "content.png", "style.jpg", "-o", "content.png"] + FAST,
         error="would overwrite"),
    Case("output is a pipe", ["transfer", "content.png", "style.jpg", "-o", "OUTDIR/pipe.png"] + FAST,
         setup=lambda outdir, files: os.mkfifo(outdir / "pipe.png"), error="not a regular file"),
    Case("output is a device", ["transfer", "content.png", "style.jpg", "-o", "/dev/zero"] + FAST,
         error="not a regular file"),
    Case("output is a symlink", ["transfer", "content.png", "style.jpg", "-o", "OUT"] + FAST, setup=_symlink,
         check=_link_written_through),
    Case("masks: output is a directory", ["masks", "content.png", "style.jpg", "-o", "adir"], error="is a directory"),
    Case("masks: output folder missing", ["masks", "content.png", "style.jpg", "-o", "OUTDIR/nope/o.png"],
         error="output folder does not exist"),
    # -- options
    Case("photoreal weight nan", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--photoreal-weight", "nan"],
         error="finite"),
    Case("photoreal weight inf", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--photoreal-weight", "inf"],
         error="finite"),
    Case("content weight nan", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--content-weight", "nan"],
         error="finite"),
    Case("negative style weight", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--style-weight", "-1"],
         error="non-negative"),
    Case("--stage1-size above --size", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--size", "32",
                                        "--stage1-size", "64", "--iters", "1,1"], error="stage1"),
    Case("--iters -1,2", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--iters", "-1,2"],
         error="non-negative"),
    Case("--iters 1,2,3", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--iters", "1,2,3"], error="N1,N2"),
    Case("--size 0", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--size", "0"], error="positive integer"),
    Case("--local-affine-every -5", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--local-affine-every", "-5"],
         error="non-negative"),
    Case("--max-memory 0", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--max-memory", "0"],
         error="positive number"),
    Case("unknown --method", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--method", "best"],
         error="invalid choice"),
    Case("segmenter raises", ["transfer", "content.png", "style.jpg", "-o", "OUT", "--method", "fast",
                              "--segmenter", "raises.py:seg"], error="model file missing"),
    Case("segmenter returns a wrong shape", ["masks", "content.png", "style.jpg", "-o", "OUT",
                                             "--segmenter", "badshape.py:seg"], error="must have the image's shape"),
    Case("segmenter file missing", ["masks", "content.png", "style.jpg", "-o", "OUT", "--segmenter", "no.py:seg"],
         error="--segmenter file not found"),
    # -- the Python API
    Case("API: float image in 0..255", api=_bright, error="values up to"),
    Case("API: image in -0.5..0.5", api=_centred, error="values down to"),
    Case("API: int64 tensor", api=lambda f, o: load_image(torch.randint(0, 256, (3, 8, 8))), error="int64"),
    Case("API: numpy float 0..255", api=lambda f, o: load_image(np.full((8, 8, 3), 200.0)), error="values up to"),
    Case("API: overshoot of 0.002 is clipped", api=_overshoot, check=_in_unit_range),
    Case("API: NaN in the image", api=lambda f, o: load_image(torch.full((3, 4, 4), math.nan)), error="NaN"),
    Case("API: complex v in L @ v", api=lambda f, o: MattingLaplacian(torch.rand(3, 8, 8)) @ torch.ones(
        3, 8, 8, dtype=torch.complex64), error="complex", exc=TypeError),
    Case("API: negative weight", api=lambda f, o: dpst_ext.transfer(f["content.png"], f["style.jpg"],
                                                                     weights={"photoreal": -1.0}),
         error="non-negative"),
    Case("API: unknown option", api=lambda f, o: dpst_ext.transfer(f["content.png"], f["style.jpg"], sise=64),
         error="unknown option", exc=TypeError),
]


# ---- running a case ------------------------------------------------------------------------------

def _resolve(argv, files, outdir, out):
    def sub(a):
        if a == "OUT":
            return str(outdir / out)
        if a.startswith("OUTDIR/"):
            return str(outdir / a[len("OUTDIR/"):])
        if a in files:
            return files[a]
        if a.endswith((".png", ".jpg", ".py", ".pth")) and "/" not in a:
            return str(outdir.parent / a)           # a file that does not exist
        if ":" in a and a.split(":")[0] in files:   # --segmenter FILE.py:function
            return files[a.split(":")[0]] + ":" + a.split(":")[1]
        return a
    return [sub(a) for a in argv]


def _listing(*folders):
    return {p: p.stat().st_mtime_ns for d in folders for p in Path(d).rglob("*")}


def run_case(case: Case, files: dict, outdir: Path) -> tuple[str, str]:
    """(how it ended, what it said): 'clear', 'correct', 'traceback', 'silent' or 'unclear'."""
    if case.setup:
        case.setup(outdir, files)
    before = _listing(outdir, Path(files["content.png"]).parent)
    said = ""
    if case.api is not None:
        try:
            value = case.api(files, outdir)
        except case.exc as e:
            said = str(e)
            ok = case.error is not None and case.error in said and "\n" not in said.strip()
            return ("clear" if ok else "unclear"), said
        except Exception as e:  # noqa: BLE001 - the catalogue classifies, the test asserts
            return "traceback", f"{type(e).__name__}: {e}"
        if case.error is not None:
            return "silent", "returned a result"
        try:
            case.check(value)
        except AssertionError as e:
            return "silent", f"wrong result: {e}"
        return "correct", ""
    argv = _resolve(case.argv, files, outdir, case.out)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # noqa: BLE001
        return "traceback", f"{type(e).__name__}: {e}"
    said = stderr.getvalue()
    lines = [ln for ln in said.strip().splitlines() if ln]
    if case.error is not None:
        if code == 0:
            return "silent", said
        new = set(_listing(outdir, Path(files["content.png"]).parent)) - set(before)
        ok = (code == 2 and len(lines) == 1 and case.error in lines[0] and "Traceback" not in said and not new)
        return ("clear" if ok else "unclear"), said
    if code != 0:
        return "unclear", said
    if case.warning is not None and case.warning not in said:
        return "silent", said
    try:
        case.check(outdir / case.out)
    except (AssertionError, OSError) as e:
        return "silent", f"wrong result: {e}"
    return "correct", said


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(autouse=True)
def _restore_warnings_and_threads():
    import warnings

    show, threads = warnings.showwarning, torch.get_num_threads()
    torch.set_num_threads(1)     # tiny images: one thread is fastest, and robust to a busy machine
    yield
    warnings.showwarning = show
    torch.set_num_threads(threads)


def test_catalogue_has_at_least_40_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, files, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    ended, said = run_case(case, files, outdir)
    assert ended == ("clear" if case.error else "correct"), said
    assert not [p for p in outdir.rglob("*.tmp")], "a temporary file was left"


# ---- signals (child processes) -------------------------------------------------------------------

def _start(files, out, extra=()):
    return subprocess.Popen(CMD + ["transfer", files["content.png"], files["style.jpg"], "-o", str(out),
                                   "--size", "32", "--iters", "100000,0", "--no-auto-masks", *extra],
                            stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for_iterations(p):
    deadline, seen = time.time() + 120, ""
    while time.time() < deadline:
        line = p.stderr.readline()
        seen += line
        done = re.search(r"\] (\d+)/", line) if line.startswith("stage 1 [") else None
        if done and int(done.group(1)) >= 2:
            return seen
    raise AssertionError(seen)


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_keeps_the_best_image(files, tmp_path, sig, status):
    out = tmp_path / "out.png"
    p = _start(files, out)
    _wait_for_iterations(p)
    p.send_signal(sig)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == status, err
    assert "best image so far" in err and "Traceback" not in err
    with Image.open(out) as im:
        assert im.size == (32, 24)
    assert not list(tmp_path.glob(".*.tmp"))


def test_signal_during_the_final_write_still_writes(files, tmp_path, monkeypatch):
    """A SIGTERM that arrives while the output is being written: the write completes (signals are held
    during it), then the command exits with the signal's status. In this process, with Pillow's save
    patched to send the signal from inside the write."""
    save = Image.Image.save

    def save_with_signal(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_with_signal)
    out = tmp_path / "out.png"
    handler = signal.getsignal(signal.SIGTERM)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.main(["transfer", files["content.png"], files["style.jpg"], "-o", str(out)] + FAST)
    assert code == 143, stderr.getvalue()
    assert "written in full" in stderr.getvalue()
    assert signal.getsignal(signal.SIGTERM) is handler        # the command's handlers are undone
    monkeypatch.undo()
    with Image.open(out) as im:
        assert im.size == (48, 36)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_write_that_fails_midway_keeps_the_old_output_and_leaves_nothing(tmp_path, monkeypatch):
    """The encoder fails after writing part of the file (a full disk): the error reaches the caller, the
    output written before is untouched and no temporary file is left beside it."""
    from dpst_ext.image_io import save_image

    out = tmp_path / "out.png"
    save_image(torch.zeros(3, 8, 8), out)
    before = out.read_bytes()

    def save_then_fail(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_image(torch.ones(3, 8, 8), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


if __name__ == "__main__":   # the before-and-after count
    import tempfile
    from collections import Counter

    root = Path(tempfile.mkdtemp())
    (root / "inputs").mkdir()
    fs = make_files(root / "inputs")
    counts = Counter()
    for i, c in enumerate(CASES):
        od = root / f"out{i}"
        od.mkdir()
        ended, text = run_case(c, fs, od)
        counts[ended] += 1
        print(f"{ended:9s} {c.id}: {text.strip().splitlines()[-1] if text.strip() else ''}"[:200])
    print(dict(counts))

