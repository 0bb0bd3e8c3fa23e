"""Slow, readable references built straight from the formula — the oracles the tests compare with.

Nothing here calls the compiled ops. The float64 path is the textbook evaluation (explicit covariance,
explicit 3x3 inverse), not the engine's whitened one, so the two share no arithmetic.

Levin, Lischinski, Weiss 2008, 3x3 windows lying fully inside the image:

    M_ij = sum_{k : i, j in w_k} ( delta_ij - (1/9) (1 + (I_i - mu_k)^T A_k (I_j - mu_k)) ),
    A_k  = (Sigma_k + eps/9 I_3)^-1,

with mu_k, Sigma_k the mean and biased (1/9) covariance of the window's 9 colours. Pixels are numbered
row-major, i = y * W + x.

Every function takes ``dtype``: ``np.float64`` for the everyday oracle (explicit inverse, the textbook
evaluation), ``np.longdouble`` (80-bit extended on x86: 64-bit mantissa, 2048x finer than float64) to
measure float64 codes in the hardest windows, where Sigma_k has eigenvalues below eps/9 and
Sigma_k + eps/9 I has condition number kappa up to ~1e8. There the explicit inverse is an unstable way to
evaluate the formula: d_a^T A_k d_b sums terms ~|d|^2 / (eps/9) ~ 1e7 that cancel to O(1), and A_k's
rounding sits along the near-null direction, so its error grows like kappa^1.5 * u (measured up to
2e-6 in float64 and 2e-10 in longdouble, against exact rational arithmetic). The longdouble path
therefore evaluates the same quantity as z_a . z_b with z = L^-1 d, L the Cholesky factor of
Sigma_k + eps/9 I (error ~kappa * u, measured <= 1e-11). ``window_blocks_exact`` evaluates the formula
in exact rational arithmetic (fractions.Fraction) for tiny images: the oracle of the oracles.

Cost: O(HW) vectorised numpy for the blocks and the products; the dense matrix is O((HW)^2), so keep
``matting_laplacian_dense`` to images of a few thousand pixels.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse

__all__ = ["as_hwc", "window_blocks", "window_blocks_exact", "matting_laplacian_reference", "matting_laplacian_dense",
           "matvec_reference", "normalized_matvec_reference", "diagonal_reference", "loss_reference"]


def as_hwc(image) -> np.ndarray:
    """An (H, W, 3) numpy array from a torch (3, H, W) tensor or an (H, W, 3) array (values kept)."""
    if hasattr(image, "detach"):  # torch tensor, channels first
        return image.detach().cpu().numpy().transpose(1, 2, 0)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) or be a torch (3, H, W) tensor, got {image.shape}")
    return image


def _whiten(d: np.ndarray, s: np.ndarray) -> np.ndarray:
    """z = L^-1 d for a stack of SPD s = L L^T (..., 3, 3) and vectors d (..., n, 3), in their dtype:
    then d_a^T s^-1 d_b = z_a . z_b. A hand-written 3x3 Cholesky, so it runs in longdouble."""
    l00 = np.sqrt(s[..., 0, 0])
    l10 = s[..., 1, 0] / l00
    l20 = s[..., 2, 0] / l00
    l11 = np.sqrt(s[..., 1, 1] - l10 * l10)
    l21 = (s[..., 2, 1] - l20 * l10) / l11
    l22 = np.sqrt(s[..., 2, 2] - l20 * l20 - l21 * l21)
    z0 = d[..., 0] / l00[..., None]
    z1 = (d[..., 1] - l10[..., None] * z0) / l11[..., None]
    z2 = (d[..., 2] - l20[..., None] * z0 - l21[..., None] * z1) / l22[..., None]
    return np.stack([z0, z1, z2], axis=-1)


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
    s = sigma + dtype(eps) / dtype(9) * np.eye(3, dtype=dtype)
    if dtype == np.float64:   # textbook: q_ab = d_a^T A d_b with the explicit inverse A
        q = np.einsum("kai,kij,kbj->kab", d, np.linalg.inv(s), d)
    else:                     # the same q_ab, evaluated stably (see the module docstring)
        z = _whiten(d, s)
        q = np.einsum("kai,kbi->kab", z, z)
    blocks = np.eye(9, dtype=dtype) - (dtype(1) + q) / dtype(9)
    return ids, blocks


def window_blocks_exact(image, eps: float = 1e-7):
    """window_blocks in exact rational arithmetic on the image's float values and eps (as exact binary
    fractions): (ids (K, 9), blocks (K, 9, 9) object array of fractions.Fraction). Tiny images only
    (~1 ms per window)."""
    from fractions import Fraction

    img = as_hwc(image)
    h, w, _ = img.shape
    e9 = Fraction(float(eps)) / 9
    ids, blocks = [], []
    for y in range(h - 2):
        for x in range(w - 2):
            pix = [(y + j // 3, x + j % 3) for j in range(9)]
            col = [[Fraction(float(img[py, px, c])) for c in range(3)] for py, px in pix]
            mu = [sum(cj[c] for cj in col) / 9 for c in range(3)]
            d = [[cj[c] - mu[c] for c in range(3)] for cj in col]
            s = [[sum(dj[a] * dj[b] for dj in d) / 9 + (e9 if a == b else 0) for b in range(3)] for a in range(3)]
            a = _inverse_3x3_exact(s)
            ad = [[sum(a[r][c] * dj[c] for c in range(3)) for r in range(3)] for dj in d]
            blk = [[(1 if i == j else 0) - (1 + sum(d[i][r] * ad[j][r] for r in range(3))) / 9 for j in range(9)]
                   for i in range(9)]
            ids.append([py * w + px for py, px in pix])
            blocks.append(blk)
    return np.array(ids, dtype=np.int64).reshape(-1, 9), np.array(blocks, dtype=object).reshape(-1, 9, 9)


def _inverse_3x3_exact(m):
    """Adjugate / determinant: exact for fractions."""
    (a, b, c), (d, e, f), (g, h, i) = m
    adj = [[e * i - f * h, c * h - b * i, b * f - c * e],
           [f * g - d * i, a * i - c * g, c * d - a * f],
           [d * h - e * g, b * g - a * h, a * e - b * d]]
    det = a * adj[0][0] + b * adj[1][0] + c * adj[2][0]
    return [[adj[r][s] / det for s in range(3)] for r in range(3)]


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


def normalized_matvec_reference(image, v, eps: float = 1e-7, dtype=np.longdouble) -> np.ndarray:
    """D^-1/2 M D^-1/2 v (FastPhotoStyle's normalised Laplacian) in ``dtype``, for v of shape (C, H, W), with
    D = diag(n): n_i the number of windows containing pixel i, counted from the windows themselves (1 where
    there is none: M's row is 0 there)."""
    h, w = as_hwc(image).shape[:2]
    v = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v).astype(dtype)
    ids, _ = window_blocks(image, eps, np.float64)
    n = np.bincount(ids.reshape(-1), minlength=h * w).reshape(h, w)
    s = dtype(1) / np.sqrt(np.maximum(n, 1).astype(dtype))
    return s * matvec_reference(image, v * s, eps, dtype)


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
