"""The engine's custom ops (schemas in csrc/dpst.cpp), their fake kernels and the loss's autograd.

Each op takes the image (3, H, W) and its window statistics (9, H-2, W-2); see csrc/window_math.h for
the maths. Importing this module loads the compiled extension, which registers the CPU (and, in a
CUDA build, CUDA) kernels under ``torch.ops.dpst``.
"""
import torch

from . import _C  # noqa: F401  (registers torch.ops.dpst.*)

__all__ = ["window_stats", "laplacian_matvec", "laplacian_diagonal", "laplacian_csr", "photoreal_loss"]


def window_stats(image: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Mean colour and whitening matrix of every 3x3 window: (9, H-2, W-2), image dtype."""
    return torch.ops.dpst.window_stats.default(image, eps)


def laplacian_matvec(image: torch.Tensor, stats: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """M v for each of v's channels, v of shape (C, H, W). Matrix-free, O(HW)."""
    return torch.ops.dpst.laplacian_matvec.default(image, stats, v)


def laplacian_diagonal(image: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """diag(M) as an (H, W) tensor."""
    return torch.ops.dpst.laplacian_diagonal.default(image, stats)


def laplacian_csr(image: torch.Tensor, stats: torch.Tensor):
    """(crow, col, values) of M in fixed-width CSR (min(H,5)*min(W,5) sorted entries per row)."""
    return torch.ops.dpst.laplacian_csr.default(image, stats)


def photoreal_loss(image: torch.Tensor, stats: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_c v_c^T M v_c as a 0-dim tensor; differentiable in v (gradient 2 M v)."""
    return torch.ops.dpst.photoreal_loss.default(image, stats, v)


# ---- fake (meta) kernels: the C++ shape rules, repeated for torch.compile and opcheck ----------

def _windows(n):
    return max(n - 2, 0)


def _check_image(image):
    torch._check(image.dim() == 3 and image.shape[0] == 3,
                 lambda: f"image must have shape (3, H, W) (RGB, channels first), got {tuple(image.shape)}")
    torch._check(image.dtype in (torch.float32, torch.float64),
                 lambda: f"image must be float32 or float64, got {image.dtype}")


def _check_stats(image, stats):
    _check_image(image)
    want = (9, _windows(image.shape[1]), _windows(image.shape[2]))
    torch._check(tuple(stats.shape) == want,
                 lambda: f"stats must have shape (9, H-2, W-2) = {want}, got {tuple(stats.shape)}")
    torch._check(stats.dtype == image.dtype,
                 lambda: f"stats must have the image's dtype {image.dtype}, got {stats.dtype}")
    torch._check(stats.device == image.device,
                 lambda: f"stats must be on the image's device {image.device}, got {stats.device}")


def _check_values(image, v):
    torch._check(v.dim() == 3 and tuple(v.shape[1:]) == tuple(image.shape[1:]),
                 lambda: f"v must have shape (C, H, W) with the image's H and W, got {tuple(v.shape)}")
    torch._check(v.dtype == image.dtype, lambda: f"v must have the image's dtype {image.dtype}, got {v.dtype}")
    torch._check(v.device == image.device,
                 lambda: f"v must be on the image's device {image.device}, got {v.device}")


@torch.library.register_fake("dpst::window_stats")
def _(image, eps):
    _check_image(image)
    return image.new_empty((9, _windows(image.shape[1]), _windows(image.shape[2])))


@torch.library.register_fake("dpst::laplacian_matvec")
def _(image, stats, v):
    _check_stats(image, stats)
    _check_values(image, v)
    return torch.empty_like(v, memory_format=torch.contiguous_format)


@torch.library.register_fake("dpst::laplacian_diagonal")
def _(image, stats):
    _check_stats(image, stats)
    return image.new_empty(image.shape[1:])


@torch.library.register_fake("dpst::laplacian_csr")
def _(image, stats):
    _check_stats(image, stats)
    h, w = image.shape[1], image.shape[2]
    n = h * w
    nnz = n * min(h, 5) * min(w, 5)
    index_dtype = torch.int64 if nnz >= 2**31 else torch.int32
    return (image.new_empty((n + 1,), dtype=index_dtype), image.new_empty((nnz,), dtype=index_dtype),
            image.new_empty((nnz,)))


@torch.library.register_fake("dpst::photoreal_loss")
def _(image, stats, v):
    _check_stats(image, stats)
    _check_values(image, v)
    return image.new_empty(())


# ---- autograd ------------------------------------------------------------------------------------
# M is a fixed function of the content image: no gradient flows to image or stats, only to v.

def _matvec_setup_context(ctx, inputs, output):
    image, stats, _ = inputs
    ctx.save_for_backward(image, stats)


def _matvec_backward(ctx, grad):
    image, stats = ctx.saved_tensors
    # M is symmetric, so the vector-Jacobian product M^T g is the same op again.
    grad_v = laplacian_matvec(image, stats, grad.contiguous()) if ctx.needs_input_grad[2] else None
    return None, None, grad_v


torch.library.register_autograd("dpst::laplacian_matvec", _matvec_backward, setup_context=_matvec_setup_context)


# d/dv (v^T M v) = 2 M v, through the same matrix-free op.

def _loss_setup_context(ctx, inputs, output):
    image, stats, v = inputs
    ctx.save_for_backward(image, stats, v)


def _loss_backward(ctx, grad):
    image, stats, v = ctx.saved_tensors
    grad_v = None
    if ctx.needs_input_grad[2]:
        grad_v = laplacian_matvec(image, stats, v) * (2 * grad)
    return None, None, grad_v


torch.library.register_autograd("dpst::photoreal_loss", _loss_backward, setup_context=_loss_setup_context)
