"""End-to-end full-resolution transfer: time split, peak memory, PSNR and photorealism residuals.

    /usr/bin/time -v python benchmarks/highres_e2e.py run CONTENT STYLE --out DIR [--size 512]
        [--iters 200,100] [--smoothing fast] [--threads 1]
    python benchmarks/highres_e2e.py analyse DIR

``run`` calls dpst_ext.transfer.run_transfer with the options `dpst transfer` passes (init from the
content, the working size, the iteration budget, the full-resolution smoothing), writes the PNG as the
CLI does (timed), and keeps the float images (working.pt, image.pt) and a summary (run.json: seconds per
phase, CG iterations, the memory plan, ru_maxrss). The CLI itself writes only the 8-bit image, and 8-bit
rounding alone adds ~2e-5 to the residual below (3 sigma^2 mean(diag M), sigma^2 = 1/(12*255^2)), more
than the smoothing leaves; hence this driver.

``analyse`` (a separate process: its memory is not the run's) reports, at full resolution, the PSNR of
each variant downscaled (area) to the working size against the working-size result, and the
photorealism residual (1/N) sum_c V_c^T M V_c (eps 1e-7, M of the full-resolution content, float32
Laplacian) of: ours (image.pt), naive bicubic upsampling of the working result, and the local affine
upsampling without smoothing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time


def run(args):
    import torch

    from dpst_ext.engine.memory import reuse_freed_memory
    from dpst_ext.image_io import load_image, save_image
    from dpst_ext.transfer import HighresProgress, run_transfer

    torch.set_num_threads(args.threads)
    reuse_freed_memory()   # as `dpst transfer` does
    n1, n2 = (int(n) for n in args.iters.split(","))
    os.makedirs(args.out, exist_ok=True)
    last = [0.0]

    def progress(p):  # a line every 60 s, and every phase change of the full-size step
        now = time.perf_counter()
        if isinstance(p, HighresProgress):
            if p.step != "smooth" or now - last[0] > 60:
                print(f"highres {p.step} it {p.iteration} res {p.residual:.2e} {p.elapsed:.0f}s", flush=True)
                last[0] = now
        elif now - last[0] > 60 or p.iteration == p.total:
            print(f"stage {p.stage} {p.iteration}/{p.total} loss {p.loss:.4g} {p.elapsed:.0f}s", flush=True)
            last[0] = now

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    res = run_transfer(args.content, args.style, size=args.size, iters=(n1, n2), init="content",
                       smoothing=args.smoothing, threads=args.threads, callback=progress)
    total = time.perf_counter() - t0
    t = time.perf_counter()
    save_image(res.image, os.path.join(args.out, "out.png"))
    save_seconds = time.perf_counter() - t
    torch.save(res.working, os.path.join(args.out, "working.pt"))
    torch.save(res.image, os.path.join(args.out, "image.pt"))
    info = {"content": args.content, "style": args.style, "output": list(res.image.shape[1:]),
            "working": list(res.working.shape[1:]), "iters": [n1, n2], "smoothing": args.smoothing,
            "threads": args.threads, "seconds_total": total, "seconds_save_png": save_seconds,
            "timings": res.timings, "load_start": load_start,
            "highres": {k: v for k, v in res.highres.items()},
            "ru_maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30}
    info["load_end"] = os.getloadavg()
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info), flush=True)


def analyse(args):
    import torch
    import torch.nn.functional as F

    from dpst_ext.engine import MattingLaplacian
    from dpst_ext.engine.upsample import affine_upsample
    from dpst_ext.image_io import load_image, resize_long_side

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.out, "run.json")) as f:
        info = json.load(f)
    content = load_image(info["content"], "content")
    working = torch.load(os.path.join(args.out, "working.pt"))
    ours = torch.load(os.path.join(args.out, "image.pt"))
    content_small = resize_long_side(content, max(working.shape[1:]))   # as run_transfer made it
    assert content_small.shape == working.shape and ours.shape == content.shape
    H, W = content.shape[1:]
    variants = {
        "ours": ours,
        "bicubic": F.interpolate(working[None], size=(H, W), mode="bicubic", align_corners=False)[0].clamp(0, 1),
        "affine_no_smoothing": affine_upsample(content, content_small, working, out_dtype=torch.float32).clamp(0, 1),
    }
    lap = MattingLaplacian(content, eps=1e-7, dtype=torch.float32)
    out = {}
    for name, v in variants.items():
        down = F.interpolate(v[None].double(), size=tuple(working.shape[1:]), mode="area")[0]
        mse = ((down - working.double()) ** 2).mean().item()
        out[name] = {"psnr_db": 10 * math.log10(1.0 / mse),
                     "photoreal_residual": lap.quad(v.float().contiguous()).item() / (H * W)}
    print(json.dumps(out), flush=True)
    with open(os.path.join(args.out, "analysis.json"), "w") as f:
        json.dump(out, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("content")
    r.add_argument("style")
    r.add_argument("--size", type=int, default=512)
    r.add_argument("--iters", default="200,100")
    r.add_argument("--smoothing", default="fast")
    for q in (r, sub.add_parser("analyse")):
        q.add_argument("--out", required=True)
        q.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    return run(args) if args.cmd == "run" else analyse(args)


if __name__ == "__main__":
    sys.exit(main())
