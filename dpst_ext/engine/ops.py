"""The engine's custom ops (schemas in csrc/dpst.cpp), their fake kernels and the loss's autograd.

Each op takes the image (3, H, W) and its window statistics (9, H-2, W-2); see csrc/window_math.h for
the maths. Importing this module loads the compiled extension, which registers the CPU (and, in a
CUDA build, CUDA) kernels under ``torch.ops.dpst``.
"""
import torch

from .. import _C  # noqa: F401  (dpst_ext._C registers torch.ops.dpst.*)

__all__ = ["window_stats", "laplacian_matvec", "laplacian_diagonal", "laplacian_csr", "photoreal_loss",
           "laplacian_stencil", "stencil_matvec", "stencil_matvec_out", "stencil_matvec_dots",
           "pcg_direction", "pcg_curvature", "pcg_update", "pcg_step", "local_affine_fit", "bilateral_affine_apply",
           "smooth_local_affine"]


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


def laplacian_stencil(image: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """M as a 5x5 stencil, (12, H, W) in the image's dtype: plane q holds M_{i, i + d_q} for the 12 neighbours
    after pixel i in row-major order (d_q = (0, 1), (0, 2), (1, -2..2), (2, -2..2)), 0 outside the image;
    computed in double from the image (window statistics included). 48 bytes per pixel in float32
    (csrc/window_math.h)."""
    return torch.ops.dpst.laplacian_stencil.default(image, eps)


def stencil_matvec(stencil: torch.Tensor, v: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """M v for each of v's channels (C, H, W) from laplacian_stencil's output, as differences of v (constants
    stay exactly in M's null space). ``normalized``: the normalised Laplacian's product D^-1/2 M D^-1/2 v
    instead, D = diag(n), n_i the number of 3x3 windows containing pixel i (FastPhotoStyle's degree), as
    (1/n_i) sum_j M_ij (sqrt(n_i/n_j) v_j - v_i)."""
    return torch.ops.dpst.stencil_matvec.default(stencil, v, normalized)


def stencil_matvec_out(stencil: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                       normalized: bool = False) -> torch.Tensor:
    """stencil_matvec written into ``out`` (v's shape and dtype, contiguous, sharing no memory with v), which
    is returned: a solver reuses one buffer instead of allocating an image-sized product every iteration.
    Not differentiable."""
    torch.ops.dpst.stencil_matvec_out.default(stencil, v, out, normalized)
    return out


def stencil_matvec_dots(stencil: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                        normalized: bool = False) -> torch.Tensor:
    """stencil_matvec_out, and (3, C) float64: v.v, v.(M v) and (M v).(M v) per channel, with M v as stored
    in ``out``, summed in double in a fixed order. A CG iteration gets p.Ap = p.p + w p.Mp and |Ap|^2 from
    its product, without a pass of its own over p and M p. Not differentiable."""
    return torch.ops.dpst.stencil_matvec_dots.default(stencil, v, out, normalized)


# ---- fused CG passes on A v = v + weight S v (CPU, CUDA; dpst_ext.engine.smoothing.batched_pcg) ----------
# S v is the stencil's product (M v, or the normalised D^-1/2 M D^-1/2 v), m below.

def pcg_direction(r, inv_diag, p, beta, u) -> None:
    """p = inv_diag.r + beta p per channel, in place (r, p (C, H, W), both float64 or both float32); u = p in
    u's dtype, in place (the matvec's input; None when the matvec reads p). inv_diag: (H, W) float64 or None
    (= 1)."""
    torch.ops.dpst.pcg_direction.default(r, inv_diag, p, beta, u)


def pcg_curvature(p, m, weight: float) -> torch.Tensor:
    """(C,) float64: p.Ap per channel with Ap = p + weight m (m = S u)."""
    return torch.ops.dpst.pcg_curvature.default(p, m, weight)


def pcg_update(x, r, p, m, weight: float, alpha, inv_diag) -> torch.Tensor:
    """x += alpha p, r -= alpha Ap per channel, in place; returns (2, C) float64: r.r and r.(inv_diag.r)."""
    return torch.ops.dpst.pcg_update.default(x, r, p, m, weight, alpha, inv_diag)


def pcg_step(x, r, p, m, weight: float, alpha, beta) -> torch.Tensor:
    """Without a preconditioner, pcg_update and the next pcg_direction in one pass: x += alpha p,
    r -= alpha Ap (Ap = p + weight m), then p = r + beta p, per channel, in place; returns (C,) float64 r.r."""
    return torch.ops.dpst.pcg_step.default(x, r, p, m, weight, alpha, beta)


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


@torch.library.register_fake("dpst::laplacian_stencil")
def _(image, eps):
    _check_image(image)
    return image.new_empty((12, *image.shape[1:]))


@torch.library.register_fake("dpst::stencil_matvec")
def _(stencil, v, normalized=False):
    torch._check(stencil.dim() == 3 and stencil.shape[0] == 12,
                 lambda: f"stencil must have shape (12, H, W) (from laplacian_stencil), got {tuple(stencil.shape)}")
    torch._check(stencil.dtype in (torch.float32, torch.float64),
                 lambda: f"stencil must be float32 or float64, got {stencil.dtype}")
    torch._check(v.dim() == 3 and tuple(v.shape[1:]) == tuple(stencil.shape[1:]),
                 lambda: f"v must have shape (C, H, W) with the stencil's H and W, got {tuple(v.shape)}")
    torch._check(v.dtype == stencil.dtype, lambda: f"v must have the stencil's dtype {stencil.dtype}, got {v.dtype}")
    torch._check(v.device == stencil.device,
                 lambda: f"v must be on the stencil's device {stencil.device}, got {v.device}")
    return torch.empty_like(v, memory_format=torch.contiguous_format)


@torch.library.register_fake("dpst::stencil_matvec_dots")
def _(stencil, v, out, normalized=False):
    torch._check(tuple(out.shape) == tuple(v.shape) and out.dtype == v.dtype,
                 lambda: f"out must have v's shape and dtype, got {tuple(out.shape)} {out.dtype}")
    return torch.ops.dpst.stencil_matvec.default(stencil, v).new_empty((3, v.shape[0]), dtype=torch.float64)


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


def _stencil_setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.normalized = inputs[2] if len(inputs) > 2 else False


def _stencil_backward(ctx, grad):
    (stencil,) = ctx.saved_tensors
    # M and D^-1/2 M D^-1/2 are symmetric: the vector-Jacobian product is the same product again.
    grad_v = stencil_matvec(stencil, grad.contiguous(), ctx.normalized) if ctx.needs_input_grad[1] else None
    return None, grad_v, None


torch.library.register_autograd("dpst::stencil_matvec", _stencil_backward, setup_context=_stencil_setup_context)


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


# ---- smooth local affine (post-processing; csrc/affine_math.h, definition engine/postprocess.py) ---

def local_affine_fit(content: torch.Tensor, output: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Per-pixel least-squares 3x4 affine maps content -> output over 3x3 windows: (12, H, W)."""
    return torch.ops.dpst.local_affine_fit.default(content, output, ridge)


def bilateral_affine_apply(coeffs: torch.Tensor, content: torch.Tensor, radius: int = 15,
                           edge: float = 0.01) -> torch.Tensor:
    """Joint-bilateral filter of coeffs (12, H, W) guided by content, then A' [content; 1]: (3, H, W)."""
    return torch.ops.dpst.bilateral_affine_apply.default(coeffs, content, radius, edge)


def smooth_local_affine(content: torch.Tensor, output: torch.Tensor, radius: int = 15, edge: float = 0.01,
                        ridge: float = 1e-3) -> torch.Tensor:
    """The reference's smooth local affine of ``output`` guided by ``content`` (both (3, H, W), 0..1).

    Same maths as dpst_ext.engine.postprocess.smooth_local_affine_torch; returns (3, H, W) in content's dtype, not
    clamped. output is converted to content's dtype, as there.
    """
    output = output.to(content.dtype)
    return bilateral_affine_apply(local_affine_fit(content, output, ridge), content, radius, edge)


def _check_like_content(content, t, planes, name):
    want = (planes, *content.shape[1:])
    torch._check(tuple(t.shape) == want,
                 lambda: f"{name} must have shape ({planes}, H, W) = {want} like content, got {tuple(t.shape)}")
    torch._check(t.dtype == content.dtype, lambda: f"{name} must have content's dtype {content.dtype}, got {t.dtype}")
    torch._check(t.device == content.device,
                 lambda: f"{name} must be on content's device {content.device}, got {t.device}")


def _check_guide(content):
    torch._check(content.dim() == 3 and content.shape[0] == 3,
                 lambda: f"content must have shape (3, H, W) (RGB, channels first), got {tuple(content.shape)}")
    torch._check(content.dtype in (torch.float32, torch.float64),
                 lambda: f"content must be float32 or float64, got {content.dtype}")


@torch.library.register_fake("dpst::local_affine_fit")
def _(content, output, ridge):
    _check_guide(content)
    _check_like_content(content, output, 3, "output")
    torch._check(ridge > 0, lambda: f"ridge must be a positive finite number, got {ridge}")
    return content.new_empty((12, *content.shape[1:]))


@torch.library.register_fake("dpst::bilateral_affine_apply")
def _(coeffs, content, radius, edge):
    _check_guide(content)
    _check_like_content(content, coeffs, 12, "coeffs")
    torch._check(0 <= radius <= 1000, lambda: f"radius must lie in 0..1000, got {radius}")
    torch._check(edge > 0, lambda: f"edge must be a positive finite number, got {edge}")
    return content.new_empty((3, *content.shape[1:]))
