"""Slow, readable references built straight from the formulas — the oracles the tests compare with.

Nothing here calls the compiled ops. Use them on small images only (explicit loops over windows).

matting_laplacian_reference: Levin, Lischinski, Weiss 2008, 3x3 windows lying fully inside the image:
    M_ij = sum_{k : i, j in w_k} ( delta_ij - (1/9) (1 + (I_i - mu_k)^T (Sigma_k + eps/9 I_3)^-1 (I_j - mu_k)) )
with mu_k, Sigma_k the mean and (biased, 1/9) covariance of the window's colours.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse

__all__ = ["matting_laplacian_reference"]


def matting_laplacian_reference(image_hwc, eps: float = 1e-7, dtype=np.float64) -> scipy.sparse.csr_matrix:
    """The matting Laplacian as a scipy CSR matrix, computed window by window in ``dtype``.

    ``image_hwc``: (H, W, 3) array. ``dtype=np.longdouble`` gives an 80-bit reference for measuring
    float64 codes (the result is then returned as a dense-backed CSR in longdouble).
    """
    img = np.asarray(image_hwc).astype(dtype)
    h, w, _ = img.shape
    n = h * w
    idx = np.arange(n).reshape(h, w)
    rows, cols, vals = [], [], []
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            win = img[y - 1:y + 2, x - 1:x + 2].reshape(9, 3)
            ids = idx[y - 1:y + 2, x - 1:x + 2].reshape(9)
            mu = win.mean(axis=0)
            d = win - mu
            sigma = d.T @ d / dtype(9)
            inv = np.linalg.inv((sigma + dtype(eps) / dtype(9) * np.eye(3, dtype=dtype)).astype(np.float64))
            if dtype is not np.float64:  # refine the float64 inverse once in the wider type
                a = (sigma + dtype(eps) / dtype(9) * np.eye(3, dtype=dtype))
                inv = inv.astype(dtype)
                inv = inv + inv @ (np.eye(3, dtype=dtype) - a @ inv)
            block = np.eye(9, dtype=dtype) - (dtype(1) + d @ inv @ d.T) / dtype(9)
            rows.append(np.repeat(ids, 9))
            cols.append(np.tile(ids, 9))
            vals.append(block.reshape(-1))
    if not rows:
        return scipy.sparse.csr_matrix((n, n), dtype=dtype)
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    if dtype is np.float64:
        return scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    # scipy sparse has no longdouble arithmetic: accumulate densely.
    dense = np.zeros((n, n), dtype=dtype)
    np.add.at(dense, (rows, cols), vals)
    return dense
