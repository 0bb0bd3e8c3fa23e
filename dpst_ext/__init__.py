"""dpst_ext: Deep Photo Style Transfer with a fast C++/CUDA matting-Laplacian engine.

The engine: ``MattingLaplacian`` (dpst_ext/laplacian.py) over the ops in dpst_ext/ops.py, whose kernels
are csrc/cpu/laplacian_cpu.cpp (CPU) and csrc/cuda/ (CUDA); the per-window maths is csrc/window_math.h.
"""
from .engine import ops
from .engine.laplacian import MattingLaplacian, as_image_tensor
from .transfer import run_transfer, transfer

__all__ = ["ops", "MattingLaplacian", "as_image_tensor", "transfer", "run_transfer"]
__version__ = "0.1.0"
