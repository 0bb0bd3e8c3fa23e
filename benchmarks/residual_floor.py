"""How far the float32 matvec lets a residual go: a solve of the smoothing system (float32 Laplacian,
float64 CG vectors, recursive residual to --tol) and the true residual ||b - A x|| / ||b|| of its solution
with the float64 operator and with the float32 one, next to the float32 rounding of the float64 operator's
own solution (tol 1e-10). Why the fused float32-vector CG does not replace its recursive residual with
b - A x (docs/engine.md).

    python benchmarks/residual_floor.py [--mp 0.25] [--tol 1e-6]

Photo: astronaut at --mp with the "stylised" target of bench_smoothing.py; systems: normalize="interior"
without a preconditioner (the full-resolution step's), normalize=True with Jacobi (FastPhotoStyle's).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_smoothing import target  # noqa: E402

from dpst_ext.engine import MattingLaplacian  # noqa: E402
from dpst_ext.engine.smoothing import SmoothingOperator, batched_pcg, weight_from_beta  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mp", type=float, default=0.25)
    p.add_argument("--tol", type=float, default=1e-6)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    img, y = target(args.mp)
    w = weight_from_beta(0.9999)
    print("| system | iterations | recursive | true, float64 operator | true, float32 operator "
          "| rel. l2 to the float64 solution | float64 solution rounded to float32: true residual |")
    print("|---|---|---|---|---|---|---|")
    for normalize, pre in (("interior", "none"), (True, "jacobi")):
        op32 = SmoothingOperator(MattingLaplacian(img, 1e-7, dtype=torch.float32), w, normalize)
        op64 = SmoothingOperator(MattingLaplacian(img.double(), 1e-7, dtype=torch.float64), w, normalize)
        inv = 1.0 / op32.diagonal if pre == "jacobi" else None
        x, it, rel, _ = batched_pcg(op32, y, y, inv, tol=args.tol)
        xe = batched_pcg(op64, y, y, inv, tol=1e-10)[0]

        def res(op, v):
            return float(((y - op(v)).norm(dim=(1, 2)) / y.norm(dim=(1, 2))).max())

        print(f"| normalize={normalize}, {pre} | {it} | {max(rel):.1e} | {res(op64, x):.1e} | {res(op32, x):.1e} | "
              f"{float((x - xe).norm() / xe.norm()):.1e} | {res(op64, xe.float().double()):.1e} |", flush=True)


if __name__ == "__main__":
    main()
