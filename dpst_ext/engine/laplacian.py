"""The matting Laplacian of an image as a Python object: the library's front door for researchers.

    >>> L = MattingLaplacian(image)            # image: (3, H, W) float tensor, values 0..1
    >>> Lv = L @ v                              # v: (H, W) or (C, H, W); matrix-free, O(HW)
    >>> L.quad(v)                               # sum_c v_c^T L v_c, differentiable in v
    >>> L.diagonal(), L.to_scipy(), L.to_torch_sparse()
    >>> K = L.stencil(); K @ v                  # L stored as 12 values per pixel: a faster, more accurate L v

M_ij = sum over 3x3 windows w_k containing i and j of
       delta_ij - (1 + (I_i - mu_k)^T (Sigma_k + eps/9 I_3)^-1 (I_j - mu_k)) / 9      (Levin et al. 2008)
with windows lying fully inside the image. Pixels are numbered row-major: i = y * W + x.
"""
from __future__ import annotations

import numpy as np
import torch

from . import ops

__all__ = ["MattingLaplacian", "LaplacianStencil", "STENCIL_OFFSETS", "as_image_tensor"]

# The 12 neighbours (dy, dx) after a pixel in row-major order whose entries LaplacianStencil stores.
STENCIL_OFFSETS = ((0, 1), (0, 2), (1, -2), (1, -1), (1, 0), (1, 1), (1, 2), (2, -2), (2, -1), (2, 0), (2, 1), (2, 2))


def as_image_tensor(image, dtype=None) -> torch.Tensor:
    """A (3, H, W) float tensor from a torch tensor (3, H, W) or a numpy array (H, W, 3).

    numpy uint8 arrays are scaled to 0..1; float arrays are taken as they are.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image as a numpy array must have shape (H, W, 3), got {image.shape}")
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        elif image.dtype == np.uint16:
            image = image.astype(np.float32) / 65535.0
        elif not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"image as a numpy array must be uint8, uint16 or floating point, got {image.dtype}")
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor (3, H, W) or a numpy array (H, W, 3), got {type(image).__name__}")
    if dtype is not None:
        image = image.to(dtype)
    elif image.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"image must be float32 or float64, got {image.dtype} (pass dtype= to convert)")
    return image


class MattingLaplacian:
    """Matting Laplacian of ``image`` (3x3 windows, regularisation ``eps``), held matrix-free.

    Holds the image and its window statistics (36 bytes per pixel in float32). Every product uses the
    compiled op on the image's device; results have the image's dtype.
    """

    def __init__(self, image, eps: float = 1e-7, dtype=None):
        self.image = as_image_tensor(image, dtype).contiguous()
        self.eps = float(eps)
        self.stats = ops.window_stats(self.image, self.eps)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.image.shape[1]

    @property
    def width(self) -> int:
        return self.image.shape[2]

    @property
    def shape(self):
        n = self.height * self.width
        return (n, n)

    @property
    def dtype(self):
        return self.image.dtype

    @property
    def device(self):
        return self.image.device

    def __repr__(self):
        return (f"MattingLaplacian({self.height}x{self.width}, eps={self.eps:g}, dtype={self.dtype}, "
                f"device={self.device})")

    # -- products ------------------------------------------------------------------------------
    def _values(self, v, name="v"):
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(v).__name__}")
        if v.is_complex():
            raise TypeError(f"{name} must be real (L is real: apply it to the real and imaginary parts), "
                            f"got {v.dtype} (complex)")
        hw = (self.height, self.width)
        if v.dim() == 2 and tuple(v.shape) == hw:
            return v.unsqueeze(0), True
        if v.dim() == 1 and v.numel() == hw[0] * hw[1]:
            return v.reshape(1, *hw), "flat"
        if v.dim() == 3 and tuple(v.shape[1:]) == hw:
            return v, False
        raise ValueError(f"{name} must have shape (H, W), (C, H, W) or (H*W,) with H, W = {hw}, "
                         f"got {tuple(v.shape)}")

    def matvec(self, v):
        """L v for v of shape (H, W), (C, H, W) or (H*W,); same shape out."""
        is_np = isinstance(v, np.ndarray)
        v3, squeeze = self._values(v)
        out = ops.laplacian_matvec(self.image, self.stats, v3.to(self.image))
        if squeeze == "flat":
            out = out.reshape(-1)
        elif squeeze:
            out = out[0]
        return out.numpy() if is_np else out

    __matmul__ = matvec

    def quad(self, v) -> torch.Tensor:
        """sum_c v_c^T L v_c (0-dim tensor). Differentiable in v: the gradient is 2 L v."""
        v3, _ = self._values(v)
        return ops.photoreal_loss(self.image, self.stats, v3.to(self.image))

    def diagonal(self) -> torch.Tensor:
        """diag(L) as an (H, W) tensor (e.g. for a Jacobi preconditioner)."""
        return ops.laplacian_diagonal(self.image, self.stats)

    def stencil(self) -> "LaplacianStencil":
        """L stored as a 5x5 stencil (LaplacianStencil): 48 bytes per pixel in float32 against the 36 of the
        window statistics, for products about 2x faster and, in float32 on photos with near-singular windows,
        4-30x more accurate (docs/engine.md)."""
        return LaplacianStencil(self.image, self.eps)

    # -- explicit matrix -----------------------------------------------------------------------
    def csr(self):
        """(crow, col, values) of L: fixed width min(H,5)*min(W,5) per row, sorted, explicit zeros."""
        return ops.laplacian_csr(self.image, self.stats)

    def to_torch_sparse(self) -> torch.Tensor:
        crow, col, val = self.csr()
        # Valid by construction (sorted, fixed width), so the O(nnz) invariant check is skipped.
        return torch.sparse_csr_tensor(crow, col, val, size=self.shape, check_invariants=False)

    def to_scipy(self):
        """scipy.sparse.csr_matrix (float64 or float32 values, as the image)."""
        import scipy.sparse

        crow, col, val = (t.cpu().numpy() for t in self.csr())
        return scipy.sparse.csr_matrix((val, col, crow), shape=self.shape)


def _neighbour_slices(h: int, w: int, dy: int, dx: int):
    """(rows, cols) of pixels i and of their neighbours j = i + (dy, dx) that lie inside an h x w image."""
    i = (slice(0, h - dy), slice(max(-dx, 0), w - max(dx, 0)))
    j = (slice(dy, h), slice(max(dx, 0), w + min(dx, 0)))
    return i, j


class LaplacianStencil:
    """The matting Laplacian M of ``image`` (3x3 windows, regularisation ``eps``) stored as a 5x5 stencil:
    ``weights`` (12, H, W), plane q holding M_{i, i + d_q} for the q-th offset of STENCIL_OFFSETS (0 where
    i + d_q lies outside the image), computed in double from the image, window statistics included
    (ops.laplacian_stencil), in the image's dtype. Holds the image (by reference) and the weights: 48 bytes per
    pixel in float32; never the window statistics.

    M is symmetric with rows summing to 0, so these 12 values per pixel are all of it: the product is
    (M v)_i = sum_q K_q(i) (v_{i+d_q} - v_i) + K_q(i-d_q) (v_{i-d_q} - v_i) (ops.stencil_matvec), and
    M_ii = -sum_{j != i} M_ij. The entries are bounded (|M_ij| <= 10), so float32 weights hold them to float32
    precision, and the differences keep constants exactly in M's null space.
    """

    def __init__(self, image, eps: float = 1e-7, dtype=None):
        self.image = as_image_tensor(image, dtype).contiguous()
        self.eps = float(eps)
        self.weights = ops.laplacian_stencil(self.image, self.eps)

    @property
    def height(self) -> int:
        return self.weights.shape[1]

    @property
    def width(self) -> int:
        return self.weights.shape[2]

    @property
    def dtype(self):
        return self.weights.dtype

    @property
    def device(self):
        return self.weights.device

    def __repr__(self):
        return f"LaplacianStencil({self.height}x{self.width}, dtype={self.dtype}, device={self.device})"

    def matvec(self, v: torch.Tensor, out: torch.Tensor | None = None, normalized: bool = False) -> torch.Tensor:
        """M v for v (C, H, W) in the stencil's dtype; into ``out`` when given (ops.stencil_matvec_out: a
        buffer reused across products, not differentiable). ``normalized``: the normalised Laplacian's
        product D^-1/2 M D^-1/2 v instead, D = diag(n) with n_i the number of 3x3 windows containing pixel i
        (smoothing.window_counts: FastPhotoStyle's degree), in the same pass."""
        if out is not None:
            return ops.stencil_matvec_out(self.weights, v, out, normalized)
        return ops.stencil_matvec(self.weights, v, normalized)

    __matmul__ = matvec

    def matvec_dots(self, v: torch.Tensor, out: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """M v (or, ``normalized``, D^-1/2 M D^-1/2 v) into ``out`` (as ``matvec``), returning (3, C) float64:
        v.v, v.(M v) and (M v).(M v) per channel, summed in the same pass (ops.stencil_matvec_dots: what a CG
        iteration needs of p and A p)."""
        return ops.stencil_matvec_dots(self.weights, v, out, normalized)

    def _off_diagonal(self, v: torch.Tensor | None, absolute: bool) -> torch.Tensor:
        """sum_{j != i} f(M_ij) v_j as (H, W) float64, f = abs or identity; v None means ones."""
        h, w = self.height, self.width
        out = torch.zeros(h, w, dtype=torch.float64, device=self.device)
        for q, (dy, dx) in enumerate(STENCIL_OFFSETS):
            if dy >= h or abs(dx) >= w:
                continue
            i, j = _neighbour_slices(h, w, dy, dx)
            k = self.weights[q][i].to(torch.float64)
            if absolute:
                k = k.abs()
            out[i] += k if v is None else k * v[j]     # row i's entry M_{i,j}
            out[j] += k if v is None else k * v[i]     # row j's entry M_{j,i} = M_{i,j}
        return out

    def diagonal(self) -> torch.Tensor:
        """diag(M) as (H, W) float64: minus the row's other entries (rows sum to 0)."""
        return self._off_diagonal(None, absolute=False).neg_()

    def abs_matvec(self, v: torch.Tensor) -> torch.Tensor:
        """|M| v for v (H, W), float64: the l1 row sums |M| 1 bound a smoother's spectrum (multigrid)."""
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != (self.height, self.width):
            raise ValueError(f"v must be a single (H, W) = {(self.height, self.width)} map, "
                             f"got {tuple(getattr(v, 'shape', ()))}")
        v = v.to(torch.float64)
        return self._off_diagonal(v, absolute=True).add_(self.diagonal().abs_().mul_(v))
