"""The numerical core, importable alone: no VGG, no masks, no image files, no style-transfer pipeline.

    ops          the custom ops torch.ops.dpst.* (kernels in csrc/): window statistics, L·v, diagonal,
                 CSR, v^T L v with its autograd, the 5x5 stencil and its product, smooth local affine;
                 fake kernels for torch.compile
    laplacian    MattingLaplacian, the matting Laplacian of a photo as a matrix-free operator, and
                 LaplacianStencil, the same stored as 12 values per pixel (L.stencil())
    smoothing    the closed-form matting smoothing (I + w S) r = y by batched preconditioned CG
    multigrid    its preconditioner whose coarse spaces are local affine colour models
    upsample     local affine upsampling of a working-size result to the full-size photo
    memory       the memory plan of the full-resolution stage, checked before any work
    highres      upscale_result: that plan, then upsampling, then smoothing
    postprocess  smooth local affine (the ops' readable definition) and the guided filter
    reference    slow float64 / exact references the tests compare the ops with

    >>> from dpst_ext.engine import MattingLaplacian
    >>> L = MattingLaplacian(image)             # (3, H, W), values 0..1;  L @ v, L.quad(v), L.diagonal()

The names below load their module on first use (``import dpst_ext.engine`` alone imports nothing
heavy; ``ops`` loads the compiled extension dpst_ext._C).
"""
from ._lazy import lazy_getattr

_SUBMODULES = ("ops", "laplacian", "smoothing", "multigrid", "upsample", "memory", "highres", "postprocess",
               "reference")
_EXPORTS = {  # name -> the submodule that defines it
    "MattingLaplacian": "laplacian", "LaplacianStencil": "laplacian", "as_image_tensor": "laplacian",
    "smooth": "smoothing", "AffineMultigrid": "multigrid", "affine_upsample": "upsample",
    "plan_highres": "memory", "InsufficientMemoryError": "memory", "upscale_result": "highres",
    "smooth_local_affine": "ops", "guided_filter": "postprocess",
}

__all__ = [*_SUBMODULES, *_EXPORTS]
__getattr__ = lazy_getattr(__name__, {**{m: (f"{__name__}.{m}", None) for m in _SUBMODULES},
                                      **{n: (f"{__name__}.{m}", n) for n, m in _EXPORTS.items()}})


def __dir__():
    return sorted(set(globals()) | set(__all__))
