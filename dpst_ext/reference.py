"""Slow, readable references built straight from the formula — the oracles the tests compare with.

Nothing here calls the compiled ops, and the formulation is deliberately the textbook one (explicit
covariance and explicit 3x3 inverse), not the engine's whitened one, so the two share no arithmetic.

Levin, Lischinski, Weiss 2008, 3x3 windows lying fully inside the image:

    M_ij = sum_{k : i, j in w_k} ( delta_ij - (1/9) (1 + (I_i - mu_k)^T A_k (I_j - mu_k)) ),
    A_k  = (Sigma_k + eps/9 I_3)^-1,

with mu_k, Sigma_k the mean and biased (1/9) covariance of the window's 9 colours. Pixels are numbered
row-major, i = y * W + x.

Every function takes ``dtype``: ``np.float64`` for the everyday oracle, ``np.longdouble`` (80-bit
extended on x86: 64-bit mantissa, ~2000x finer than float64) to measure float64 codes in the hardest
windows, where Sigma_k has eigenvalues below eps/9 and A_k has condition number ~1e8. The 3x3 inverse
is the adjugate formula, so it runs in any numpy dtype (np.linalg has no longdouble).

Cost: O(HW) vectorised numpy for the blocks and the products; the dense matrix is O((HW)^2), so keep
``matting_laplacian_dense`` to images of a few thousand pixels.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse

__all__ = ["as_hwc", "window_blocks", "matting_laplacian_reference", "matting_laplacian_dense",
           "matvec_reference", "diagonal_reference", "loss_reference"]


def as_hwc(image) -> np.ndarray:
    """An (H, W, 3) numpy array from a torch (3, H, W) tensor or an (H, W, 3) array (values kept)."""
    if hasattr(image, "detach"):  # torch tensor, channels first
        return image.detach().cpu().numpy().transpose(1, 2, 0)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) or be a torch (3, H, W) tensor, got {image.shape}")
    return image


def _inverse_3x3(a: np.ndarray) -> np.ndarray:
    """Inverse of a stack (..., 3, 3) by the adjugate: inv(A) = adj(A) / det(A), in a's dtype."""
    r0, r1, r2 = a[..., 0, :], a[..., 1, :], a[..., 2, :]
    c0, c1, c2 = np.cross(r1, r2), np.cross(r2, r0), np.cross(r0, r1)  # columns of adj(A)
    det = np.sum(r0 * c0, axis=-1)
    return np.stack([c0, c1, c2], axis=-1) / det[..., None, None]


def window_blocks(image, eps: float = 1e-7, dtype=np.float64):
    """Every window's 9x9 block and its pixel indices.

    Returns (ids, blocks): ids (K, 9) int64 row-major pixel indices of the window's pixels (window
    order: top-left pixel row-major), blocks (K, 9, 9) in ``dtype`` with
    blocks[k, a, b] = delta_ab - (1 + d_a^T A_k d_b) / 9,  d_a = I_a - mu_k.
    K = (H-2)(W-2), or 0 when the image is smaller than 3 in either dimension.
    """
    img = as_hwc(image).astype(dtype)
    h, w, _ = img.shape
    kh, kw = max(h - 2, 0), max(w - 2, 0)
    if kh == 0 or kw == 0:
        return np.zeros((0, 9), np.int64), np.zeros((0, 9, 9), dtype)
    # colours[k, a, :] = colour of the window's pixel a = 3 * dy + dx.
    colours = np.stack([img[dy:dy + kh, dx:dx + kw] for dy in range(3) for dx in range(3)], axis=2)
    colours = colours.reshape(kh * kw, 9, 3)
    idx = np.arange(h * w).reshape(h, w)
    ids = np.stack([idx[dy:dy + kh, dx:dx + kw] for dy in range(3) for dx in range(3)], axis=2)
    ids = ids.reshape(kh * kw, 9)

    mu = colours.sum(axis=1) / dtype(9)
    d = colours - mu[:, None, :]
    sigma = np.einsum("kai,kaj->kij", d, d) / dtype(9)
    a = _inverse_3x3(sigma + dtype(eps) / dtype(9) * np.eye(3, dtype=dtype))
    blocks = np.eye(9, dtype=dtype) - (dtype(1) + np.einsum("kai,kij,kbj->kab", d, a, d)) / dtype(9)
    return ids, blocks


def matting_laplacian_reference(image, eps: float = 1e-7) -> scipy.sparse.csr_matrix:
    """The matting Laplacian as a float64 scipy CSR matrix (duplicates summed, sorted indices)."""
    h, w = as_hwc(image).shape[:2]
    n = h * w
    ids, blocks = window_blocks(image, eps, np.float64)
    rows = np.repeat(ids, 9, axis=1).reshape(-1)
    cols = np.tile(ids, (1, 9)).reshape(-1)
    m = scipy.sparse.coo_matrix((blocks.reshape(-1), (rows, cols)), shape=(n, n)).tocsr()
    m.sort_indices()
    return m


def matting_laplacian_dense(image, eps: float = 1e-7, dtype=np.longdouble) -> np.ndarray:
    """The matting Laplacian as a dense (HW, HW) array in ``dtype`` (scipy.sparse has no longdouble)."""
    h, w = as_hwc(image).shape[:2]
    ids, blocks = window_blocks(image, eps, dtype)
    dense = np.zeros((h * w, h * w), dtype=dtype)
    np.add.at(dense, (ids[:, :, None], ids[:, None, :]), blocks)
    return dense


def matvec_reference(image, v, eps: float = 1e-7, dtype=np.longdouble) -> np.ndarray:
    """M v window by window in ``dtype``, for v of shape (C, H, W); returns (C, H, W) in ``dtype``.

    Matrix-free (sum_k of block_k @ v restricted to window k), so it handles images too large for the
    dense matrix: the measuring stick for benchmarks/accuracy.py.
    """
    h, w = as_hwc(image).shape[:2]
    v = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v).astype(dtype)
    c = v.shape[0]
    flat = v.reshape(c, h * w)
    ids, blocks = window_blocks(image, eps, dtype)
    out = np.zeros((c, h * w), dtype=dtype)
    for ch in range(c):
        np.add.at(out[ch], ids, np.einsum("kab,kb->ka", blocks, flat[ch][ids]))
    return out.reshape(c, h, w)


def diagonal_reference(image, eps: float = 1e-7, dtype=np.float64) -> np.ndarray:
    """diag(M) as (H, W) in ``dtype``."""
    h, w = as_hwc(image).shape[:2]
    ids, blocks = window_blocks(image, eps, dtype)
    out = np.zeros(h * w, dtype=dtype)
    np.add.at(out, ids, np.diagonal(blocks, axis1=1, axis2=2))
    return out.reshape(h, w)


def loss_reference(image, v, eps: float = 1e-7, dtype=np.float64):
    """sum_c v_c^T M v_c in ``dtype`` (v of shape (C, H, W))."""
    v = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v).astype(dtype)
    return np.sum(v * matvec_reference(image, v, eps, dtype))
