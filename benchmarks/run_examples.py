"""Our outputs on the paper's example pairs, for benchmarks/quality.py (issue 4).

    python benchmarks/run_examples.py --out runs/examples [--pairs 1,5] [--size 384 --stage1-size 256]
        [--iters 200,150] [--threads 1]

For each pair: the two-stage optimisation with the pair's hand-painted masks at a working size (long
side ``--size``; stage 1 at ``--stage1-size``, from the content), smooth local affine at the working
size, then the result brought to the pair's 700 px by the local affine upsampling of the high-resolution
path (dpst_ext.engine.highres.upscale_result, ``--smoothing``). Writes OUT/outN.png, OUT/stage1_N.png and
OUT/runs.json (options, timings and losses per pair), one pair at a time so a partial run is usable.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dpst_ext.image_io import load_image, save_image
from dpst_ext.transfer import run_transfer

from quality import DEFAULT_DATA, PAIRS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pairs", default=",".join(map(str, PAIRS)))
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--stage1-size", type=int, default=256)
    p.add_argument("--iters", default="200,150")
    p.add_argument("--init", default="colour", choices=["noise", "content", "colour"])
    p.add_argument("--smoothing", default="fast", choices=["off", "fast", "exact"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "runs.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    iters = tuple(int(n) for n in args.iters.split(","))
    for n in (int(x) for x in args.pairs.split(",")):
        d = args.data
        t0 = time.perf_counter()
        content = load_image(d / "input" / f"in{n}.png")
        res = run_transfer(content, d / "style" / f"tar{n}.png", d / "segmentation" / f"in{n}.png",
                           d / "segmentation" / f"tar{n}.png", size=args.size, stage1_size=args.stage1_size,
                           iters=iters, init=args.init, smooth_every=0, seed=0, smoothing=args.smoothing)
        full = res.image
        t_opt, t_up = res.timings["stage1"] + res.timings["stage2"], res.timings.get("highres", 0.0)
        save_image(full, args.out / f"out{n}.png")
        save_image(res.stage1, args.out / f"stage1_{n}.png")
        log[str(n)] = {"options": vars(args) | {"data": str(d), "out": str(args.out)}, "seconds": {
            **{k: round(v, 2) for k, v in res.timings.items()},
            "total": round(time.perf_counter() - t0, 2)},
            "final_loss": {k: v[-1] for k, v in res.losses.items() if v}}
        log_path.write_text(json.dumps(log, indent=1))
        print(f"pair {n}: {t_opt:.0f}s optimisation, {t_up:.1f}s upscale to {full.shape[2]}x{full.shape[1]}",
              flush=True)


if __name__ == "__main__":
    main()
