"""Cost of one style-transfer iteration, split into its parts (issue 4).

    OMP_NUM_THREADS=2 python benchmarks/iteration_cost.py [--sizes 256,512] [--repeats 5]

Per size (long side, content 'rocket' and style 'coffee' from scikit-image): the VGG-19 losses forward +
backward (content, 5 style Grams, tv), the photorealism term forward + backward (the engine's loss op
and its 2 M v gradient), and one smooth local affine (radius 15; once per saved image, not per
iteration). Medians of --repeats, interleaved so that a burst of load on a shared machine hits all
parts alike. Prints a Markdown table and the Laplacian term's share of an iteration.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from dpst_ext import samples
from dpst_ext.engine.ops import smooth_local_affine
from dpst_ext.image_io import resize_long_side
from dpst_ext.losses import DPSTObjective
from dpst_ext.masks import MaskPair
from dpst_ext.vgg import VGG19Features, deprocess, preprocess


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    content = samples.photo("rocket", dtype=torch.float32)
    style = samples.photo("coffee", dtype=torch.float32)
    vgg = VGG19Features()
    print(f"torch threads: {torch.get_num_threads()}, load average before: {os.getloadavg()[0]:.2f}")
    print("| long side | pixels | VGG losses fwd+bwd | Laplacian term fwd+bwd | Laplacian share | "
          "smooth local affine (per save) |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        c, s = resize_long_side(content, size), resize_long_side(style, size)
        obj = DPSTObjective(vgg, c, s, MaskPair.single(c.shape[1:], s.shape[1:]))
        x = preprocess(c[None]).requires_grad_(True)
        obj.laplacian  # built once per run, not per iteration
        runs = {"vgg": [], "lap": [], "sla": []}
        for _ in range(args.repeats):
            runs["vgg"].append(timed(lambda: obj(x)["total"].backward()))
            # exactly the stage-2 term: deprocess, float64 Laplacian quad, gradient back to x
            runs["lap"].append(timed(lambda: obj.photoreal(deprocess(x)[0]).backward()))
            runs["sla"].append(timed(lambda: smooth_local_affine(c, c.flip(0))))
        vgg_t, lap_t, sla_t = (statistics.median(runs[k]) for k in ("vgg", "lap", "sla"))
        print(f"| {size} | {c.shape[2]}x{c.shape[1]} | {vgg_t:.3f} s | {lap_t * 1e3:.1f} ms | "
              f"{100 * lap_t / (vgg_t + lap_t):.1f}% | {sla_t:.2f} s |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
