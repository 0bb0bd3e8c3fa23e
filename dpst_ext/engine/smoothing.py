"""Closed-form photorealistic smoothing at full resolution, on the stencil of M (FastPhotoStyle, Li et al. 2018).

    r = argmin_r  ||r - y||^2 + w * sum_c r_c^T S r_c,      i.e.   (I + w S) r_c = y_c  per channel,

with w = beta / (1 - beta) (beta = 0.9999: w = 9999) and S one of

* ``normalize=True`` (FastPhotoStyle's form):  S = D^-1/2 M D^-1/2,  D = diag(n_i).
  FastPhotoStyle builds the matting *affinity* W_ij = sum_{k : i,j in w_k} (1 + z_i.z_j) / 9 (self-loops
  included) and solves (I - beta D^-1/2 W D^-1/2) r = (1 - beta) y with D = diag(W 1), the affinity's
  degree. Because sum_{j in w_k} z_j = 0, that degree is n_i, the number of 3x3 windows containing pixel i
  (9 inside, 1..6 on the border), and W = diag(n) - M with M the matting Laplacian. Substituting and
  dividing by (1 - beta) gives exactly (I + w D^-1/2 M D^-1/2) r = y with D = diag(n). We use that D:
  it is FastPhotoStyle's, and unlike diag(M) it never comes near 0 (diag(M)_ii ~ 0 where a pixel is the
  lone odd one out of its windows, which would blow up D^-1/2).
* ``normalize=False``: S = M (the plain form; inside the image it is 9x stiffer than the normalised one).
* ``normalize="interior"``: S = M / 9, i.e. D = 9 I, the interior value of FastPhotoStyle's D. Same
  smoothing strength and conditioning as FastPhotoStyle inside the image, without its border effect:
  with D = diag(n), D^-1/2 M D^-1/2 annihilates D^1/2 1, not constants, so a flat image comes out of
  FastPhotoStyle's solve as ~sqrt(n_i / 9) on the 2-pixel border ring (corners at 1/3 of the interior;
  tests/test_smoothing.py measures it). The high-resolution stage uses this form.

The system is symmetric positive definite with eigenvalues in [1, 1 + 9w] (M is a sum of projections, at
most 9 overlapping per pixel), so plain CG needs ~sqrt(kappa) ~ 100-300 iterations per decade of
residual. It is solved by batched preconditioned CG over all channels at once (one matvec per iteration
for C channels, per-channel alpha and beta), optionally preconditioned by Jacobi (diag(I + w S) from the
engine's diagonal) or by dpst_ext.engine.multigrid (coarse spaces of local affine colour models), and
warm-started either by the caller (x0) or by a coarse-to-fine cascade: solve the problem at half
resolution, bring the solution up with the local affine upsampling of dpst_ext.engine.upsample (so the warm
start is locally affine in the *fine* content, i.e. already near M's null space, where the fine
solution lives), then finish at full resolution.

Precision: the matvec runs in the Laplacian's dtype (float32 halves its memory traffic); the CG vectors are
in the Laplacian's dtype by default where the fused passes run, float64 elsewhere (``vector_dtype``), dot
products always float64. float32 vectors reach the same 1e-6 relative residual in the same number of
iterations as float64 ones on the fused path (tests/test_fused_cg.py, docs/engine.md) and solutions within
~2e-6 of theirs: the float32 matvec, not the vectors, bounds the accuracy, and
its own true residual ||b - A x|| measured 1.4e-3 of ||b|| on a 0.25 MP photo whose recursive residual
reached 1e-6, so replacing the recursive residual with b - A x would stall the solve there. See
tests/test_smoothing.py and docs/experiments/2026-11-smoothing-solver.md for measured figures.

On the CPU and on CUDA, batched_pcg runs a SmoothingOperator's iteration in the engine's fused passes
(dpst_ext.engine.ops.pcg_direction / pcg_curvature / pcg_update / pcg_step; csrc/cpu/pcg_cpu.cpp, and the CUDA
kernels of csrc/cuda/pcg_kernels.cuh with the same per-pixel formulas): at most three passes over the vectors
per iteration besides the matvec (one without a preconditioner), same arithmetic
(computed in double, vectors stored as float64 or float32, sums in double), about half the time and memory
of the eager torch loop on the CPU, which stays the path for other operators and other devices
(benchmarks/cg_iteration.py; docs/engine.md). Jacobi runs inside the passes; another preconditioner (the
multigrid) runs between them on the stored r.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import ops
from .laplacian import LaplacianStencil, MattingLaplacian, as_image_tensor

__all__ = ["SmoothingResult", "PRECONDITIONERS", "FUSED_DEVICES", "fused_iteration", "cg_vector_dtype",
           "weight_from_beta", "window_counts", "SmoothingOperator", "batched_pcg", "smooth", "downsample2"]


PRECONDITIONERS = ("none", "jacobi", "multigrid")   # smooth(preconditioner=...)


FUSED_DEVICES = ("cpu", "cuda")   # device types with kernels of the fused CG passes (csrc/cpu, csrc/cuda)


def fused_iteration(device, preconditioner: str) -> bool:
    """Whether batched_pcg runs a SmoothingOperator's solve on ``device`` with ``preconditioner`` in the
    engine's fused passes (CPU or CUDA, any of PRECONDITIONERS: Jacobi inside the passes, the multigrid
    between them; SmoothingOperator.fused_cg checks the tensors)."""
    return torch.device(device).type in FUSED_DEVICES and preconditioner in PRECONDITIONERS


def cg_vector_dtype(device, preconditioner: str, laplacian_dtype: torch.dtype = torch.float32) -> torch.dtype:
    """The CG vectors' dtype for a solve on ``device`` with ``preconditioner`` and a Laplacian in
    ``laplacian_dtype`` (smooth's default; the full-resolution step's, with its float32 Laplacian): the
    Laplacian's where the fused passes run (fused_iteration), whose float32 vectors take the float64 ones'
    iterations to the same residual (docs/engine.md), float64 elsewhere (the eager loop, validated in float64)."""
    return laplacian_dtype if fused_iteration(device, preconditioner) else torch.float64


def weight_from_beta(beta: float) -> float:
    """w = beta / (1 - beta): FastPhotoStyle's beta = 0.9999 gives w = 9999."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must lie in [0, 1), got {beta}")
    return beta / (1.0 - beta)


def window_counts(height: int, width: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """n_i: how many 3x3 windows lying inside the image contain pixel i, as (H, W). This is the degree of
    FastPhotoStyle's matting affinity (see the module docstring). 0 where no window fits (H or W < 3)."""
    def along(n):
        c = torch.zeros(n, dtype=dtype, device=device)
        for s in range(3):  # window starting at s covers s..s+2 for s in 0..n-3
            if n >= 3:
                c[s:n - 2 + s] += 1
        return c
    return along(height)[:, None] * along(width)[None, :]


class SmoothingOperator:
    """A = I + w S on (C, H, W) tensors, S = D^-1/2 M D^-1/2 (normalize) or M.

    M is held as its stencil (LaplacianStencil: 12 values per pixel). ``laplacian``: a LaplacianStencil, or a
    MattingLaplacian whose stencil is built here (the operator keeps no reference to its window statistics).
    """

    def __init__(self, laplacian: MattingLaplacian | LaplacianStencil, weight: float, normalize=True):
        if normalize not in (True, False, "interior"):
            raise ValueError(f"normalize must be True, False or 'interior', got {normalize!r}")
        self.stencil = laplacian if isinstance(laplacian, LaplacianStencil) else laplacian.stencil()
        self.image = self.stencil.image
        if normalize == "interior":     # D = 9 I: a constant scale, folded into the weight
            weight, normalize = weight / 9.0, False
        self.weight = float(weight)
        self.normalize = bool(normalize)   # the products then take stencil_matvec's normalised form
        self._diagonal = None

    @property
    def dtype(self):
        """The Laplacian's dtype, in which the products run."""
        return self.stencil.dtype

    def _scale(self, dtype) -> torch.Tensor:
        """D^-1/2 as (H, W) in ``dtype`` (ones without the normalisation); made when asked: only Jacobi and the
        multigrid need it, the products scale inside the stencil's pass."""
        st = self.stencil
        if not self.normalize:
            return torch.ones(st.height, st.width, dtype=dtype, device=st.device)
        n = window_counts(st.height, st.width, torch.float64, st.device)
        # Pixels in no window (images under 3 px) have M's row = 0: any finite scale works.
        return torch.where(n > 0, n, torch.ones_like(n)).rsqrt().to(dtype)

    @property
    def diagonal(self) -> torch.Tensor:
        """diag(A) (H, W), float64: computed on first use (Jacobi), so a solve without it neither pays for M's
        diagonal nor holds it."""
        if self._diagonal is None:
            diag_s = self.stencil.diagonal()
            if self.normalize:
                diag_s.mul_(self._scale(torch.float64) ** 2)
            self._diagonal = diag_s.mul_(self.weight).add_(1.0)
        return self._diagonal

    def l1_diagonal(self) -> torch.Tensor:
        """sum_j |A_ij| as (H, W) in the Laplacian's dtype: the l1 row sums, A's bound for a Jacobi-type
        smoother (dpst_ext.engine.multigrid)."""
        st = self.stencil
        s = self._scale(st.dtype)
        out = st.abs_matvec(s).to(st.dtype)
        out.mul_(s).mul_(self.weight).add_(1.0)
        return out

    def null_space(self) -> torch.Tensor:
        """(4, H, W) in the Laplacian's dtype: the vectors S annihilates, [1, R, G, B] (times D^1/2 when
        normalised)."""
        img = self.image
        null = torch.cat([torch.ones_like(img[:1]), img])
        return null.div_(self._scale(self.dtype)) if self.normalize else null

    def fused_cg(self, b: torch.Tensor, inv_diag=None) -> bool:
        """Whether batched_pcg can run its iteration on this operator in the engine's fused passes
        (dpst_ext.engine.ops.pcg_*; any preconditioner): CPU or CUDA, float64 or float32 vectors."""
        return (b.device.type in FUSED_DEVICES and self.stencil.device == b.device
                and b.dtype in (torch.float64, torch.float32)
                and b.dim() == 3 and b.shape[0] > 0 and (inv_diag is None or inv_diag.device == b.device))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """A v in v's dtype; the Laplacian product (with the scale: stencil_matvec's normalised form) runs in
        the Laplacian's dtype. In-place where possible: the temporaries are the product and, for v in another
        dtype, v's copy in the Laplacian's, (C, H, W) each (dpst_ext.engine.memory counts them)."""
        u = v if v.dtype == self.dtype else v.to(self.dtype)   # the matvec only reads it
        su = self.stencil.matvec(u, normalized=self.normalize)
        del u
        if su.dtype == v.dtype:                # in place: one image-sized temporary fewer
            return su.mul_(self.weight).add_(v)
        return torch.add(v, su, alpha=self.weight)


@dataclass
class SmoothingResult:
    solution: torch.Tensor            # (C, H, W), the requested output dtype
    iterations: int                   # CG iterations at full resolution
    relative_residual: list           # per channel ||y - A r|| / ||y|| (recursive residual at exit)
    converged: bool
    levels: list = field(default_factory=list)   # per level, coarse first: dict(shape, iterations, seconds)
    seconds: float = 0.0


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-channel dot products (C,) accumulated in float64, without a (C, H, W) temporary in float64."""
    if a.dtype == torch.float64:
        return torch.stack([torch.dot(a[c].reshape(-1), b[c].reshape(-1)) for c in range(a.shape[0])])
    return torch.stack([(a[c] * b[c]).sum(dtype=torch.float64) for c in range(a.shape[0])])


def _axpy_(y: torch.Tensor, a: torch.Tensor, x: torch.Tensor, sign: float = 1.0) -> None:
    """y_c += sign * a_c x_c per channel, in place (no (C, H, W) temporary)."""
    for c, ac in enumerate(a.tolist()):
        y[c].add_(x[c], alpha=sign * ac)


def batched_pcg(apply, b: torch.Tensor, x0: torch.Tensor | None = None, inv_diag: torch.Tensor | None = None,
                tol: float = 1e-6, maxiter: int = 5000, callback=None, precondition=None):
    """Preconditioned CG on every channel of b (C, H, W) at once, SPD operator ``apply``.

    One ``apply`` per iteration serves all channels; alpha and beta are per channel. Stops when
    ||b_c - A x_c|| <= tol ||b_c|| for every channel (recursive residual). ``inv_diag`` (H, W): Jacobi
    preconditioner 1/diag(A); ``precondition``: any fixed SPD preconditioner z = B^-1 r on (C, H, W), e.g.
    dpst_ext.engine.multigrid.AffineMultigrid (give one or the other). ``callback(iteration,
    rel_residuals)`` is called after every iteration.
    Returns (x, iterations, rel_residuals (list), converged).
    """
    if inv_diag is not None and precondition is not None:
        raise ValueError("give inv_diag or precondition, not both")
    x = torch.zeros_like(b) if x0 is None else x0.to(dtype=b.dtype, device=b.device, copy=True)
    r = b - apply(x) if x0 is not None else b.clone()
    bnorm = _dot(b, b).sqrt()
    bnorm = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))   # b_c = 0: absolute residual
    if isinstance(apply, SmoothingOperator) and apply.fused_cg(b, inv_diag):
        return _fused_pcg(apply, x, r, bnorm, inv_diag, tol, maxiter, callback, precondition)
    if inv_diag is not None:
        precondition = lambda t: t * inv_diag.to(t)   # noqa: E731
    prec = (lambda t: t) if precondition is None else precondition
    z = prec(r)
    p = z.clone()
    rr = _dot(r, r)
    rz = rr if precondition is None else _dot(r, z)
    rel = rr.sqrt() / bnorm
    it = 0
    while it < maxiter and bool((rel > tol).any()):
        ap = apply(p)
        pap = _dot(p, ap)
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, torch.ones_like(pap)), torch.zeros_like(pap))
        _axpy_(x, alpha, p)
        _axpy_(r, alpha, ap, -1.0)
        del ap
        it += 1
        rr = _dot(r, r)
        rel = rr.sqrt() / bnorm
        if callback is not None:
            callback(it, rel.tolist())
        if not bool((rel > tol).any()):
            break
        z = prec(r)
        rz_new = rr if precondition is None else _dot(r, z)   # no preconditioner: z = r, and r.r is known
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        rz = rz_new
        for c, bc in enumerate(beta.tolist()):
            # p = z + beta p in one pass (out= aliasing an input is fine for element-wise ops); mul_ then
            # add_ takes two passes and measured 2.5x slower.
            torch.add(z[c], p[c], alpha=bc, out=p[c])
        del z
    return x, it, rel.tolist(), bool((rel <= tol).all())


def _fused_pcg(op, x, r, bnorm, inv_diag, tol, maxiter, callback, precondition=None):
    """batched_pcg's iteration on a SmoothingOperator in the engine's fused passes (csrc/cpu/pcg_cpu.cpp, or
    the CUDA kernels of csrc/cuda/pcg_kernels.cuh):
    per iteration pcg_direction, one Laplacian matvec, pcg_curvature, pcg_update (when the matvec reads p
    itself, stencil_matvec_dots gives p.p and p.Mp with the product, and there is no pcg_curvature pass:
    p.Ap = p.p + w p.Mp, the same sum in double in another order; with no preconditioner either, pcg_step
    does pcg_update and the next pcg_direction in one pass), with the same arithmetic
    as the eager loop above (the passes compute in double and store x, r, p in b's dtype, float64 or
    float32; dot products in double; the matvec in the Laplacian's dtype). x and r are updated in place.
    With p in the Laplacian's dtype the matvec reads p itself. Jacobi (inv_diag) runs
    inside the passes; any other preconditioner z = precondition(r) (e.g. the multigrid) is applied between
    them, and pcg_direction forms p = z + beta p from z. FastPhotoStyle's scale D^-1/2 is applied inside the
    product (stencil_matvec's normalised form), so the passes see A p = p + w m either way."""
    x, r = x.contiguous(), r.contiguous()            # (the passes take planar (C, H, W) vectors)
    d = None if inv_diag is None else inv_diag.to(torch.float64).contiguous()
    rr = _dot(r, r)

    def preconditioned():
        z = precondition(r).to(r.dtype).contiguous()
        return z, _dot(r, z)

    if precondition is not None:
        z, rz = preconditioned()
    else:
        z = r
        rz = rr if d is None else torch.stack([(r[c] * d * r[c]).sum() for c in range(r.shape[0])])
    rel = rr.sqrt() / bnorm
    p = torch.zeros_like(r)
    # The matvec's input u = p in the Laplacian's dtype, a reused buffer; none when the matvec can read p. Its
    # output m is reused too (allocated by the first product): an image-sized allocation per iteration cost
    # ~15% of the iteration at 4 MP without glibc's heap reuse (fresh pages to fault in; docs/engine.md).
    u = None if r.dtype == op.dtype else torch.empty(r.shape, dtype=op.dtype, device=r.device)
    # When the product reads p, it also sums p.p, p.m and m.m: p.Ap = p.p + w p.m without a pass.
    m = torch.empty_like(r) if u is None else None
    # With no preconditioner either, |Ap|^2 gives the next r.r before r is formed (below), so one pass
    # (pcg_step) updates x and r and forms the next p.
    single = u is None and d is None and precondition is None
    beta = [0.0] * r.shape[0]
    it = 0
    while it < maxiter and bool((rel > tol).any()):
        if not single or it == 0:
            ops.pcg_direction(z, d, p, beta, u)
        if precondition is not None:
            del z
        if u is None:
            dots = op.stencil.matvec_dots(p, m, normalized=op.normalize)
            pap = dots[0] + op.weight * dots[1]
        else:
            m = op.stencil.matvec(u, out=m, normalized=op.normalize)
            pap = ops.pcg_curvature(p, m, op.weight)
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, torch.ones_like(pap)), torch.zeros_like(pap))
        if single:
            # CG keeps r.Ap = p.Ap, so |r - alpha Ap|^2 = alpha^2 |Ap|^2 - r.r: beta = that / r.r is known
            # before the new r exists (Meurant's form: the two passes' iterations on the benchmark photo at 4 and
            # 12 MP; on near-singular crops with float32 vectors a few percent either way, docs/engine.md).
            # alpha still takes the new r.r as pcg_step sums it.
            ap2 = dots[0] + 2 * op.weight * dots[1] + op.weight ** 2 * dots[2]
            rr_next = (alpha * alpha * ap2 - rr).clamp_min(0)
            beta = torch.where(rr > 0, rr_next / torch.where(rr > 0, rr, torch.ones_like(rr)),
                               torch.zeros_like(rr)).tolist()
            rr = rz_new = ops.pcg_step(x, r, p, m, op.weight, alpha.tolist(), beta)
        else:
            sums = ops.pcg_update(x, r, p, m, op.weight, alpha.tolist(), d)
            rr, rz_new = sums[0], sums[1]
        it += 1
        rel = rr.sqrt() / bnorm
        if callback is not None:
            callback(it, rel.tolist())
        if not bool((rel > tol).any()):
            break
        if precondition is not None:
            z, rz_new = preconditioned()
        if not single:
            beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, torch.ones_like(rz)),
                               torch.zeros_like(rz)).tolist()
        rz = rz_new
    return x, it, rel.tolist(), bool((rel <= tol).all())


def downsample2(t: torch.Tensor) -> torch.Tensor:
    """Halve (C, H, W) by 2x2 averaging (area), odd sizes rounded up: the cascade's coarse grid."""
    h, w = t.shape[-2:]
    return F.interpolate(t.unsqueeze(0), size=((h + 1) // 2, (w + 1) // 2), mode="area")[0]


def smooth(content, y, beta: float = 0.9999, normalize=True, tol: float = 1e-6, maxiter: int = 5000,
           preconditioner: str = "none", x0=None, cascade_levels: int = 0, coarse_weight_scale: float = 0.25,
           eps: float = 1e-7, laplacian_dtype=None, vector_dtype=None, callback=None,
           laplacian: LaplacianStencil | MattingLaplacian | None = None) -> SmoothingResult:
    """Solve (I + w S) r = y (module docstring) for y (C, H, W) given the content image (3, H, W).

    normalize: True (FastPhotoStyle, D = window counts), "interior" (D = 9 I) or False (S = M).
    preconditioner: one of PRECONDITIONERS: "none" (default), "jacobi" or "multigrid" (dpst_ext.engine.
    multigrid.AffineMultigrid: coarse spaces of local affine models; measured 4-5x fewer iterations, flat
    with size, each costing 5 plain fused ones, docs/experiments/2026-11-smoothing-solver.md). Jacobi took
    10-47% more iterations than none on every example pair's stage-1 result, either form, to 1e-3 and 1e-6
    (benchmarks/smoothing_preconditioners.py, docs/engine.md).
    x0: warm start (C, H, W); default y itself when no cascade.
    cascade_levels: solve this many halvings first (coarsest first), each warm-starting the next finer
    level through local affine upsampling (it saves 6-15% of the fine iterations, less than it costs, on
    the full-resolution step's system: docs/engine.md). coarse_weight_scale: w is multiplied by this per
    halving, so the coarse problem smooths over the same physical distance (w multiplies a
    second-difference operator, which scales as h^-2 with the grid spacing). laplacian_dtype: dtype of the
    matvec (default: content's); vector_dtype: dtype of the CG vectors and of the returned solution (default:
    the Laplacian's where the fused passes run, i.e. on the CPU and CUDA, whose float32 vectors take float64's
    iterations to the same residual, float64 elsewhere).
    callback(level, iteration, rel_residuals): progress, level 0 = full resolution.
    laplacian: a LaplacianStencil (or MattingLaplacian) of ``content`` already built (eps, dtype as wanted),
    to reuse.
    """
    t0 = time.perf_counter()
    content = as_image_tensor(content)
    if laplacian_dtype is None:
        laplacian_dtype = content.dtype
    if vector_dtype is None:
        vector_dtype = cg_vector_dtype(content.device, preconditioner,
                                       laplacian_dtype if laplacian is None else laplacian.dtype)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor (C, H, W), got {type(y).__name__}")
    if y.dim() != 3 or tuple(y.shape[1:]) != tuple(content.shape[1:]):
        raise ValueError(f"y must have shape (C, H, W) with the content's H, W = {tuple(content.shape[1:])}, "
                         f"got {tuple(y.shape)}")
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {', '.join(PRECONDITIONERS)}, got {preconditioner!r}")
    if cascade_levels < 0:
        raise ValueError(f"cascade_levels must be >= 0, got {cascade_levels}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    weight = weight_from_beta(beta)
    h, w = content.shape[1:]
    levels = []

    if x0 is None and cascade_levels > 0 and min(h, w) >= 16:
        from .upsample import affine_upsample  # local import: upsample does not need smoothing

        content_c = downsample2(content.to(torch.float64)).to(content.dtype)
        y_c = downsample2(y.to(torch.float64))
        # The coarse problem's w = weight * scale, expressed through beta.
        wc = weight * coarse_weight_scale
        coarse = smooth(content_c, y_c, beta=wc / (1.0 + wc), normalize=normalize, tol=max(tol, 1e-4),
                        maxiter=maxiter, preconditioner=preconditioner, cascade_levels=cascade_levels - 1,
                        coarse_weight_scale=coarse_weight_scale, eps=eps, laplacian_dtype=laplacian_dtype,
                        vector_dtype=vector_dtype,
                        callback=None if callback is None else (lambda lv, i, r: callback(lv + 1, i, r)))
        levels.extend(coarse.levels)
        t_up = time.perf_counter()
        x0 = affine_upsample(content, content_c, coarse.solution.to(torch.float64))
        levels.append({"shape": (h, w), "step": "upsample", "seconds": time.perf_counter() - t_up})
    if x0 is None:
        x0 = y

    t_level = time.perf_counter()
    # Only the stencil: the window statistics are never held (36 B/px more at the build's peak).
    lap = laplacian if laplacian is not None else LaplacianStencil(content, eps, dtype=laplacian_dtype)
    op = SmoothingOperator(lap, weight, normalize)
    inv_diag = (1.0 / op.diagonal).to(vector_dtype) if preconditioner == "jacobi" else None
    precondition = None
    if preconditioner == "multigrid":
        from .multigrid import AffineMultigrid  # local import: only this option needs it

        t_setup = time.perf_counter()
        precondition = AffineMultigrid(op, op.l1_diagonal(), op.null_space(), dtype=op.dtype)
        levels.append({"shape": (h, w), "step": "multigrid setup", "levels": precondition.shapes,
                       "seconds": time.perf_counter() - t_setup})
    b = y.to(vector_dtype)
    x, it, rel, ok = batched_pcg(op, b, x0, inv_diag, tol, maxiter,
                                 None if callback is None else (lambda i, r: callback(0, i, r)), precondition)
    levels.append({"shape": (h, w), "step": "cg", "iterations": it, "seconds": time.perf_counter() - t_level})
    return SmoothingResult(x, it, rel, ok, levels, time.perf_counter() - t0)
