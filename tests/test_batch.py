"""dpst batch on a local Ray (one Ray for the module, 2 CPUs): folder and manifest inputs, the outputs equal
to single transfers, resume and what re-does an item, bad items reported while the rest are done, a worker
killed mid-item retried, and the checks made before any work. Tiny photos with --method fast and one label
(about a second an item)."""
import csv
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("ray")
pytest.importorskip("tqdm")

from dpst_ext.batch import STATE_NAME, SUMMARY_NAME, batch  # noqa: E402
from dpst_ext.ray_workers import plan_workers, start_ray  # noqa: E402
from dpst_ext.cli import main  # noqa: E402
from dpst_ext.image_io import photo_exif, save_image, to_pil  # noqa: E402
from dpst_ext.samples import photo  # noqa: E402
from dpst_ext.transfer import run_transfer  # noqa: E402

from common import CMD, ENV  # noqa: E402

FAST = ["--method", "fast", "--no-auto-masks", "-q"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    assert start_ray(None, 2, verbose=False)   # the batch's own start-up of a local Ray, once for the module
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    (d / "in").mkdir()
    for name in ("astronaut", "coffee", "rocket"):
        save_image(photo(name, 56), d / "in" / f"{name}.png")
    save_image(photo("chelsea", 48), d / "style.jpg")
    mask = np.zeros((37, 56, 3), np.uint8)          # coffee at 56 px is 56x37: two labels, left and right
    mask[:, 28:] = (0, 0, 255)
    Image.fromarray(mask).save(d / "cmask.png")
    smask = np.zeros((32, 48, 3), np.uint8)
    smask[:, 24:] = (0, 0, 255)
    Image.fromarray(smask).save(d / "smask.png")
    Image.fromarray(smask[:10]).save(d / "badmask.png")   # not the style's shape: fails in the worker
    return d


def _summary(folder):
    return json.loads((folder / SUMMARY_NAME).read_text())


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.suffix in (".png", ".jpg")}


def test_folder_batch_equals_single_transfers_and_resumes(photos, tmp_path):
    inputs = photos / "in"
    (tmp_path / "in").mkdir()
    for p in inputs.iterdir():
        (tmp_path / "in" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG not really")    # a corrupt item among good ones
    exif = Image.Exif()
    exif[0x010F] = "TestCam"                                                # Make: outputs keep their photo's EXIF
    Image.open(inputs / "astronaut.png").save(tmp_path / "in" / "astronaut.png", exif=exif)
    out = tmp_path / "out"
    argv = ["batch", str(tmp_path / "in"), "--style", str(photos / "style.jpg"), "-o", str(out), "--format", "jpg",
            "--name", "{stem}_in_{style}", *FAST]
    assert main(argv) == 1                       # one item failed: non-zero, the others done
    s = _summary(out)
    assert s["total"] == 4 and len(s["done"]) == 3 and not s["skipped"] and s["workers"] == 2
    assert len(s["failed"]) == 1 and "broken.png cannot be read as an image" in s["failed"][0]["reason"]
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "dpst")))
    assert names == ["astronaut_in_style.jpg", "coffee_in_style.jpg", "rocket_in_style.jpg"]
    torch.set_num_threads(1)    # as the workers
    for name in ("astronaut", "coffee", "rocket"):
        single = run_transfer(inputs / f"{name}.png", photos / "style.jpg", method="fast", auto_masks=False)
        with Image.open(out / f"{name}_in_style.jpg") as im:
            assert im.format == "JPEG" and im.size == to_pil(single.image).size
        # The same image as a single transfer: written through the same JPEG encoder, byte for byte.
        save_image(single.image, tmp_path / "single.jpg", exif=photo_exif(tmp_path / "in" / f"{name}.png"))
        assert (tmp_path / "single.jpg").read_bytes() == (out / f"{name}_in_style.jpg").read_bytes(), name
        with Image.open(out / f"{name}_in_style.jpg") as im:
            assert im.getexif().get(0x010F) == ("TestCam" if name == "astronaut" else None)
    before = _mtimes(out)
    before_bytes = (out / "rocket_in_style.jpg").read_bytes()

    # Rerun: everything done is skipped (no output rewritten); the broken item fails again.
    assert main(argv) == 1
    s = _summary(out)
    assert len(s["skipped"]) == 3 and not s["done"] and len(s["failed"]) == 1
    assert _mtimes(out) == before
    # A deleted output and one changed since the batch wrote it are redone, alone (a changed option:
    # test_manifest_csv_per_item_options_and_bad_items).
    (tmp_path / "in" / "broken.png").unlink()
    (out / "coffee_in_style.jpg").unlink()
    rocket = out / "rocket_in_style.jpg"
    rocket.write_bytes(rocket.read_bytes()[:-100])
    assert main(argv) == 0
    assert sorted(d["output"] for d in _summary(out)["done"]) == [str(out / "coffee_in_style.jpg"), str(rocket)]
    assert rocket.read_bytes() == before_bytes
    assert not list(out.glob(".*.tmp"))      # atomic writes leave no temporary file


def test_manifest_csv_per_item_options_and_bad_items(photos, tmp_path):
    m = tmp_path / "items.csv"
    rows = [dict(content=str(photos / "in/astronaut.png"), style=str(photos / "style.jpg"), output="a.png",
                 size="32", seed="", **{"output-size": "working"}),
            dict(content=str(photos / "in/coffee.png"), style=str(photos / "style.jpg"), output="sub/c.png",
                 size="", seed="1", **{"output-size": ""}),
            dict(content=str(photos / "in/missing.png"), style=str(photos / "style.jpg"), output="m.png",
                 size="", seed="", **{"output-size": ""}),
            dict(content=str(photos / "in/rocket.png"), style=str(photos / "style.jpg"), output="r.png",
                 size="abc", seed="", **{"output-size": ""})]

    def write(rows):
        with open(m, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    write(rows)
    out = tmp_path / "out"
    s = batch(manifest=m, output_dir=out, method="fast", auto_masks=False, quiet=True)
    assert not s.ok and len(s.done) == 2 and len(s.failed) == 2
    reasons = sorted(f["reason"] for f in s.failed)
    assert reasons[0].startswith("line 4 of items.csv: content photo not found")
    assert reasons[1].startswith("line 5 of items.csv: argument --size: must be a positive integer")
    with Image.open(out / "a.png") as a, Image.open(out / "sub" / "c.png") as c:
        assert a.size == (32, 32) and c.size == (56, 37)   # the row's size and output size, or the content's
    # Only the row whose option changed is redone.
    rows[1]["seed"] = "2"
    write(rows[:2])
    s = batch(manifest=m, output_dir=out, method="fast", auto_masks=False, quiet=True)
    assert s.ok and [d["output"] for d in s.done] == [str(out / "sub" / "c.png")]
    assert [d["output"] for d in s.skipped] == [str(out / "a.png")]


def test_manifest_jsonl_masks_and_a_bad_mask(photos, tmp_path):
    m = tmp_path / "items.jsonl"
    good = {"content": "in/coffee.png", "style": "style.jpg", "content_mask": "cmask.png", "style_mask": "smask.png",
            "output": "masked.png", "options": {"method": "fast", "no-local-affine": True}}
    bad = dict(good, style_mask="badmask.png", output="bad.png")
    one_mask = dict(good, style_mask=None, output="one.png")
    m.write_text("\n".join(json.dumps(r) for r in (good, bad, one_mask)) + "\n")
    # Paths are relative to the manifest's folder: copy it beside the photos.
    (photos / "items.jsonl").write_text(m.read_text())
    out = tmp_path / "out"
    assert main(["batch", "--manifest", str(photos / "items.jsonl"), "-o", str(out), "-q",
                 "--summary", str(tmp_path / "s.json")]) == 1
    s = json.loads((tmp_path / "s.json").read_text())
    assert [d["output"] for d in s["done"]] == [str(out / "masked.png")]
    reasons = {os.path.basename(f["output"] or ""): f["reason"] for f in s["failed"]}
    assert "give both content_mask and style_mask" in reasons["one.png"]    # found before any work
    assert "style mask" in reasons["bad.png"] and "line 2 of items.jsonl" in reasons["bad.png"]  # in its worker
    single = run_transfer(photos / "in/coffee.png", photos / "style.jpg", photos / "cmask.png",
                          photos / "smask.png", method="fast")
    with Image.open(out / "masked.png") as im:
        assert np.abs(np.asarray(im, np.int16) - np.asarray(to_pil(single.image), np.int16)).max() <= 1


def test_killed_worker_is_retried(photos, tmp_path):
    # A segmenter (user code run inside the worker) that kills its process the first time it is called.
    marker = tmp_path / "died-once"
    seg = tmp_path / "seg.py"
    seg.write_text(f"import os, numpy as np\n"
                   f"def segment(img):\n"
                   f"    if not os.path.exists({str(marker)!r}):\n"
                   f"        open({str(marker)!r}, 'w').close()\n"
                   f"        os._exit(1)\n"
                   f"    return np.zeros(img.shape[1:], np.int64)\n")
    out = tmp_path / "out"
    s = batch(photos / "in/rocket.png", photos / "style.jpg", output_dir=out, method="fast",
              segmenter=f"{seg}:segment", workers=1, quiet=True)
    assert marker.exists()                       # a worker did die mid-item
    assert s.ok and len(s.done) == 1, s.failed   # and its item was done by the restarted worker
    assert [p.name for p in out.glob("*.png")] == ["rocket.png"]


def test_driver_killed_mid_batch_then_rerun(photos, tmp_path):
    """SIGKILL the driver once an item is recorded; the rerun does the rest, and each output exactly once."""
    out = tmp_path / "out"
    # The driver joins this module's Ray (--address auto) so the test does not start a second one.
    proc = subprocess.Popen(CMD + ["batch", str(photos / "in"), "--style", str(photos / "style.jpg"), "-o", str(out),
                                   "--address", "auto", "--workers", "1", *FAST], env=ENV, cwd=os.getcwd(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / STATE_NAME
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 1) and proc.poll() is None:
        assert time.monotonic() < deadline, "no item finished in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {json.loads(line)["output"] for line in log.read_text().splitlines()}
    assert 1 <= len(first) < 3, proc.stderr.read().decode()
    s = batch(photos / "in", photos / "style.jpg", output_dir=out, method="fast", auto_masks=False, quiet=True)
    assert s.ok and {d["output"] for d in s.skipped} == first      # not done again
    assert len(s.done) + len(s.skipped) == 3 and not {d["output"] for d in s.done} & first
    for p in out.glob("*.png"):
        with Image.open(p) as im:
            im.load()                            # complete images
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(method="slow"), "method must be one of"),
    (dict(output="x.xyz"), "unknown image extension"),
    (dict(vgg_weights="/nonexistent.pth"), "vgg weights file not found"),
])
def test_bad_items_are_reported_before_any_work(photos, tmp_path, kwargs, message):
    output = kwargs.pop("output", None)
    m = tmp_path / "items.jsonl"
    m.write_text(json.dumps({"content": str(photos / "in/coffee.png"), "style": str(photos / "style.jpg"),
                             **({"output": output} if output else {})}) + "\n")
    s = batch(manifest=m, output_dir=tmp_path / "out", quiet=True, **kwargs)
    assert len(s.failed) == 1 and message in s.failed[0]["reason"] and not s.done and s.workers == 0


def test_batch_level_errors(photos, tmp_path, capsys, monkeypatch):
    assert main(["batch", str(photos / "in"), "-o", str(tmp_path)]) == 2
    assert "needs --style" in capsys.readouterr().err
    assert main(["batch", str(photos / "nothing*.png"), "--style", "s.jpg", "-o", str(tmp_path)]) == 2
    assert "matches no file" in capsys.readouterr().err
    dup = tmp_path / "dup.csv"
    dup.write_text(f"content,style,output\n{photos}/in/coffee.png,{photos}/style.jpg,x.png\n"
                   f"{photos}/in/rocket.png,{photos}/style.jpg,x.png\n")
    s = batch(manifest=dup, output_dir=tmp_path / "o", quiet=True, workers=0, method="fast", auto_masks=False)
    assert len(s.done) == 1 and "also line 2 of dup.csv's" in s.failed[0]["reason"]
    monkeypatch.setitem(__import__("sys").modules, "ray", None)    # ray not installed
    assert main(["batch", str(photos / "in"), "--style", str(photos / "style.jpg"), "-o", str(tmp_path)]) == 2
    assert 'pip install "dpst_ext[batch]"' in capsys.readouterr().err


def test_items_that_do_not_fit_in_memory_fail_before_any_work(photos, tmp_path, monkeypatch):
    import dpst_ext.engine.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 2**29)   # a 0.5 GiB machine
    s = batch(photos / "in/coffee.png", photos / "style.jpg", output_dir=tmp_path, method="fast", quiet=True)
    assert not s.done and s.workers == 0 and "needs about 0.8 GiB, 0.5 GiB available" in s.failed[0]["reason"]


def test_plan_workers():
    assert plan_workers(10, 2, None, None) == (2, 1)
    assert plan_workers(1, 2, None, None) == (1, 2)
    assert plan_workers(10, 8, None, 2) == (4, 2)
    assert plan_workers(10, 8, 2, None) == (2, 4)
    with pytest.raises(ValueError, match="more than the 2 there are"):
        plan_workers(10, 2, 2, 2)


def test_manifest_options_and_output_names():
    """A row's cells as dpst transfer's arguments: a switch set to false gives its opposite, a list is one
    comma-separated value; output names from the template, the extension lower-cased."""
    from dpst_ext.batch import _output_name, _row_argv, _row_parser

    p = _row_parser()
    assert _row_argv({"local-affine": "no", "auto_masks": False, "smoothing": "fast"}, p) == \
        ["--no-local-affine", "--no-auto-masks", "--smoothing", "fast"]
    assert _row_argv({"no-local-affine": "yes", "iters": [0, 5], "size": ""}, p) == \
        ["--no-local-affine", "--iters", "0,5"]
    assert _output_name("{index}_{stem}_in_{style}", "in/Beach.PNG", "s/look.jpg", 3, None) == "3_Beach_in_look.png"
    assert _output_name("{stem}", "in/Beach.PNG", "s/look.jpg", 0, "JPG") == "Beach.jpg"
