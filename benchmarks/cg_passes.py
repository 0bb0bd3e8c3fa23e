"""CPU time of the three fused CG passes (csrc/cpu/pcg_cpu.cpp: pcg_direction, pcg_curvature, pcg_update)
on float64 and on float32 vectors, without the matvec: 1000x1000 px, 3 channels, random vectors, m in
float32; "none" without Jacobi's map (u left out on float32 vectors: the matvec reads p), "jacobi" with it
(and u).

    python benchmarks/cg_passes.py [--threads 1] [--repeat 15]

Prints per pass the median CPU time of the process over --repeat calls (on a shared machine the CPU time
is steadier than the wall time).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from dpst_ext.engine import ops


def cpu_ms(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        ts.append(time.process_time() - t)
    return sorted(ts)[repeat // 2] * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    c, h, w = 3, 1000, 1000
    g = torch.Generator().manual_seed(0)
    d = torch.rand(h, w, dtype=torch.float64, generator=g) + 0.5
    m = torch.randn(c, h, w, generator=g)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average before {os.getloadavg()[0]:.1f}")
    print("| preconditioner | vectors | direction (ms) | curvature (ms) | update (ms) | sum (ms) |")
    print("|---|---|---|---|---|---|")
    for mode in ("none", "jacobi"):
        for dt in (torch.float64, torch.float32):
            x, r, pv = [torch.randn(c, h, w, generator=g, dtype=dt) for _ in range(3)]
            dm = d if mode == "jacobi" else None
            u = torch.empty(c, h, w) if (mode == "jacobi" or dt == torch.float64) else None
            t = [cpu_ms(lambda: ops.pcg_direction(r, dm, pv, [0.5] * c, u), args.repeat),
                 cpu_ms(lambda: ops.pcg_curvature(pv, m, 3.0), args.repeat),
                 cpu_ms(lambda: ops.pcg_update(x, r, pv, m, 3.0, [1e-3] * c, dm), args.repeat)]
            print(f"| {mode} | {str(dt)[6:]} | {t[0]:.1f} | {t[1]:.1f} | {t[2]:.1f} | {sum(t):.1f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
