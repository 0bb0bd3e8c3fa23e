"""``python -m dpst_ext.demo`` (``make demo``): Deep Photo Style Transfer on photos shipped with scikit-image.

Offline, on a 2-core CPU, within a few minutes: stage 1 at 128 px, stage 2 at 256 px (coarse-to-fine),
then smooth local affine. Stage 1 starts from the content (the reference started from noise, which
needs ~1000 iterations). The iteration counts are chosen from the cost per iteration measured at start
so that the optimisation fits --budget seconds (far fewer than the paper's 1000 + 1000). Writes ./out/demo_result.png and ./out/demo_contact_sheet.png
(content | style | result) and prints the measured cost per iteration and what the paper's full
settings (1000 + 1000 iterations at 512 px or more) would cost on this machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from . import samples
from .image_io import save_image, to_pil
from .losses import DPSTObjective
from .masks import MaskPair
from .engine.ops import smooth_local_affine
from .transfer import run_transfer
from .vgg import VGG19Features, preprocess


def contact_sheet(images, labels, height=256) -> Image.Image:
    tiles = []
    for img, label in zip(images, labels):
        pil = to_pil(img)
        pil = pil.resize((round(pil.width * height / pil.height), height), Image.LANCZOS)
        tile = Image.new("RGB", (pil.width, height + 18), "white")
        tile.paste(pil, (0, 18))
        ImageDraw.Draw(tile).text((4, 3), label, fill="black")
        tiles.append(tile)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 4
    return sheet


def _median_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_iteration(content, style, vgg, size, smoothing=True):
    """Median seconds for one iteration's pieces at ``size`` px: VGG losses fwd+bwd, Laplacian term, smoothing."""
    from .image_io import resize_long_side

    c, s = resize_long_side(content, size), resize_long_side(style, size)
    obj = DPSTObjective(vgg, c, s, MaskPair.single(c.shape[1:], s.shape[1:]))
    x = preprocess(c[None]).requires_grad_(True)
    vgg_t = _median_time(lambda: obj(x)["total"].backward())
    obj.laplacian  # built once per run, not per iteration
    rgb = c.double().requires_grad_(True)
    lap_t = _median_time(lambda: obj.photoreal_residual(rgb).backward())
    sla_t = _median_time(lambda: smooth_local_affine(c.float(), c.float().flip(0)), repeats=1) if smoothing else 0.0
    return vgg_t, lap_t, sla_t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dpst_ext.demo", description=__doc__.splitlines()[0])
    p.add_argument("--content", default="rocket", choices=samples.PHOTOS)
    p.add_argument("--style", default="coffee", choices=samples.PHOTOS)
    p.add_argument("--size", type=int, default=256, help="stage-2 long side (default 256)")
    p.add_argument("--stage1-size", type=int, default=128, help="stage-1 long side (default 128)")
    p.add_argument("--budget", type=float, default=300.0,
                   help="seconds for the optimisation; iterations are chosen from the measured cost (default 300)")
    p.add_argument("--max-iters", default="300,200", help="upper bounds for stage 1 and 2 (default 300,200)")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--measure", action="store_true",
                   help="also measure the cost split (VGG / Laplacian / smoothing) at 256 and 512 px")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    max1, max2 = (int(n) for n in args.max_iters.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    content = samples.photo(args.content, dtype=torch.float32)
    style = samples.photo(args.style, dtype=torch.float32)
    print(f"content: scikit-image '{args.content}' {content.shape[2]}x{content.shape[1]}, "
          f"style: '{args.style}' {style.shape[2]}x{style.shape[1]}; torch threads: {torch.get_num_threads()}")

    # Choose the iteration counts from this machine's measured cost per iteration (median of 3).
    vgg = VGG19Features()
    t1, _, _ = measure_iteration(content, style, vgg, args.stage1_size, smoothing=False)
    t2, lap2, _ = measure_iteration(content, style, vgg, args.size, smoothing=False)
    n1 = max(10, min(max1, int(0.35 * args.budget / t1)))
    n2 = max(10, min(max2, int(0.55 * args.budget / (t2 + lap2))))
    print(f"measured: {t1:.2f} s/iteration at {args.stage1_size} px, {t2 + lap2:.2f} s/iteration at {args.size} px "
          f"(of which the Laplacian term {lap2 * 1e3:.0f} ms)")
    print(f"stage 1: {n1} L-BFGS iterations at {args.stage1_size} px, stage 2: {n2} at {args.size} px, "
          f"then smooth local affine (radius 15, edge 0.01); budget {args.budget:.0f} s")

    last = {"t": 0.0}

    def progress(pr):
        now = time.perf_counter()
        if pr.iteration == pr.total or now - last["t"] > 15:
            last["t"] = now
            rate = pr.iteration / pr.elapsed if pr.elapsed else 0.0
            print(f"  stage {pr.stage}: {pr.iteration}/{pr.total} loss {pr.loss:.4g} {rate:.2f} it/s "
                  f"ETA {(pr.total - pr.iteration) / rate if rate else 0:.0f}s", flush=True)

    # One label: a rocket and a coffee cup share no regions, and automatic masks (the default without masks)
    # would match them by layout and imprint the cup on the launch pad (measured: README, automatic masks).
    res = run_transfer(content, style, size=args.size, stage1_size=args.stage1_size, iters=(n1, n2), seed=0,
                       init="content", smooth_every=0, callback=progress, auto_masks=False,
                       output_size="working")  # the demo's budget covers the optimisation only
    save_image(res.image, out / "demo_result.png")
    save_image(contact_sheet([content, style, res.stage1, res.image],
                             ["content", "style", f"stage 1 ({args.stage1_size} px)", "result"]),
               out / "demo_contact_sheet.png")
    t = res.timings
    total = time.perf_counter() - t0
    s2 = t["stage2"] / max(n2, 1)
    print(f"wrote {out / 'demo_result.png'} and {out / 'demo_contact_sheet.png'} in {total:.0f}s "
          f"(stage 1 {t['stage1']:.0f}s = {t['stage1'] / max(n1, 1):.2f} s/it, stage 2 {t['stage2']:.0f}s = "
          f"{s2:.2f} s/it, smooth local affine {t['smooth']:.1f}s)")
    # VGG's cost grows with the pixel count: 512 px is ~4x the 256 px cost (an extrapolation).
    scale = (512 / args.size) ** 2
    print(f"full quality (the paper's 1000 + 1000 iterations) at 512 px: about {2000 * s2 * scale / 60:.0f} min "
          f"on this CPU (extrapolated from {s2:.2f} s/it at {args.size} px); use a GPU or fewer iterations")

    if args.measure:
        print("measured cost of one iteration (median of 3):")
        for size in (256, 512):
            v, lap, sla = measure_iteration(content, style, vgg, size)
            print(f"  {size} px: VGG losses fwd+bwd {v:.2f} s, Laplacian term fwd+bwd {lap * 1e3:.1f} ms "
                  f"({100 * lap / (v + lap):.1f}% of an iteration), smooth local affine {sla:.1f} s (once per save)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
