"""Two builds of the extension side by side in one session (A/B, alternated), e.g. before and after a
compiler-flag change:

    git worktree add /tmp/old <rev> && (cd /tmp/old && python setup.py build_ext --inplace)
    python benchmarks/build_ab.py /tmp/old . --photo ../shared/data/dpst_examples/high_res/2/input.jpg

Each build runs in its own process (PYTHONPATH=<build root>, 2 threads) and reports the medians of
window_stats, the 3-channel L·v and the CSR build on a 2000x2000 synthetic photo, and, with --photo, the
wall time of the full-resolution step (local affine upsampling + fast smoothing) of that photo from a
stand-in result at 1/3 of its size. Builds alternate --rounds times, so a slow spell of the shared
machine falls on both.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, statistics, sys, time, torch
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[2]))
import dpst_ext
from dpst_ext.engine import ops
from dpst_ext.engine.highres import upscale_result
from dpst_ext.engine.memory import reuse_freed_memory
from dpst_ext.image_io import load_image
reuse_freed_memory()                    # as dpst transfer does
def med(f, n):
    f(); ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return round(statistics.median(ts) * 1e3, 1)
g = torch.Generator().manual_seed(0)
img = F.interpolate(torch.rand(3, 500, 500, generator=g)[None], size=(2000, 2000), mode="bilinear")[0].contiguous()
v = torch.randn(3, 2000, 2000, generator=g)
st = ops.window_stats(img, 1e-7)
out = {"build": dpst_ext.__file__, "stats_ms": med(lambda: ops.window_stats(img, 1e-7), 7),
       "matvec3_ms": med(lambda: ops.laplacian_matvec(img, st, v), 15),
       "csr_ms": med(lambda: ops.laplacian_csr(img, st), 5)}
if sys.argv[1]:
    photo = load_image(sys.argv[1])
    small = F.interpolate(photo[None], scale_factor=1 / 3, mode="area")[0]
    work = (small ** 0.8 * torch.tensor([1.0, 0.9, 1.1])[:, None, None]).clamp(0, 1)
    t = time.perf_counter()
    upscale_result(photo, small, work, smoothing="fast")
    out["fullres_fast_s"] = round(time.perf_counter() - t, 1)
print(json.dumps(out))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("builds", nargs="+", help="roots of the builds (folders holding dpst_ext/ with its .so)")
    p.add_argument("--photo", default="", help="a photo for the full-resolution step (optional)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    photo = os.path.abspath(args.photo) if args.photo else ""
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        for b in args.builds:
            # Run in the build's root: `python -c` puts the working folder first on sys.path.
            root = os.path.abspath(b)
            res = subprocess.run([sys.executable, "-c", CHILD, photo, str(args.threads)], capture_output=True,
                                 text=True, env={**env, "PYTHONPATH": root}, cwd=root, check=True)
            print(f"round {r + 1}: " + res.stdout.strip().splitlines()[-1], flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
