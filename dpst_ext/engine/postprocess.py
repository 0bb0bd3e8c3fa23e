"""Smooth local affine: the post-processing that produced the paper's published images (torch version).

    out = smooth_local_affine_torch(content, output)    # both (3, H, W) RGB 0..1, same size

1. Per pixel p, the 3x4 affine colour map A_p from the content I to the output O over p's 3x3 window
   (clipped at the image border), with a ridge on the colour part:
       A_p = argmin_A  sum_{j in w_p} |A [I_j; 1] - O_j|^2 + ridge * |A[:, :3]|_F^2
   i.e. (X^T X + ridge * diag(1, 1, 1, 0)) A^T = X^T Y with X's rows [I_j, 1] (sums, not means).
2. A joint-bilateral filter of the 12 coefficients over a (2r+1)^2 neighbourhood guided by the content:
       A'_p = sum_q w_pq A_q / sum_q w_pq,
       w_pq = exp(-|p-q|^2 / (2 (r/3)^2)) * exp(-|I_p - I_q|^2 / (2 edge^2)),  q inside the image.
3. Reconstruction: out_p = A'_p [I_p; 1].

Vectorised torch (any dtype and device); float64 for references. The compiled CPU op / CUDA kernel is
a separate piece of work; this is the readable definition it must match.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .upsample import _check_pair as check_pair
from .upsample import box_mean, guided_coefficients  # noqa: F401  (box_mean re-exported)

__all__ = ["smooth_local_affine_torch", "local_affine_fit_torch", "joint_bilateral", "apply_affine", "box_mean",
           "guided_filter", "refine_posterization"]


def _check_pair(content: torch.Tensor, output: torch.Tensor):
    check_pair(content, output, "content", "output", channels=3)


def _box_sum(x: torch.Tensor) -> torch.Tensor:
    """3x3 window sums, clipped at the border (zero padding adds nothing). x: (C, H, W)."""
    return F.avg_pool2d(x[None], 3, stride=1, padding=1, count_include_pad=True)[0] * 9.0


def local_affine_fit_torch(content: torch.Tensor, output: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Per-pixel least-squares affine maps (12, H, W): A_p row-major as (3 output colours) x (R, G, B, 1)."""
    _check_pair(content, output)
    h, w = content.shape[1:]
    X = torch.cat([content, torch.ones_like(content[:1])])             # (4, H, W)
    xx = _box_sum((X[:, None] * X[None]).reshape(16, h, w))            # (16, H, W)
    xy = _box_sum((X[:, None] * output[None]).reshape(12, h, w))       # (4*3, H, W)
    lhs = xx.permute(1, 2, 0).reshape(h, w, 4, 4)
    lhs = lhs + ridge * torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=content.dtype, device=content.device))
    rhs = xy.permute(1, 2, 0).reshape(h, w, 4, 3)
    at = torch.linalg.solve(lhs, rhs)                                  # (H, W, 4, 3) = A^T
    return at.transpose(2, 3).reshape(h, w, 12).permute(2, 0, 1).contiguous()


def joint_bilateral(values: torch.Tensor, guide: torch.Tensor, radius: int = 15, edge: float = 0.01) -> torch.Tensor:
    """Joint-bilateral filter of ``values`` (C, H, W) guided by ``guide`` (3, H, W); spatial sigma radius/3."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if edge <= 0:
        raise ValueError(f"edge must be > 0, got {edge}")
    if radius == 0:
        return values.clone()
    h, w = guide.shape[1:]
    r = int(radius)
    pad = (r, r, r, r)
    vp = F.pad(values, pad)
    gp = F.pad(guide, pad)
    valid = F.pad(torch.ones_like(guide[:1]), pad)
    num = torch.zeros_like(values)
    den = torch.zeros_like(guide[:1])
    inv_e = -1.0 / (2.0 * edge ** 2)
    inv_s = -1.0 / (2.0 * (radius / 3.0) ** 2)
    # One pass per offset keeps memory at a few image-sized buffers (961 offsets for radius 15);
    # in-place ops because this loop is memory-bound.
    d2 = torch.empty_like(den)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ys, xs = slice(r + dy, r + dy + h), slice(r + dx, r + dx + w)
            diff = gp[:, ys, xs] - guide
            torch.sum(diff.square_(), dim=0, keepdim=True, out=d2)
            wgt = d2.mul_(inv_e).add_((dy * dy + dx * dx) * inv_s).exp_().mul_(valid[:, ys, xs])
            num.addcmul_(wgt, vp[:, ys, xs])
            den += wgt
    return num / den  # den >= 1: the centre pixel always has weight 1


def apply_affine(coefficients: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """out_p = A_p [I_p; 1] for coefficients (12, H, W)."""
    h, w = content.shape[1:]
    a = coefficients.reshape(3, 4, h, w)
    X = torch.cat([content, torch.ones_like(content[:1])])
    return (a * X[None]).sum(dim=1)


def smooth_local_affine_torch(content: torch.Tensor, output: torch.Tensor, radius: int = 15, edge: float = 0.01,
                        ridge: float = 1e-3) -> torch.Tensor:
    """The reference's smooth local affine of ``output`` guided by ``content`` (both (3, H, W), 0..1).

    Returns (3, H, W) in the inputs' dtype, not clamped (clamp when converting to 8 bits).
    """
    _check_pair(content, output)
    output = output.to(content.dtype)
    coef = local_affine_fit_torch(content, output, ridge)
    coef = joint_bilateral(coef, content, radius, edge)
    return apply_affine(coef, content)


# ---- posterisation refinement (the reference's later addition) -----------------------------------------

def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = 8, eps: float = 0.01) -> torch.Tensor:
    """He, Sun, Tang's guided filter with a colour guide (3, H, W) of src (C, H, W), computed in float64.

    Per window k: a_k = (Sigma_k + eps I)^-1 cov_k(I, p), b_k = mean_k(p) - a_k . mean_k(I);
    q_i = mean over windows k containing i of (a_k . I_i + b_k). Windows are clipped at the border.
    Returns src's dtype.
    """
    if guide.dim() != 3 or guide.shape[0] != 3:
        raise ValueError(f"guide must have shape (3, H, W), got {tuple(guide.shape)}")
    if src.dim() != 3 or src.shape[1:] != guide.shape[1:]:
        raise ValueError(f"src must have shape (C, H, W) with guide's (H, W) {tuple(guide.shape[1:])}, "
                         f"got {tuple(src.shape)}")
    if radius < 1 or eps <= 0:
        raise ValueError(f"radius must be >= 1 and eps > 0, got radius={radius}, eps={eps}")
    coef = guided_coefficients(guide, src, radius, eps)                  # (C, 4, H, W) float64
    return ((coef[:, :3] * guide.double()[None]).sum(1) + coef[:, 3]).to(src.dtype)


def refine_posterization(content: torch.Tensor, output: torch.Tensor, radius: int = 8,
                         eps: float = 0.01) -> torch.Tensor:
    """The reference's posterisation refinement: out = J + I - GF(I) with a colour guided filter GF.

    Read as a base/detail split guided by the content I: J = GF_I(output) is the output's edge-aware
    base layer (steps and bands inside smooth regions are averaged away) and I - GF_I(I) is the
    content's own fine detail, put back. An output equal to the content comes back unchanged.
    Both (3, H, W) in 0..1; returns output's dtype, not clamped.
    """
    _check_pair(content, output)
    base = guided_filter(content, output, radius, eps)
    detail = content.double() - guided_filter(content, content, radius, eps).double()
    return (base.double() + detail).to(output.dtype)
