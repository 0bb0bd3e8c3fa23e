"""How the default recipe was chosen: one optimisation per pair, scored at several iteration counts and
with and without each finishing step, by the four measures of dpst_ext.metrics.

    python benchmarks/recipe.py NAME [--set KEY=VALUE ...] [--checkpoints 25,50,100,150]
                                     [--pairs 1,9,17,25,33,41,49,57] [--threads 2]

For each pair (hand masks) one run of the default method (closed-form start, then stage 2) at its
working size, to the last checkpoint; the image at every checkpoint is finished four ways: smooth local
affine (SLA) or not, then brought to the pair's 700 px by local affine upsampling with the fast
matting smoothing ("+smooth") or without. Writes runs/recipe_NAME.json (per pair, checkpoint and
finish: the four measures and the seconds to that checkpoint) and prints the means. The default pairs
are the tuning half of the 15; the other half (5, 13, ..., 53) is kept for the report.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from dpst_ext.engine.highres import upscale_result
from dpst_ext.engine.ops import smooth_local_affine
from dpst_ext.image_io import resize_long_side
from dpst_ext.metrics import GRAM_LAYERS, score
from dpst_ext.samples import example_pair
from dpst_ext.transfer import TransferOptions, run_transfer
from dpst_ext.vgg import VGG19Features

from quality import RUNS, _machine, _option

TUNING = (1, 9, 17, 25, 33, 41, 49, 57)
FINISHES = ("raw", "raw+smooth", "sla", "sla+smooth")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--checkpoints", default="25,50,100,150")
    p.add_argument("--pairs", default=",".join(map(str, TUNING)))
    p.add_argument("--finishes", default=",".join(FINISHES), help=f"a subset of {', '.join(FINISHES)}")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoints = sorted(int(x) for x in args.checkpoints.split(","))
    opts = TransferOptions(method="default", output_size="working", local_affine=False)
    for s in args.set or []:
        _option(opts, s)
    opts = opts.resolved()
    opts.iters = (opts.iters[0], checkpoints[-1])
    vgg = VGG19Features(GRAM_LAYERS)
    path = RUNS / f"recipe_{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    log = json.loads(path.read_text()) if path.is_file() else {}
    log.update(config={"set": args.set or [], "checkpoints": checkpoints, "finishes": args.finishes},
               machine=_machine())
    rows = log.setdefault("pairs", {})
    for n in (int(x) for x in args.pairs.split(",")):
        if str(n) in rows:
            continue
        pair = example_pair(n)
        masks = pair.masks()
        shots, t0 = {}, time.perf_counter()

        def callback(pr):
            if pr.stage == 2 and pr.iteration in checkpoints:
                shots[pr.iteration] = (pr.image(), time.perf_counter() - t0)

        res = run_transfer(pair.content, pair.style, pair.paths["content_mask"], pair.paths["style_mask"],
                           options=opts, callback=callback)
        if 0 in checkpoints:
            shots[0] = (res.stage1, res.timings.get("transport", 0.0))
        small = resize_long_side(pair.content, opts.size)
        out = {}
        for it, (img, seconds) in sorted(shots.items()):
            sla = smooth_local_affine(small.float(), img.float(), opts.local_affine_radius, opts.local_affine_edge,
                                      opts.local_affine_ridge).clamp(0, 1)
            for finish in args.finishes.split(","):
                base = sla if finish.startswith("sla") else img
                full = upscale_result(pair.content, small, base, smoothing="fast" if "+smooth" in finish else "off")
                out[f"{it}/{finish}"] = {**score(pair.content, pair.style, full, masks, vgg=vgg),
                                         "seconds": round(seconds, 1)}
        rows[str(n)] = out
        path.write_text(json.dumps(log, indent=1))
        print(f"pair {n}: {time.perf_counter() - t0:.0f}s", flush=True)
    keys = list(next(iter(rows.values())).keys())
    print(f"means over {len(rows)} pairs: colour, gram, residual, edge SSIM, seconds")
    for k in keys:
        m = [np.mean([r[k][q] for r in rows.values()]) for q in ("colour", "gram", "residual", "edge_ssim", "seconds")]
        print(f"  {k:16s} {m[0]:.2f}  {m[1]:.3f}  {m[2]:.5f}  {m[3]:.3f}  {m[4]:.0f}s")


if __name__ == "__main__":
    main()
