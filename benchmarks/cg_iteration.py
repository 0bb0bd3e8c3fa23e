"""Cost of one CG iteration of the full-resolution smoothing: the fused passes (csrc/cpu/pcg_cpu.cpp, what
batched_pcg runs on a SmoothingOperator on the CPU) against the eager torch loop (the same batched_pcg
given a plain function), and the Laplacian matvec alone.

    OMP_NUM_THREADS=2 python benchmarks/cg_iteration.py [--mp 1 4] [--iters 10] [--rounds 3]

Per size: a real photo (scikit-image hubble_deep_field resized), float32 Laplacian, float64 vectors, y a
colour transform of the photo; the system of dpst_ext.engine.highres (normalize="interior", no
preconditioner) and FastPhotoStyle's (normalize=True, Jacobi). Each round runs --iters iterations of
each path (fused on float64 vectors, eager, fused on float32 vectors), alternating, and reports per iteration the wall time and the CPU time of the process (all
threads): on a shared machine the CPU time is the steadier figure, the wall time the one a user sees.
Medians over the rounds; the ratio eager / fused is taken within each round, then the median. glibc's heap
reuse is on, as in the CLI (dpst_ext.engine.memory.reuse_freed_memory).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from dpst_ext.engine import MattingLaplacian
from dpst_ext.engine.memory import reuse_freed_memory
from dpst_ext.engine.smoothing import SmoothingOperator, batched_pcg, weight_from_beta
from dpst_ext.samples import photo_megapixels


def timed(fn, n):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w) / n, (time.process_time() - c) / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mp", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    reuse_freed_memory()   # as `dpst transfer` does: image-sized temporaries reuse the heap
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average before "
          f"{os.getloadavg()[0]:.1f}")
    print("| MP | system | L·v (the stencil's, as the iteration's) wall / CPU (ms) | fused iteration wall / CPU (ms) "
          "| eager iteration wall / CPU (ms) "
          "| eager / fused (wall, CPU) | fused, float32 vectors, wall / CPU (ms) "
          "| fused float64 / float32 (wall, CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for mp in args.mp:
        img = photo_megapixels(mp, dtype=torch.float32)
        lap = MattingLaplacian(img, 1e-7)
        y = (img.double().flip(0) ** 0.8).contiguous()
        v = y32 = y.float()
        for normalize, precond in (("interior", "none"), (True, "jacobi")):
            op = SmoothingOperator(lap, weight_from_beta(0.9999), normalize)
            inv = 1.0 / op.diagonal if precond == "jacobi" else None
            runs = {"lv": [], "fused": [], "eager": [], "fused32": []}
            for _ in range(args.rounds):
                runs["lv"].append(timed(lambda: [op.stencil.matvec(v) for _ in range(args.iters)], args.iters))
                for name, a, b in (("fused", op, y), ("eager", lambda t: op(t), y), ("fused32", op, y32)):
                    runs[name].append(timed(lambda: batched_pcg(a, b, b, inv, tol=1e-30, maxiter=args.iters),
                                            args.iters))
            med = {k: tuple(statistics.median(r[i] for r in rs) * 1e3 for i in (0, 1)) for k, rs in runs.items()}
            ratio = [statistics.median(e[i] / f[i] for e, f in zip(runs["eager"], runs["fused"])) for i in (0, 1)]
            r32 = [statistics.median(f[i] / g[i] for f, g in zip(runs["fused"], runs["fused32"])) for i in (0, 1)]
            print(f"| {mp:g} | normalize={normalize}, {precond} | {med['lv'][0]:.1f} / {med['lv'][1]:.1f} | "
                  f"{med['fused'][0]:.1f} / {med['fused'][1]:.1f} | {med['eager'][0]:.1f} / {med['eager'][1]:.1f} | "
                  f"{ratio[0]:.2f}x, {ratio[1]:.2f}x | {med['fused32'][0]:.1f} / {med['fused32'][1]:.1f} | "
                  f"{r32[0]:.2f}x, {r32[1]:.2f}x |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
