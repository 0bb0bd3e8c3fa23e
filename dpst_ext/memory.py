"""Memory plan for the high-resolution stage (dpst_ext.highres.upscale_result), checked before any work.

The estimate counts the tensors the stage holds at its peak, per pixel of the full-resolution output
(N = H * W, C = 3 channels, s = bytes of the Laplacian dtype, v = bytes of the CG vector dtype):

    content (caller's, float32)                        3 * 4
    upsampled result y (content dtype)                 C * 4
    Laplacian: image copy in its dtype + stats         3 * s (0 if the content already is) + 9 * s
    operator: D^-1/2 (float64 + Laplacian dtype), diag(A) (float64), Jacobi 1/diag (v)   8 + s + 8 (+ v)
    CG: b, x, r, p                                     4 * C * v
    one product A p: u and S u in the Laplacian dtype, then A p (v)   C * s + C * v  (peak of the two)
    unaccounted (allocator, mixed-dtype temporaries), measured         60

The tensors above sum to 212 B/px for float32 matvecs and float64 vectors; the measured peak RSS of the
stage is ~270 B/px at 4 MP (1.42 GiB total with the interpreter and a loaded photo), hence the 60 B/px term.

plus, for smoothing="off", only content + result + the upsampling band; and a fixed interpreter + torch
baseline (measured ~0.35 GB RSS for `import torch, dpst_ext`; on CUDA the device side has no baseline).
tests/test_memory.py measures the peak RSS of the real stage in a subprocess against this estimate.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["MemoryPlan", "estimate_highres_bytes", "available_bytes", "plan_highres", "InsufficientMemoryError"]

BASELINE_BYTES = 350 * 2**20   # Python + torch + dpst_ext imported (CPU RSS; measured 0.33-0.36 GB)
GiB = 2**30


class InsufficientMemoryError(MemoryError):
    """Raised by plan_highres before any work when the estimate exceeds the available memory."""


def _nbytes(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def estimate_highres_bytes(height: int, width: int, channels: int = 3, smoothing: str = "fast",
                           laplacian_dtype=torch.float32, vector_dtype=torch.float64,
                           preconditioner: str = "none", working_pixels: int = 1024 * 768,
                           band_rows: int = 32, device="cpu") -> int:
    """Peak bytes of upscale_result at (height, width) (module docstring). The working-size fit
    (float64, ~40 values per working pixel alive at once) is added as it is alive during the upsampling only."""
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if smoothing not in ("off", "fast", "exact"):
        raise ValueError(f"smoothing must be 'off', 'fast' or 'exact', got {smoothing!r}")
    n, c = height * width, channels
    s, v = _nbytes(laplacian_dtype), _nbytes(vector_dtype)
    content = 3 * 4 * n
    result = c * 4 * n
    upsampling = 40 * 8 * working_pixels + 250 * band_rows * width
    if smoothing == "off":
        peak = content + result + upsampling
    else:
        lap = (0 if s == 4 else 3 * s) * n + 9 * s * n
        operator = (8 + s + 8 + (v if preconditioner == "jacobi" else 0)) * n
        cg = 4 * c * v * n
        product = (c * s + c * v) * n
        slack = 60 * n
        peak = content + result + lap + operator + cg + product + slack
    base = BASELINE_BYTES if torch.device(device).type == "cpu" else 0
    return int(peak + base)


def available_bytes(device="cpu") -> int:
    """Memory the stage may use: MemAvailable of /proc/meminfo on Linux CPUs, free device memory on CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    # Not Linux: fall back to total physical memory as the OS reports it.
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@dataclass
class MemoryPlan:
    height: int
    width: int
    estimate: int
    available: int
    smoothing: str

    @property
    def fits(self) -> bool:
        return self.estimate <= self.available

    def message(self) -> str:
        return (f"the high-resolution stage at {self.width}x{self.height} ({self.height * self.width / 1e6:.1f} MP, "
                f"smoothing={self.smoothing!r}) needs about {self.estimate / GiB:.2f} GiB, "
                f"{self.available / GiB:.2f} GiB available")


def plan_highres(height: int, width: int, device="cpu", available: int | None = None, safety: float = 0.9,
                 **options) -> MemoryPlan:
    """Estimate and check before any work; raise InsufficientMemoryError saying what to change.

    ``available`` overrides the measured free memory (tests, or a budget); ``safety`` keeps that fraction of
    it usable. ``options`` go to estimate_highres_bytes."""
    est = estimate_highres_bytes(height, width, device=device, **options)
    avail = available_bytes(device) if available is None else int(available)
    plan = MemoryPlan(height, width, est, int(avail * safety), options.get("smoothing", "fast"))
    if not plan.fits:
        hints = []
        per_px = max(est - (BASELINE_BYTES if torch.device(device).type == "cpu" else 0), 1) / (height * width)
        max_px = (plan.available - (BASELINE_BYTES if torch.device(device).type == "cpu" else 0)) / per_px
        if max_px > 0:
            side = int((max_px * max(height, width) / min(height, width)) ** 0.5)
            hints.append(f"cap the output size (--max-output {side} / max_output={side} fits this budget)")
        if plan.smoothing != "off":
            off = estimate_highres_bytes(height, width, device=device, **{**options, "smoothing": "off"})
            hints.append(f"turn the full-resolution smoothing off (--smoothing off: about {off / GiB:.2f} GiB)")
        hints.append("or keep the working-size result (--output-size working)")
        raise InsufficientMemoryError("refusing to start: " + plan.message() + "; " + "; ".join(hints) + ".")
    return plan
