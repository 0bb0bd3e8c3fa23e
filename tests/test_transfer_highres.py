"""Full-resolution output of `dpst transfer` / run_transfer (dpst_ext.engine.highres wired in): the content's
own size by default, --max-output, --smoothing, the memory plan refusing before any optimisation, Ctrl-C
during the full-size step, and affine exactness through the whole command."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dpst_ext import samples
from dpst_ext.engine.memory import InsufficientMemoryError
from dpst_ext.engine.upsample import affine_upsample
from dpst_ext.image_io import load_image, resize_long_side
from dpst_ext.transfer import HighresProgress, TransferInterrupted, run_transfer

from common import CMD, ENV, run_cli as run

transfer_mod = sys.modules["dpst_ext.transfer"]   # the package's `transfer` attribute is the function



@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    for name, side in (("coffee", 96), ("chelsea", 64)):
        a = (samples.photo(name, side, torch.float32) * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(a).save(d / f"{name}.png")
    big = (samples.photo("coffee", 480, torch.float32) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(big).save(d / "big.png")
    return d


def size_of(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_full_size_is_the_default_and_working_size_on_request(images, tmp_path):
    out, work = tmp_path / "out.png", tmp_path / "work.png"
    r = run(["transfer", str(images / "coffee.png"), str(images / "chelsea.png"), "-o", str(out),
             "--size", "32", "--iters", "2,1", "--init", "content", "--smoothing", "fast"])
    assert r.returncode == 0, r.stderr
    assert size_of(out) == (96, 64)
    assert "full size 96x64: upsampled" in r.stderr and "smoothing CG iteration" in r.stderr
    assert "full size from 32x21" in r.stderr and "CG iterations" in r.stderr
    r = run(["transfer", str(images / "coffee.png"), str(images / "chelsea.png"), "-o", str(work),
             "--size", "32", "--iters", "2,1", "--init", "content", "--output-size", "working"])
    assert r.returncode == 0, r.stderr
    assert size_of(work) == (32, 21) and "full size" not in r.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_max_output_caps_the_long_side_with_exact_smoothing(images, tmp_path):
    out = tmp_path / "out.jpg"
    r = run(["transfer", str(images / "coffee.png"), str(images / "chelsea.png"), "-o", str(out),
             "--size", "32", "--iters", "1,1", "--max-output", "60", "--smoothing", "exact"])
    assert r.returncode == 0, r.stderr
    assert size_of(out) == (60, 40)


@pytest.mark.parametrize("args,message", [
    (["--smoothing", "medium"], "argument --smoothing: invalid choice: 'medium'"),
    (["--output-size", "huge"], "argument --output-size: invalid choice: 'huge'"),
    (["--max-output", "0"], "argument --max-output: must be a positive integer"),
    (["--max-memory", "-1"], "argument --max-memory: must be a positive number of GiB"),
])
def test_bad_output_options_fail_with_one_message(images, tmp_path, args, message):
    r = run(["transfer", str(images / "coffee.png"), str(images / "chelsea.png"), "-o", str(tmp_path / "o.png")]
            + args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # argparse prints its usage line, then one error line.
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("dpst transfer: error: ") and message in last, r.stderr
    assert not (tmp_path / "o.png").exists()


def test_memory_plan_refuses_before_any_optimisation(images, tmp_path):
    out = tmp_path / "o.png"
    # 0.35 GiB: above the interpreter's baseline (0.342 GiB), below the 480x320 stage's estimate (0.359 GiB).
    r = run(["transfer", str(images / "big.png"), str(images / "chelsea.png"), "-o", str(out),
             "--size", "32", "--iters", "5,5", "--max-memory", "0.35", "--smoothing", "fast"])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to start" in lines[0] and "480x320" in lines[0], r.stderr
    assert "GiB available" in lines[0] and "--max-output" in lines[0] and "--smoothing off" in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_plan_runs_before_the_network_is_built(monkeypatch):
    content, style = samples.photo("coffee", 96, torch.float32), samples.photo("chelsea", 64, torch.float32)

    def no_vgg(*a, **k):
        raise AssertionError("the VGG was built before the memory plan refused")

    monkeypatch.setattr(transfer_mod, "VGG19Features", no_vgg)
    with pytest.raises(InsufficientMemoryError, match="refusing to start"):
        run_transfer(content, style, size=32, iters=(1, 1), memory_budget=1)
    # The working-size output needs no plan (and so reaches the network).
    with pytest.raises(AssertionError, match="before the memory plan"):
        run_transfer(content, style, size=32, iters=(1, 1), memory_budget=1, output_size="working")


def test_api_keeps_the_working_image_and_caps_the_working_size():
    content, style = samples.photo("coffee", 96, torch.float32), samples.photo("chelsea", 64, torch.float32)
    seen = []
    res = run_transfer(content, style, size=32, iters=(1, 1), smoothing="fast",
                       callback=lambda p: seen.append(p.step) if isinstance(p, HighresProgress) else None)
    assert res.image.shape == (3, 64, 96) and res.working.shape == (3, 21, 32) and res.raw.shape == (3, 21, 32)
    assert seen[0] == "start" and seen[1] == "upsample" and "smooth" in seen and seen[-1] == "done"
    assert res.highres["smooth_iterations"] > 0 and res.timings["smoothing"] > 0
    # A working size above the output's is capped to it: nothing to upscale.
    res = run_transfer(content, style, size=200, iters=(1, 0), max_output=48)
    assert res.image.shape == (3, 32, 48) and res.working is res.image and res.highres == {}
    with pytest.raises(ValueError, match="smoothing must be"):
        run_transfer(content, style, smoothing="medium")
    with pytest.raises(ValueError, match="output_size must be"):
        run_transfer(content, style, output_size="big")


@pytest.mark.parametrize("at", ["start", "smooth"])
def test_interrupt_in_the_full_size_step_returns_a_full_size_image(at):
    content, style = samples.photo("coffee", 96, torch.float32), samples.photo("chelsea", 64, torch.float32)

    def stop(p):
        if isinstance(p, HighresProgress) and p.step == at and (at != "smooth" or p.iteration == 2):
            raise KeyboardInterrupt

    with pytest.raises(TransferInterrupted) as e:
        run_transfer(content, style, size=32, iters=(1, 1), seed=3, callback=stop, method="reference")
    assert e.value.stage == "highres" and e.value.image.shape == (3, 64, 96)
    ref = run_transfer(content, style, size=32, iters=(1, 1), seed=3, smoothing="off", method="reference")
    if at == "smooth":  # the upsampling without smoothing, exactly
        assert e.value.iteration == 2
        assert torch.equal(e.value.image, ref.image)
    else:               # interrupted before the upsampling finished: bicubic of the working result
        assert e.value.iteration == 0 and not torch.equal(e.value.image, ref.image)
        assert (e.value.image - ref.image).abs().mean() < 0.05


def test_ctrl_c_during_smoothing_writes_the_full_size_image(images, tmp_path):
    out = tmp_path / "out.png"
    p = subprocess.Popen(CMD + ["transfer", str(images / "big.png"), str(images / "chelsea.png"), "-o", str(out),
                                "--size", "32", "--iters", "1,0", "--smoothing", "exact"],
                         stderr=subprocess.PIPE, text=True, env=ENV)
    deadline, seen = time.time() + 120, ""
    while time.time() < deadline:
        line = p.stderr.readline()
        seen += line
        if "smoothing CG iteration" in line or not line:
            break
    assert "smoothing CG iteration" in seen, seen
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130, seen + err
    assert "during the full-size step" in err and "upsampled without smoothing" in err
    assert size_of(out) == (480, 320)
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]


def test_identity_recolouring_comes_out_as_the_full_content(images, tmp_path):
    """No iterations from the content: the working result is the working content (an affine recolouring,
    the identity), so the full-size output must be the full content itself, through the whole command."""
    out = tmp_path / "out.png"
    r = run(["transfer", str(images / "coffee.png"), str(images / "chelsea.png"), "-o", str(out), "--size", "32",
             "--iters", "0,0", "--init", "content", "--no-local-affine", "--smoothing", "off"])
    assert r.returncode == 0, r.stderr
    got, want = load_image(out), load_image(images / "coffee.png")
    assert got.shape == want.shape
    # 8-bit output: at most one level of rounding (the working result carries 1e-4 noise in Caffe space).
    assert (got - want).abs().max().item() <= 1.01 / 255


def test_general_affine_recolouring_through_the_full_size_step(monkeypatch):
    """A working result that is a (non-identity) affine recolouring of the working content comes out as that
    recolouring of the full content (smoothing off): run_transfer with the optimisation replaced."""
    # Rows of non-negative weights summing to 0.8, + 0.1: values stay inside 0..1 (the stage clamps).
    a = 0.8 * torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7]])
    b = torch.tensor([0.1, 0.1, 0.1])
    recolour = lambda img: (torch.einsum("ij,jhw->ihw", a, img) + b[:, None, None])  # noqa: E731
    content = samples.photo("coffee", 120, torch.float32)
    monkeypatch.setattr(transfer_mod, "smooth_local_affine",
                        lambda content_dev, rgb, *args: recolour(content_dev))
    res = run_transfer(content, samples.photo("chelsea", 64, torch.float32), size=40, iters=(0, 0),
                       smoothing="off", method="reference")
    assert res.image.shape == content.shape
    assert (res.working - recolour(resize_long_side(content, 40))).abs().max().item() <= 1e-6
    expected = recolour(content).clamp(0, 1)
    assert (res.image - expected).abs().max().item() <= 1e-5
    # ... which is also what affine_upsample gives on its own.
    assert torch.allclose(res.image, affine_upsample(content, resize_long_side(content, 40), res.working).clamp(0, 1),
                          atol=1e-6)
