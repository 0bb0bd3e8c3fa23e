"""Which preconditioner `smooth` should default to: CG iterations and seconds with none and with Jacobi on
the example pairs, each content photo smoothing the reference release's stage-1 result (segmented neural
style: the painterly output FastPhotoStyle's smoothing is for), in both systems (`normalize=True`,
FastPhotoStyle's, and `"interior"`, the full-resolution step's) and to both tolerances (1e-3 and 1e-6).

    python benchmarks/smoothing_preconditioners.py [--pairs 1,5,...] [--scale 1.0] [--threads 2]

Needs the example pairs (dpst_ext.samples.EXAMPLES). Float32 Laplacian and CG vectors (smooth's defaults for
a float32 photo on the CPU). Prints one line per pair as it goes, then a Markdown table of iterations
(Jacobi / none) and the ratio of their seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from dpst_ext import samples
from dpst_ext.engine.smoothing import smooth
from dpst_ext.image_io import load_image

SYSTEMS = {"true": True, "interior": "interior"}
TOLS = (1e-3, 1e-6)


def load_pair(n: int, scale: float):
    d = samples.EXAMPLES
    content = load_image(d / "input" / f"in{n}.png", "content")
    stage1 = load_image(d / "tmp_results" / f"out{n}_t_1000.png", "stage-1 result")
    h, w = (round(s * scale) for s in content.shape[1:])
    size = dict(size=(h, w), mode="bicubic", align_corners=False)
    if (h, w) != tuple(content.shape[1:]):
        content = F.interpolate(content[None], **size)[0].clamp(0, 1)
    if (h, w) != tuple(stage1.shape[1:]):
        stage1 = F.interpolate(stage1[None], **size)[0].clamp(0, 1)
    return content.float().contiguous(), stage1.float().contiguous()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default=",".join(map(str, samples.EXAMPLE_PAIRS)))
    p.add_argument("--scale", type=float, default=1.0, help="resize both photos by this factor (700 px: 1)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not samples.EXAMPLES.is_dir():
        sys.exit(f"the example pairs are not at {samples.EXAMPLES} (set DPST_EXAMPLES)")
    torch.set_num_threads(args.threads)
    rows = []
    for n in (int(s) for s in args.pairs.split(",")):
        content, y = load_pair(n, args.scale)
        row = {"pair": n, "shape": tuple(content.shape[1:])}
        for system, normalize in SYSTEMS.items():
            for tol in TOLS:
                for pre in ("none", "jacobi"):
                    t0 = time.perf_counter()
                    res = smooth(content, y, normalize=normalize, tol=tol, preconditioner=pre)
                    assert res.converged, (n, system, tol, pre)
                    row[system, tol, pre] = (res.iterations, time.perf_counter() - t0)
        rows.append(row)
        print(n, row["shape"], {f"{k[0]} {k[1]:g} {k[2]}": v[0] for k, v in row.items() if isinstance(k, tuple)},
              flush=True)

    print(f"\n{torch.get_num_threads()} threads, scale {args.scale}. CG iterations Jacobi / none "
          "(seconds: Jacobi / none)\n")
    cols = [(s, t) for s in SYSTEMS for t in TOLS]
    print("| pair | size | " + " | ".join(f"`{s}`, {t:g}" for s, t in cols) + " |")
    print("|---" * (2 + len(cols)) + "|")
    for row in rows:
        cells = []
        for s, t in cols:
            (it_j, sec_j), (it_n, sec_n) = row[s, t, "jacobi"], row[s, t, "none"]
            cells.append(f"{it_j} / {it_n} ({sec_j / sec_n:.2f}x)")
        print(f"| {row['pair']} | {row['shape'][1]}x{row['shape'][0]} | " + " | ".join(cells) + " |")
    it_ratio = [row[s, t, "jacobi"][0] / row[s, t, "none"][0] for row in rows for s, t in cols]
    t_ratio = [row[s, t, "jacobi"][1] / row[s, t, "none"][1] for row in rows for s, t in cols]
    print(f"\nJacobi / none over {len(it_ratio)} solves: iterations {min(it_ratio):.2f}-{max(it_ratio):.2f}x "
          f"(median {statistics.median(it_ratio):.2f}), seconds {min(t_ratio):.2f}-{max(t_ratio):.2f}x "
          f"(median {statistics.median(t_ratio):.2f})")


if __name__ == "__main__":
    main()
