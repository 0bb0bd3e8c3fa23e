"""Local affine upsampling: carry a working-size result to the full-resolution content through the local
affine colour model that the matting Laplacian is built on (Levin et al. 2008; He et al. 2010's guided
filter; the DPST reference's "smooth local affine").

1. Fit, at working size, for every (2r+1)^2 window k a map result ~= A_k content + b_k (A_k: C x 3),

       A_k = argmin sum_{i in w_k} |p_i - A I_i - b|^2 + eps * n_k |A - A_0|^2,

   a ridge toward A_0, the *global* least-squares affine map of the whole image (not toward 0, as the
   guided filter does): then a result that is exactly a global affine recolouring p = A I + b is fitted
   exactly by every window (A_k = (Sigma_k + eps)^-1 (Sigma_k A + eps A) = A), flat windows included.
2. Average the coefficients of the windows covering each pixel (the guided filter's second step).
3. Upsample the 4C coefficient fields bilinearly (pixel-centre aligned, as F.interpolate with
   align_corners=False) and apply them to the full-resolution content: out_i = A(x_i) I_i + b(x_i).
   Bilinear weights sum to 1, so constant coefficient fields stay constant: exactness carries to full size.

Edges: the coefficients vary smoothly, and the output follows the *full-resolution* content's edges
because the map is applied to it. Sharper edge handling is the job of the full-resolution matting
smoothing that follows (dpst_ext.engine.smoothing), which is edge-aware by construction.

Step 3 runs in bands of output rows so full-resolution memory is the content, the output and one band.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["box_mean", "guided_coefficients", "global_affine_fit", "upsampling_coefficients", "apply_coefficients", "affine_upsample"]


def box_mean(t: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel of (K, H, W), the window clipped at the border.

    Cumulative sums along each axis: O(1) per pixel whatever the radius. Use float64 for large images:
    the running sums lose ~log2(H W) bits in float32.
    """
    def along(x, dim):
        n = x.shape[dim]
        c = F.pad(x.cumsum(dim), (0, 0, 1, 0) if dim == 1 else (1, 0))     # c[i] = sum of x[:i]
        idx = torch.arange(n, device=x.device)
        hi, lo = (idx + radius + 1).clamp(max=n), (idx - radius).clamp(min=0)
        count = (hi - lo).to(x.dtype).reshape([1, n, 1] if dim == 1 else [1, 1, n])
        return (c.index_select(dim, hi) - c.index_select(dim, lo)) / count

    return along(along(t, 1), 2)


def guided_coefficients(guide: torch.Tensor, p: torch.Tensor, radius: int, eps: float,
                        prior: torch.Tensor | None = None, band_rows: int | None = None) -> torch.Tensor:
    """He et al.'s colour guided filter coefficients (C, 4, H, W) in float64: per (2r+1)^2 window k,
    A_k = (Sigma_k + eps I)^-1 (cov_k(I, p) + eps A_0), b_k = mean_k(p) - A_k mean_k(I), then averaged over
    the windows covering each pixel. ``prior`` A_0 (C, 3) is the ridge's target (None: 0, the guided filter).
    The filtered image is (coef[:, :3] * I).sum(1) + coef[:, 3].

    Computed in bands of ``band_rows`` rows (default max(64, 16 r)), each from its rows and 2r more on
    either side (a pixel's coefficients depend on no row further away), so the float64 temporaries, about
    200 values per pixel, are a band's: the same values (to rounding) as the whole image at once."""
    c, h, w = p.shape
    band = max(64, 16 * radius) if band_rows is None else band_rows
    halo = 2 * radius
    out = torch.empty(c, 4, h, w, dtype=torch.float64, device=p.device)
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        a, b = max(0, y0 - halo), min(h, y1 + halo)
        out[:, :, y0:y1] = _guided_slab(guide[:, a:b], p[:, a:b], radius, eps, prior)[:, :, y0 - a:y1 - a]
    return out


def _guided_slab(guide: torch.Tensor, p: torch.Tensor, radius: int, eps: float,
                 prior: torch.Tensor | None) -> torch.Tensor:
    """guided_coefficients of a slab of rows taken as a whole image (its first and last 2r rows are
    clipped windows unless the slab reaches the image's border)."""
    img, p = guide.to(torch.float64), p.to(torch.float64)
    c, h, w = p.shape
    mu = box_mean(img, radius)                                       # (3, H, W)
    pairs = [(a, b) for a in range(3) for b in range(a, 3)]
    corr = box_mean(torch.stack([img[a] * img[b] for a, b in pairs]), radius)
    sigma = img.new_empty(h, w, 3, 3)
    for n, (a, b) in enumerate(pairs):
        v = corr[n] - mu[a] * mu[b]
        sigma[..., a, b] = v
        sigma[..., b, a] = v
    sigma += eps * torch.eye(3, dtype=torch.float64, device=img.device)
    mean_p = box_mean(p, radius)                                     # (C, H, W)
    corr_ip = box_mean((img[:, None] * p[None]).reshape(3 * c, h, w), radius).reshape(3, c, h, w)
    rhs = (corr_ip - mu[:, None] * mean_p[None]).permute(2, 3, 0, 1)  # (H, W, 3, C)
    if prior is not None:
        rhs = rhs + eps * prior.T
    a_k = torch.linalg.solve(sigma, rhs).permute(3, 2, 0, 1)         # (C, 3, H, W)
    b_k = mean_p - (a_k * mu[None]).sum(1)                           # (C, H, W)
    coef = torch.cat([a_k, b_k[:, None]], dim=1)                     # (C, 4, H, W)
    return box_mean(coef.reshape(4 * c, h, w), radius).reshape(c, 4, h, w)


def _check_pair(content, result, name_c="content", name_r="result", channels: int | None = None):
    """content: a floating (3, H, W) tensor; result: a floating (C, H, W) tensor of the same H, W (C ==
    ``channels`` when given). ValueError / TypeError naming the argument."""
    if not isinstance(content, torch.Tensor) or content.dim() != 3 or content.shape[0] != 3:
        raise ValueError(f"{name_c} must be a (3, H, W) tensor, got "
                         f"{tuple(content.shape) if isinstance(content, torch.Tensor) else type(content).__name__}")
    c = "C" if channels is None else str(channels)
    if (not isinstance(result, torch.Tensor) or result.dim() != 3 or tuple(result.shape[1:]) != tuple(content.shape[1:])
            or channels not in (None, result.shape[0])):
        raise ValueError(f"{name_r} must be a ({c}, H, W) tensor with {name_c}'s H, W = {tuple(content.shape[1:])}, "
                         f"got {tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__}")
    for name, t in ((name_c, content), (name_r, result)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")


def global_affine_fit(content: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """Least-squares (A, b) with result ~= A content + b over all pixels, as a (C, 4) float64 tensor [A | b].

    QR-based least squares (not normal equations), so an exactly affine result is recovered to rounding;
    rank-deficient content (e.g. grey) gets a minimum-norm solution."""
    x = content.to(torch.float64).flatten(1).T                       # (N, 3)
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)             # (N, 4)
    p = result.to(torch.float64).flatten(1).T                        # (N, C)
    sol = torch.linalg.lstsq(x, p, driver="gelsd").solution          # (4, C)
    return sol.T.contiguous()


def upsampling_coefficients(content: torch.Tensor, result: torch.Tensor, radius: int = 1, eps: float = 1e-4) -> torch.Tensor:
    """Per-pixel affine coefficients (C, 4, H, W) float64 with result ~= A content + b locally (module
    docstring, steps 1-2). ``eps`` is the ridge on the colour covariance (colours in 0..1)."""
    _check_pair(content, result)
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0 (the ridge keeps flat windows solvable), got {eps}")
    a0 = global_affine_fit(content, result)[:, :3]                   # (C, 3): the ridge's target
    return guided_coefficients(content, result, radius, eps, prior=a0)


def _source_index(out_size: int, in_size: int, start: int, stop: int, device):
    """Bilinear taps for output positions start..stop-1 (half-pixel centres, clamped as F.interpolate)."""
    pos = (torch.arange(start, stop, dtype=torch.float64, device=device) + 0.5) * (in_size / out_size) - 0.5
    pos = pos.clamp(min=0.0)
    lo = pos.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = pos - lo.to(torch.float64)
    return lo, hi, frac


def apply_coefficients(coef: torch.Tensor, content_full: torch.Tensor, band_rows: int = 32,
                       out_dtype=None) -> torch.Tensor:
    """out = A(x) I(x) + b(x) with (C, 4, h, w) coefficients upsampled bilinearly to the content's (H, W).

    Computed in bands of ``band_rows`` output rows, in the wider of the content's dtype and out_dtype
    (float32 content: float32 arithmetic, ~1e-7 relative), to bound memory."""
    if coef.dim() != 4 or coef.shape[1] != 4:
        raise ValueError(f"coef must have shape (C, 4, h, w), got {tuple(coef.shape)}")
    if content_full.dim() != 3 or content_full.shape[0] != 3:
        raise ValueError(f"content_full must have shape (3, H, W), got {tuple(content_full.shape)}")
    c, _, h, w = coef.shape
    H, W = content_full.shape[1:]
    out_dtype = out_dtype or content_full.dtype
    out = torch.empty(c, H, W, dtype=out_dtype, device=content_full.device)
    work = torch.promote_types(content_full.dtype, out_dtype)
    coef = coef.to(work)
    xlo, xhi, xf = _source_index(W, w, 0, W, coef.device)
    xf = xf.to(work)
    for y0 in range(0, H, band_rows):
        y1 = min(H, y0 + band_rows)
        ylo, yhi, yf = _source_index(H, h, y0, y1, coef.device)
        yf = yf.to(work)
        rows = coef[:, :, ylo] * (1 - yf)[:, None] + coef[:, :, yhi] * yf[:, None]        # (C, 4, band, w)
        band = rows[..., xlo] * (1 - xf) + rows[..., xhi] * xf                           # (C, 4, band, W)
        img = content_full[:, y0:y1].to(work)                                    # (3, band, W)
        out[:, y0:y1] = ((band[:, :3] * img[None]).sum(1) + band[:, 3]).to(out_dtype)
    return out


def affine_upsample(content_full: torch.Tensor, content_small: torch.Tensor, result_small: torch.Tensor,
                    radius: int = 1, eps: float = 1e-4, band_rows: int = 32, out_dtype=None) -> torch.Tensor:
    """The working-size ``result_small`` carried to ``content_full``'s resolution (module docstring).

    content_small must be content_full resized to result_small's size. Returns (C, H, W) in
    ``out_dtype`` (default content_full's dtype)."""
    _check_pair(content_small, result_small, "content_small", "result_small")
    if content_full.dim() != 3 or content_full.shape[0] != 3:
        raise ValueError(f"content_full must have shape (3, H, W), got {tuple(content_full.shape)}")
    coef = upsampling_coefficients(content_small, result_small, radius, eps)
    return apply_coefficients(coef, content_full, band_rows, out_dtype)
