"""Full-resolution output from a working-size result: memory plan, local affine upsampling, smoothing.

    out = upscale_result(content_full, content_small, result_small, smoothing="fast")

1. dpst_ext.engine.memory.plan_highres: estimate the peak memory and refuse at once if it will not fit.
2. dpst_ext.engine.upsample.affine_upsample: per-window affine maps content_small -> result_small,
   upsampled and applied to content_full (exact for affine recolourings).
3. dpst_ext.engine.smoothing.smooth on the full-resolution content, warm-started at the upsampled result:
   "exact" solves (I + (w/9) M) r = y (FastPhotoStyle's smoothing with D = 9 I: the same interior
   strength, no border darkening; ``normalize`` picks another form) to a relative residual of 1e-6, "fast" to 1e-3
   (``tol`` overrides either), "off" skips it.
"""
from __future__ import annotations

import time

import torch

from .laplacian import as_image_tensor
from .memory import MemoryPlan, plan_highres
from .smoothing import cg_vector_dtype, smooth
from .upsample import affine_upsample

__all__ = ["upscale_result", "SMOOTHING_TOL", "HighresInterrupted"]

SMOOTHING_TOL = {"fast": 1e-3, "exact": 1e-6}


class HighresInterrupted(KeyboardInterrupt):
    """Ctrl-C inside upscale_result. ``image``: the best full-resolution output so far (the local affine
    upsampling, clamped, when it had finished; else None); ``step``: "upsample" or "smooth";
    ``iteration``: CG iterations done."""

    def __init__(self, image, step: str, iteration: int = 0):
        super().__init__(f"interrupted during the high-resolution {step} step")
        self.image, self.step, self.iteration = image, step, iteration


def upscale_result(content_full, content_small, result_small, smoothing: str = "fast", beta: float = 0.9999,
                   tol: float | None = None, affine_eps: float = 1e-4, affine_radius: int = 1,
                   normalize="interior", maxiter: int = 5000, preconditioner: str = "none",
                   plan: MemoryPlan | None = None, available: int | None = None, clamp: bool = True, callback=None,
                   report: dict | None = None) -> torch.Tensor:
    """The working-size ``result_small`` (3, h, w) at ``content_full``'s resolution (3, H, W), float32.

    content_small: content_full resized to (h, w) (the image the optimisation saw). Inputs are torch
    (3, H, W) or numpy (H, W, 3) (uint8 scaled to 0..1). smoothing: "off" | "fast" | "exact".
    callback(step, info): progress ("plan", "upsample", "smooth" with (iteration, residuals), "done").
    preconditioner: "none" (default), "jacobi" or "multigrid" (smoothing.PRECONDITIONERS). Jacobi does not
    pay here: measured at 1 MP, "fast", 1 thread, it took 354 iterations and 43 s against 275 and 23 s
    without. The multigrid takes 4-5x fewer iterations but each costs 5 fused plain ones (4 MP, "fast", 1
    thread, 2026-12-03: 35.6 s against 25.4-27.2 s, +0.5-0.6 GiB), so it is not the default
    (docs/experiments/2026-11-smoothing-solver.md).
    report: if a dict, filled with timings, iterations and the memory plan. plan: the memory plan
    (engine.memory.plan_highres) a caller made before work of its own; None: planned here, before any work,
    against ``available`` bytes (default: what the OS reports free).
    """
    if smoothing not in SMOOTHING_TOL and smoothing != "off":
        raise ValueError(f"smoothing must be 'off', 'fast' or 'exact', got {smoothing!r}")
    t0 = time.perf_counter()
    content_full = as_image_tensor(content_full, torch.float32).contiguous()
    content_small = as_image_tensor(content_small)
    result_small = as_image_tensor(result_small) if not isinstance(result_small, torch.Tensor) else result_small
    if tuple(content_small.shape[1:]) != tuple(result_small.shape[1:]):
        raise ValueError(f"content_small and result_small must have the same (H, W), got "
                         f"{tuple(content_small.shape[1:])} and {tuple(result_small.shape[1:])}")
    h, w = content_full.shape[1:]
    info = report if report is not None else {}
    if plan is None:
        plan = plan_highres(h, w, device=content_full.device, available=available, smoothing=smoothing,
                            preconditioner=preconditioner,
                            working_pixels=content_small.shape[1] * content_small.shape[2])
    info["memory_estimate"] = plan.estimate
    info["memory_available"] = plan.available
    if callback is not None:
        callback("plan", plan)
    y, step, done = None, "upsample", [0]

    def on_cg(level, it, rel):
        done[0] = it
        if callback is not None:
            callback("smooth", (it, rel))

    try:
        t = time.perf_counter()
        y = affine_upsample(content_full, content_small, result_small, affine_radius, affine_eps,
                            out_dtype=torch.float32)
        info["upsample_seconds"] = time.perf_counter() - t
        if callback is not None:
            callback("upsample", info["upsample_seconds"])
        out = y
        if smoothing != "off":
            step = "smooth"
            t = time.perf_counter()
            res = smooth(content_full, y, beta=beta, tol=SMOOTHING_TOL[smoothing] if tol is None else tol,
                         normalize=normalize, maxiter=maxiter, x0=y, laplacian_dtype=torch.float32,
                         vector_dtype=cg_vector_dtype(content_full.device, preconditioner),
                         preconditioner=preconditioner, callback=on_cg)
            out = res.solution.to(torch.float32)
            info.update(smooth_seconds=time.perf_counter() - t, smooth_iterations=res.iterations,
                        smooth_residual=res.relative_residual, smooth_converged=res.converged)
    except KeyboardInterrupt:
        # Once the upsampling is done it is a complete full-size image (the smoothing only refines it).
        raise HighresInterrupted(None if y is None else y.clamp_(0.0, 1.0), step, done[0]) from None
    del y
    if clamp:
        out.clamp_(0.0, 1.0)
    info["seconds"] = time.perf_counter() - t0
    if callback is not None:
        callback("done", info["seconds"])
    return out
