"""Memory plan for the high-resolution stage (dpst_ext.engine.highres.upscale_result), checked before any
work.

The estimate counts the tensors the stage holds at its peak, per pixel of the full-resolution output
(N = H * W, C = 3 channels, s = bytes of the Laplacian dtype, v = bytes of the CG vector dtype):

    content (caller's, float32)                        3 * 4
    upsampled result y (content dtype)                 C * 4
    Laplacian: image copy in its dtype + stencil       3 * s (0 if the content already is) + 12 * s
               (built from the image directly: the window statistics are never held)
    operator: diag(A) (float64) and its inverse (v), Jacobi only          8 + v
              (FastPhotoStyle's D^-1/2 is applied inside the product: no map)
    multigrid preconditioner (if chosen), measured                    125
    CG: b, x, r, p                                     4 * C * v  (3 * C * v on float32 vectors: b is y)
    one product A p: u and S u in the Laplacian dtype, then A p (v)   C * s + C * v  (peak of the two)
    unaccounted (allocator, mixed-dtype temporaries), measured         60
    -- or, for the fused iteration (smoothing.fused_iteration: any preconditioner on the CPU or CUDA; its
       vectors are float32, smoothing.cg_vector_dtype, unless vector_dtype says otherwise):
    one product: S u in the Laplacian dtype, and u = p in that dtype unless the matvec reads p itself
    (vectors in the Laplacian dtype)                                    2 * C * s or C * s
    unaccounted, measured on the CPU (estimate / peak 1.03-1.20, tests/test_memory.py, 2026-12-03)   0

The tensors above sum to 204 B/px (220 with Jacobi) for float32 matvecs and float64 vectors with the eager
loop (other devices); FastPhotoStyle's normalised system, measured when it also held D^-1/2 (12 B/px more)
and the operator the 36 B/px window statistics, peaked at ~270 B/px at 4 MP (1.42 GiB total with the
interpreter and a loaded photo), hence the 60 B/px term. The fused iteration without a preconditioner sums
to 192 B/px on float64 vectors, 132 B/px on float32 ones, for either system (estimate / peak:
tests/test_memory.py). The multigrid's 125 B/px: its basis (16), smoother (8) and the setup's probes and
the cycle's temporaries, fitted to the peak of tests/test_memory.py's 1200x1600 "exact" run with heap
reuse (922 MiB measured, 908 estimated, 2026-12-03, when diag(A) was still built for every solve; 917
measured and 850 estimated without it; 1041 MiB when the multigrid ran in the eager loop on float64
vectors).

plus, for smoothing="off", only content + result + the upsampling band; and a fixed interpreter + torch
baseline (measured ~0.35 GB RSS for `import torch, dpst_ext`; on CUDA the device side has no baseline).
tests/test_memory.py measures the peak RSS of the real stage in a subprocess against this estimate.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["MemoryPlan", "estimate_highres_bytes", "available_bytes", "plan_highres", "InsufficientMemoryError",
           "reuse_freed_memory"]

BASELINE_BYTES = 350 * 2**20   # Python + torch + dpst_ext imported (CPU RSS; measured 0.33-0.36 GB)
MULTIGRID_BYTES_PER_PIXEL = 125   # preconditioner="multigrid": basis, smoother, setup and cycle temporaries (measured)
GiB = 2**30


class InsufficientMemoryError(MemoryError):
    """Raised by plan_highres before any work when the estimate exceeds the available memory."""


def reuse_freed_memory(threshold: int = 2**30) -> bool:
    """Let glibc serve tensors up to ``threshold`` bytes from its heap and keep freed memory for reuse.

    torch's CPU allocator does not cache: every new tensor is a malloc, and glibc hands blocks above its
    mmap threshold (adaptive, at most 32 MiB by default) straight to mmap, so each image-sized temporary
    (48 MB for a 4 MP, 3-channel float32 image) is fresh pages the kernel faults in and zeroes, and returns
    on free. Raising M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (mallopt) makes those allocations reuse the
    heap. Measured at 4 MP, 2 threads: a CG iteration of the smoothing 0.21 -> 0.13 s, a multigrid cycle
    0.62 -> 0.30 s (docs/experiments/2026-11-smoothing-solver.md); the fused CG iteration, which reuses its
    buffers, gains little. The price was memory in the eager loop, whose freed blocks did not always fit the
    next request (+0.28 GiB at 4 MP, ~70 B/px); the fused iteration allocates nothing per iteration, and with
    this its peak was ~22 B/px lower at 2 and 4 MP (2026-12-07), so the plan adds nothing for it. The process
    keeps its peak heap until exit. Process-wide, so the CLI calls it and library code does not. Returns
    False where there is no glibc (a no-op).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    value = min(int(threshold), 2**31 - 1)
    return bool(mallopt(m_mmap_threshold, value)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def _nbytes(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def estimate_highres_bytes(height: int, width: int, channels: int = 3, smoothing: str = "fast",
                           laplacian_dtype=torch.float32, vector_dtype=None,
                           preconditioner: str = "none", working_pixels: int = 1024 * 768,
                           band_rows: int = 32, device="cpu") -> int:
    """Peak bytes of upscale_result at (height, width) (module docstring), whichever its smoothing system. The
    working-size fit (float64, ~40 values per working pixel alive at once) is added as it is alive during the
    upsampling only."""
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if smoothing not in ("off", "fast", "exact"):
        raise ValueError(f"smoothing must be 'off', 'fast' or 'exact', got {smoothing!r}")
    from .smoothing import cg_vector_dtype, fused_iteration

    if vector_dtype is None:     # what upscale_result uses
        vector_dtype = cg_vector_dtype(device, preconditioner)
    n, c = height * width, channels
    s, v = _nbytes(laplacian_dtype), _nbytes(vector_dtype)
    content = 3 * 4 * n
    result = c * 4 * n
    upsampling = 40 * 8 * working_pixels + 250 * band_rows * width
    if smoothing == "off":
        peak = content + result + upsampling
    else:
        # The operator's image (a copy unless float32) and M's stencil, 12 values per pixel (built from the
        # image directly: no window statistics).
        lap = (0 if s == 4 else 3 * s) * n + 12 * s * n
        # diag(A) and its inverse only for Jacobi (the normalisation's D^-1/2 is applied inside the product).
        operator = (8 + v if preconditioner == "jacobi" else 0) * n
        if preconditioner == "multigrid":
            operator += MULTIGRID_BYTES_PER_PIXEL * n
        cg = (3 if v == 4 else 4) * c * v * n      # b, x, r, p; on float32 vectors b is the result y itself
        # The fused iteration (smoothing.batched_pcg -> ops.pcg_*) holds u and M u only, and none of the
        # eager loop's mixed-dtype temporaries (measured on the CPU: its slack term is 0).
        fused = fused_iteration(device, preconditioner)
        reads_p = v == s     # no u: SmoothingOperator and _fused_pcg read p itself
        product = ((1 if reads_p else 2) * c * s if fused else c * s + c * v) * n
        slack = (0 if fused else 60) * n
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
