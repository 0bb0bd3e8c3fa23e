"""Accuracy of the fast matvec (float32, float64) against the longdouble reference, on real photos.

    python benchmarks/accuracy.py [--size 96] [--eps 1e-7]

For each crop of dpst_ext.samples.hard_crops (real photos with near-singular windows) and a noise image,
computes M v with the compiled op in float32 and float64 and with dpst_ext.reference.matvec_reference in
numpy longdouble, on the same input values (the image and v as the op saw them, cast up exactly), so the
numbers are the error of the arithmetic, not of rounding the inputs. Prints per crop:
    max_rel = max|Mv - ref| / max|ref|      rel_l2 = ||Mv - ref||_2 / ||ref||_2
with v ~ N(0, 1) per pixel, 3 channels. Also the loss sum_c v_c^T M v_c (relative error).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from dpst_ext import MattingLaplacian, samples
from dpst_ext.reference import matvec_reference


def errors(image64: torch.Tensor, v64: torch.Tensor, dtype, eps: float):
    """(max_rel, rel_l2, loss_rel) of the op in ``dtype`` against longdouble on the same inputs."""
    image, v = image64.to(dtype), v64.to(dtype)
    lap = MattingLaplacian(image, eps)
    fast = lap.matvec(v).double().numpy()
    loss = float(lap.quad(v))
    ref = matvec_reference(image.double(), v.double(), eps, np.longdouble)
    ref_loss = float(np.sum(v.double().numpy().astype(np.longdouble) * ref))
    err = (fast - ref).astype(np.float64)
    ref = ref.astype(np.float64)
    return (np.abs(err).max() / np.abs(ref).max(), np.linalg.norm(err) / np.linalg.norm(ref),
            abs(loss - ref_loss) / abs(ref_loss))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96, help="crop side in pixels")
    parser.add_argument("--eps", type=float, default=1e-7)
    args = parser.parse_args()
    torch.set_num_threads(2)

    images = dict(samples.hard_crops(args.size))
    images["noise"] = samples.random_image(args.size, args.size, seed=0)
    g = torch.Generator().manual_seed(1)
    print(f"matvec vs longdouble reference, {args.size}x{args.size} crops, eps={args.eps:g}, v ~ N(0,1), C=3")
    print(f"{'image':<18} {'f32 max_rel':>12} {'f32 rel_l2':>12} {'f32 loss':>10} "
          f"{'f64 max_rel':>12} {'f64 rel_l2':>12} {'f64 loss':>10}")
    for name, image in images.items():
        v = torch.randn(3, args.size, args.size, generator=g, dtype=torch.float64)
        row = errors(image, v, torch.float32, args.eps) + errors(image, v, torch.float64, args.eps)
        print(f"{name:<18} " + " ".join(f"{x:>{w}.2e}" for x, w in zip(row, (12, 12, 10, 12, 12, 10))))


if __name__ == "__main__":
    main()
