"""Accuracy of the fast matvec (float32, float64) against the longdouble reference, on real photos.

    python benchmarks/accuracy.py [--size 96] [--eps 1e-7] [--prototype]

For each crop of dpst_ext.samples.hard_crops (real photos with near-singular windows) and a noise image,
computes M v with the compiled op in float32 and float64 and with
dpst_ext.engine.reference.matvec_reference in numpy longdouble (Cholesky-whitened evaluation, within 1e-13
of exact rational arithmetic on the hardest windows: tests/test_reference.py), on the same input values
(the image and v as the op saw them, cast up exactly), so the numbers are the error of the arithmetic, not
of rounding the inputs. Then the same for the product from M's stencil (MattingLaplacian.stencil(), computed
in double from the image and rounded once to the dtype). Prints per crop:
    max_rel = max|Mv - ref| / max|ref|      rel_l2 = ||Mv - ref||_2 / ||ref||_2
with v ~ N(0, 1) per pixel, 3 channels. Also the loss sum_c v_c^T M v_c (relative error).

--prototype adds a float32 study of where the remaining error comes from (see proto_matvec).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian, ops
from dpst_ext.engine.reference import diagonal_reference, matvec_reference


def errors(image64: torch.Tensor, v64: torch.Tensor, dtype, eps: float):
    """(max_rel, rel_l2, loss_rel, diag_max_rel) of the ops in ``dtype`` against longdouble on the same
    inputs. The diagonal holds the largest entries of M, so its error is the CSR build's too."""
    image, v = image64.to(dtype), v64.to(dtype)
    lap = MattingLaplacian(image, eps)
    fast = lap.matvec(v).double().numpy()
    loss = float(lap.quad(v))
    ref = matvec_reference(image.double(), v.double(), eps, np.longdouble)
    ref_loss = float(np.sum(v.double().numpy().astype(np.longdouble) * ref))
    err = (fast - ref).astype(np.float64)
    ref = ref.astype(np.float64)
    diag = lap.diagonal().double().numpy()
    ref_diag = diagonal_reference(image.double(), eps, np.longdouble).astype(np.float64)
    return (np.abs(err).max() / np.abs(ref).max(), np.linalg.norm(err) / np.linalg.norm(ref),
            abs(loss - ref_loss) / abs(ref_loss), np.abs(diag - ref_diag).max() / np.abs(ref_diag).max())


def stencil_errors(image64: torch.Tensor, v64: torch.Tensor, dtype, eps: float):
    """(max_rel, rel_l2, diag_max_rel) of the stencil's product and diagonal in ``dtype`` against longdouble."""
    image, v = image64.to(dtype), v64.to(dtype)
    stencil = MattingLaplacian(image, eps).stencil()
    ref = matvec_reference(image.double(), v.double(), eps, np.longdouble).astype(np.float64)
    err = stencil.matvec(v).double().numpy() - ref
    ref_diag = diagonal_reference(image.double(), eps, np.longdouble).astype(np.float64)
    diag = stencil.diagonal().numpy()
    return (np.abs(err).max() / np.abs(ref).max(), np.linalg.norm(err) / np.linalg.norm(ref),
            np.abs(diag - ref_diag).max() / np.abs(ref_diag).max())


def proto_matvec(image, stats, v, mean_correction=False):
    """The engine's window formulation (csrc/window_math.h, laplacian_matvec_cpu) in plain torch, in the
    inputs' dtype, to try changes to it:

        (M v)_i = n_i v_i - sum_{k containing i} (beta_k + (I_i - mu_k) . g_k),
        g_k = W_k^T W_k sum_j (I_j - mu_k)(v_j - vbar_k),   beta_k = vbar_k.

    The float32 engine stores mu_k rounded to float32. The covariance part is blind to that (a common
    shift of the centred colours cancels against sum_j (v_j - vbar) = 0) but the gather term
    (I_i - mu_k) . g_k is not: in near-singular windows g_k is ~1/sqrt(eps) along the near-null
    direction, so an error u32 |mu| in mu_k becomes ~u32 |mu| / sqrt(eps) in M v.
    mean_correction=True removes it at no memory cost: from the 9 pixels it already loads, phase 1
    recomputes the exact mean in double, lo_k = mean_k - mu_k, and folds it into the per-window scalar,
    beta_k = vbar_k - lo_k . g_k, so the gather is unchanged.
    """
    c, h, w = v.shape
    hw, ww = h - 2, w - 2
    mu, (w00, w10, w11, w20, w21, w22) = stats[:3], stats[3:]
    cols = image.unfold(1, 3, 1).unfold(2, 3, 1).reshape(3, hw, ww, 9)
    vw = v.unfold(1, 3, 1).unfold(2, 3, 1).reshape(c, hw, ww, 9)
    vbar = vw.sum(-1) / 9
    cov = torch.einsum("shwj,chwj->cshw", cols - mu[..., None], vw - vbar[..., None])
    a0 = w00 * cov[:, 0]
    a1 = w10 * cov[:, 0] + w11 * cov[:, 1]
    a2 = w20 * cov[:, 0] + w21 * cov[:, 1] + w22 * cov[:, 2]
    g = torch.stack([w00 * a0 + w10 * a1 + w20 * a2, w11 * a1 + w21 * a2, w22 * a2], 1)  # W^T a
    beta = vbar
    if mean_correction:
        lo = (cols.double().sum(-1) / 9 - mu.double()).to(v.dtype)
        beta = vbar - torch.einsum("shw,cshw->chw", lo, g)
    out = torch.zeros_like(v)
    count = torch.zeros(h, w, dtype=v.dtype)
    for dy in range(3):
        for dx in range(3):
            xi = image[:, dy:dy + hw, dx:dx + ww] - mu
            out[:, dy:dy + hw, dx:dx + ww] -= beta + torch.einsum("shw,cshw->chw", xi, g)
            count[dy:dy + hw, dx:dx + ww] += 1
    return out + count * v


def proto_diagonal(image, stats, mean_correction=False):
    """diag(M) = sum_k (8/9 - |W_k (I_i - mu_k)|^2) in torch, as laplacian_diagonal computes it; with
    mean_correction, I_i - mu_k becomes (I_i - mu_k) - lo_k (lo_k as in proto_matvec). The CSR build
    evaluates its entries the same way, so the same correction applies there."""
    h, w = image.shape[1:]
    hw, ww = h - 2, w - 2
    mu, (w00, w10, w11, w20, w21, w22) = stats[:3], stats[3:]
    lo = torch.zeros_like(mu)
    if mean_correction:
        cols = image.unfold(1, 3, 1).unfold(2, 3, 1).reshape(3, hw, ww, 9)
        lo = (cols.double().sum(-1) / 9 - mu.double()).to(image.dtype)
    out = torch.zeros(h, w, dtype=image.dtype)
    for dy in range(3):
        for dx in range(3):
            x = image[:, dy:dy + hw, dx:dx + ww] - mu - lo
            z0, z1, z2 = w00 * x[0], w10 * x[0] + w11 * x[1], w20 * x[0] + w21 * x[1] + w22 * x[2]
            out[dy:dy + hw, dx:dx + ww] += 8 / 9 - (z0 * z0 + z1 * z1 + z2 * z2)
    return out


def prototype_table(images, eps, size):
    """float32 max_rel, for M v and diag(M), of: the C++ op; the torch prototype of the same formulation;
    the prototype with the mean correction; and, to bound what any formulation reading float32 W can
    reach, float64 arithmetic fed the float32-rounded W with the exact mean."""
    g = torch.Generator().manual_seed(1)
    print(f"\nfloat32 error sources (max_rel), {size}x{size}")
    head = f"{'C++ op':>10} {'prototype':>10} {'+mean corr':>10} {'W rounded':>10}"
    print(f"{'':<18} {'matvec':-^43}   {'diagonal':-^43}")
    print(f"{'image':<18} {head}   {head}")
    for name, image in images.items():
        v = torch.randn(3, size, size, generator=g, dtype=torch.float64)
        im32, v32 = image.float(), v.float()
        ref = matvec_reference(im32.double(), v32.double(), eps, np.longdouble).astype(np.float64)
        stats = ops.window_stats(im32, eps)
        stats64 = ops.window_stats(im32.double(), eps)
        w_rounded = torch.cat([stats64[:3], stats64[3:].float().double()])
        results = [ops.laplacian_matvec(im32, stats, v32), proto_matvec(im32, stats, v32),
                   proto_matvec(im32, stats, v32, mean_correction=True),
                   ops.laplacian_matvec(im32.double(), w_rounded, v32.double())]
        row = [np.abs(r.double().numpy() - ref).max() / np.abs(ref).max() for r in results]
        ref_diag = diagonal_reference(im32.double(), eps, np.longdouble).astype(np.float64)
        diags = [ops.laplacian_diagonal(im32, stats), proto_diagonal(im32, stats),
                 proto_diagonal(im32, stats, mean_correction=True), proto_diagonal(im32.double(), w_rounded)]
        row += [np.abs(d.double().numpy() - ref_diag).max() / np.abs(ref_diag).max() for d in diags]
        print(f"{name:<18} " + " ".join(f"{x:>10.2e}" for x in row[:4]) + "   "
              + " ".join(f"{x:>10.2e}" for x in row[4:]))


def error_table(images, measure, columns, args):
    """One row per image: measure(image, v, dtype, eps) in float32 then float64, the same v for every table."""
    g = torch.Generator().manual_seed(1)
    print(f"{'image':<18} " + " ".join(f"{f'{t} {label}':>{w}}" for t in ("f32", "f64") for label, w in columns))
    for name, image in images.items():
        v = torch.randn(3, args.size, args.size, generator=g, dtype=torch.float64)
        row = measure(image, v, torch.float32, args.eps) + measure(image, v, torch.float64, args.eps)
        print(f"{name:<18} " + " ".join(f"{x:>{w}.2e}" for x, (_, w) in zip(row, columns * 2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96, help="crop side in pixels")
    parser.add_argument("--eps", type=float, default=1e-7)
    parser.add_argument("--prototype", action="store_true", help="also print the float32 error study")
    args = parser.parse_args()
    torch.set_num_threads(2)

    images = dict(samples.hard_crops(args.size))
    images["noise"] = samples.random_image(args.size, args.size, seed=0)
    print(f"matvec vs longdouble reference, {args.size}x{args.size} crops, eps={args.eps:g}, v ~ N(0,1), C=3")
    error_table(images, errors, (("max_rel", 11), ("rel_l2", 10), ("loss", 9), ("diag", 9)), args)
    print("\nthe same from the stencil (12 values per pixel, computed in double from the image)")
    error_table(images, stencil_errors, (("max_rel", 11), ("rel_l2", 10), ("diag", 9)), args)
    if args.prototype:
        prototype_table(images, args.eps, args.size)


if __name__ == "__main__":
    main()
