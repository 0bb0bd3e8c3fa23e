"""Multigrid preconditioner for the smoothing system (I + w S) r = y whose coarse spaces are local affine
models of the content: the matrix-free counterpart of smoothed-aggregation AMG with M's null space.

Why plain CG is slow: with w ~ 1e4 the eigenvalues of A = I + w S span [1, ~1e4], and the modes near 1
are the ones S barely sees: colours that are (almost) an affine function of the content's colour, with
slowly varying coefficients. A pixel-local preconditioner (Jacobi) cannot reach them; a coarse grid of
*local affine models* can. Here every coarse node stands for a b x b block of pixels and carries 4
unknowns, the coefficients of an affine function of the content's colour over that block:

    P e = sum over blocks B, j of e_{B,j} q_{B,j},   q_{B,.} = an orthonormal basis of span{1, R, G, B}
                                                      restricted to B (unsmoothed aggregation)

so P reproduces any per-block affine recolouring exactly, and the coarse operator A_c = P^T A P is the
Galerkin projection. The near-null vectors are those S annihilates: [1, R, G, B] for S = M, and
D^1/2 [1, R, G, B] for FastPhotoStyle's S = D^-1/2 M D^-1/2 (the caller passes them).

Levels. Level 0 is the fine operator on (C, H, W) images (on M's stencil). M couples pixels at most 2 apart, so with
b >= 2 each block couples only to its 3 x 3 neighbour blocks: A_c is a 3 x 3 *block stencil* (4 x 4
blocks per neighbour) on the (ceil(H/b), ceil(W/b)) grid. Coarser levels aggregate 2 x 2 nodes the same
way (near-null vectors carried down as P^T B), which keeps the 3 x 3 block stencil, until the problem is
small enough for a dense Cholesky factorisation.

A_c is computed without assembling anything, by probing: for each of the 9 colour classes (y mod 3,
x mod 3) of coarse nodes and each of the 4 unknowns, prolong a unit vector on all nodes of that class at
once, apply A, restrict; since no two nodes of one class are neighbours, each result entry belongs to
exactly one (node, neighbour) pair. That is 9 products with 4 channels on the fine level.

The cycle is a symmetric V- or W-cycle with Chebyshev smoothing on the l1 block-Jacobi preconditioned
operator (polynomial smoothers need no sweeps in order, so they run as whole-tensor ops on any device),
hence a fixed symmetric positive definite preconditioner for CG. Fields at coarse levels are channel-last
(h, w, k, C) so that the block stencil is one batched matrix product per level.

Measured (docs/experiments/2026-11-smoothing-solver.md): CG iterations 4-5x fewer and flat in the size
(67, 65 and 47 at 1, 4 and 12 MP to 1e-3, against 304, 272 and 253), but a preconditioned iteration costs
5 plain fused ones (two fine products, the coarse levels, the transfers and about ten image-sized
element-wise passes), so the solve is 1.1-1.6x slower than plain CG (1 thread, 2026-12-03).
Device-agnostic torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["AffineMultigrid", "block_affine_basis", "BlockStencil"]


def block_affine_basis(null: torch.Tensor, block: int, dtype=torch.float64, rel_tol: float = 1e-7,
                       band: int = 32):
    """Orthonormal basis of the near-null vectors over each block x block aggregate of nodes.

    null: (h, w, k, m) — m near-null vectors with k unknowns per node. Returns

    * Q (hc, wc, block, block, k, m) in ``dtype``, orthonormal columns per aggregate;
    * the mask (hc, wc, m) of the columns kept: a column whose part orthogonal to the earlier ones is below
      rel_tol of its norm (a flat block's colour columns are multiples of its ones column) is dropped and
      left zero;
    * Q^T B (hc, wc, m, m), float64: the near-null vectors in the coarse unknowns (the next level's B).

    Gram-Schmidt applied twice (CGS2), batched over aggregates, in float64 and in bands of ``band``
    aggregate rows (bounded temporaries); unlike the Gram matrix it does not square the columns'
    conditioning (coordinate columns are nearly parallel to the ones column over a small block).
    """
    h, w, k, m = null.shape
    hc, wc = -(-h // block), -(-w // block)
    q_out = torch.empty(hc, wc, block * block * k, m, dtype=dtype, device=null.device)
    keep = torch.zeros(hc, wc, m, dtype=torch.bool, device=null.device)
    coarse = torch.empty(hc, wc, m, m, dtype=torch.float64, device=null.device)
    for r0 in range(0, hc, band):
        r1 = min(hc, r0 + band)
        rows = null[r0 * block:r1 * block].to(torch.float64)
        rows = F.pad(rows, (0, 0, 0, 0, 0, wc * block - w, 0, (r1 - r0) * block - rows.shape[0]))
        cols = rows.reshape(r1 - r0, block, wc, block, k, m).permute(0, 2, 1, 3, 4, 5).reshape(r1 - r0, wc, -1, m)
        q = torch.zeros_like(cols)
        for j in range(m):
            v = cols[..., j]
            norm0 = v.norm(dim=-1)
            for _ in range(2):
                v = v - (q @ (q.transpose(-1, -2) @ v.unsqueeze(-1))).squeeze(-1)
            norm = v.norm(dim=-1)
            kj = norm > rel_tol * norm0
            keep[r0:r1, :, j] = kj
            q[..., j] = torch.where(kj[..., None], v / norm.clamp_min(torch.finfo(torch.float64).tiny)[..., None],
                                    torch.zeros_like(v))
        q_out[r0:r1] = q
        coarse[r0:r1] = q.transpose(-1, -2) @ cols
    return q_out.reshape(hc, wc, block, block, k, m), keep, coarse


class Aggregation:
    """P and P^T between a level of (h, w, k) unknowns and its aggregates of block x block nodes, as one
    batched product per aggregate: (C x block^2 k) @ (block^2 k x m).

    Fields are channel-last (h, w, k, C), or with ``planar`` (level 0, k = 1) images (C, H, W)."""

    def __init__(self, null: torch.Tensor, block: int, dtype, planar: bool = False):
        self.h, self.w, self.k, _ = null.shape
        self.block, self.planar = block, planar
        q, self.kept, self.coarse_null = block_affine_basis(null, block, dtype)   # coarse_null: P^T B
        hc, wc = q.shape[:2]
        self.coarse_shape = (hc, wc)
        # Stored as Q^T (hc wc, m, block^2 k), contiguous: both transfers are then batched products whose
        # operands torch's bmm takes on its fast path (with Q itself, P e measured 7x slower at 1 MP).
        self.qt = q.reshape(hc * wc, block * block * self.k, -1).transpose(1, 2).contiguous()

    @property
    def q(self) -> torch.Tensor:
        """The basis (hc wc, block^2 k, m): aggregate n's columns q_{n, j}."""
        return self.qt.transpose(1, 2)

    def restrict(self, f: torch.Tensor) -> torch.Tensor:
        """P^T f -> (hc, wc, m, C)."""
        b, k, (hc, wc) = self.block, self.k, self.coarse_shape
        ph, pw = hc * b - self.h, wc * b - self.w
        if self.planar:
            c = f.shape[0]
            f = F.pad(f, (0, pw, 0, ph)).reshape(c, hc, b, wc, b).permute(1, 3, 0, 2, 4)
        else:
            c = f.shape[-1]
            f = F.pad(f, (0, 0, 0, 0, 0, pw, 0, ph)).reshape(hc, b, wc, b, k, c).permute(0, 2, 5, 1, 3, 4)
        out = torch.bmm(self.qt, f.reshape(hc * wc, c, b * b * k).transpose(1, 2))   # (hc wc, m, C)
        return out.reshape(hc, wc, -1, c)

    def prolong(self, e: torch.Tensor) -> torch.Tensor:
        """P e for e (hc, wc, m, C) -> a field of this level."""
        b, k, (hc, wc) = self.block, self.k, self.coarse_shape
        c = e.shape[-1]
        f = torch.bmm(e.reshape(hc * wc, -1, c).transpose(1, 2).contiguous(), self.qt)   # (hc wc, C, b b k)
        if self.planar:
            f = f.reshape(hc, wc, c, b, b).permute(2, 0, 3, 1, 4).reshape(c, hc * b, wc * b)
            return f[:, : self.h, : self.w]
        f = f.reshape(hc, wc, c, b, b, k).permute(0, 3, 1, 4, 5, 2).reshape(hc * b, wc * b, k, c)
        return f[: self.h, : self.w]


class BlockStencil:
    """A 3 x 3 block stencil on (h, w, k, C) fields, zero outside the grid:

        (A v)[y, x] = sum_{dy, dx in -1, 0, 1} S[y, x, :, dy + 1, dx + 1, :] @ v[y + dy, x + dx]

    S: (h, w, k, 3, 3, k). One batched (k x 9k) @ (9k x C) product per node."""

    def __init__(self, s: torch.Tensor):
        self.s = s
        self.h, self.w, self.k = s.shape[:3]
        self._rows = s.reshape(self.h * self.w, self.k, 9 * self.k)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        h, w, k, c = v.shape
        vp = F.pad(v, (0, 0, 0, 0, 1, 1, 1, 1))
        gathered = torch.stack([vp[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], 2)
        return torch.bmm(self._rows, gathered.reshape(h * w, 9 * k, c)).reshape(h, w, k, c)

    def l1_blocks(self) -> torch.Tensor:
        """(h, w, k, k): the diagonal blocks plus diag(sum of |entries| of each row outside its block)."""
        off = self.s.abs().sum(dim=(3, 4, 5)) - self.s[:, :, :, 1, 1, :].abs().sum(-1)
        return self.s[:, :, :, 1, 1, :] + torch.diag_embed(off)

    def dense(self) -> torch.Tensor:
        """The (n, n) matrix, n = h * w * k (for the coarsest level)."""
        n = self.h * self.w * self.k
        eye = torch.eye(n, dtype=self.s.dtype, device=self.s.device).reshape(self.h, self.w, self.k, n)
        return self(eye).reshape(n, n)


def _symmetrise(s: torch.Tensor) -> torch.Tensor:
    """Average the stencil with its transpose: A[(y,x),(y+d)] and A[(y+d),(y,x)]^T (probing rounds each
    separately)."""
    h, w = s.shape[:2]
    sp = F.pad(s.permute(2, 3, 4, 5, 0, 1), (1, 1, 1, 1)).permute(4, 5, 0, 1, 2, 3)   # zero ring in y, x
    out = torch.empty_like(s)
    for dy in range(3):
        for dx in range(3):
            partner = sp[dy:dy + h, dx:dx + w, :, 2 - dy, 2 - dx, :].transpose(-1, -2)
            out[:, :, :, dy, dx, :] = 0.5 * (s[:, :, :, dy, dx, :] + partner)
    return out


def galerkin(apply, agg: Aggregation) -> BlockStencil:
    """P^T A P as a 3 x 3 block stencil, by probing (module docstring). ``apply``: the fine operator on the
    aggregation's fields; it must couple nodes at most ``agg.block`` apart."""
    hc, wc = agg.coarse_shape
    m = agg.qt.shape[1]
    dev = agg.qt.device
    s = torch.zeros(hc, wc, m, 3, 3, m, dtype=agg.qt.dtype, device=dev)
    ys = torch.arange(hc, device=dev)[:, None]
    xs = torch.arange(wc, device=dev)[None, :]
    eye = torch.eye(m, dtype=agg.qt.dtype, device=dev)
    for cy in range(3):
        for cx in range(3):
            e = torch.zeros(hc, wc, m, m, dtype=agg.qt.dtype, device=dev)
            e[cy::3, cx::3] = eye                 # probe j: unknown j of every node of class (cy, cx)
            r = agg.restrict(apply(agg.prolong(e)))   # (hc, wc, m, m): r[y, x, i, j]
            # The class-(cy, cx) neighbour of node (y, x) sits at offset ((cy - y + 1) mod 3) - 1.
            s[ys, xs, :, (cy - ys + 1) % 3, (cx - xs + 1) % 3, :] = r
    return BlockStencil(_symmetrise(s))


class _Level:
    """One level: its operator and the inverse of its l1 block-Jacobi smoother D_l1, for which
    A <= D_l1 (D_l1 = the diagonal blocks plus, on their diagonal, the absolute row sums outside them), so
    the eigenvalues of D_l1^-1 A lie in (0, 1] without estimating them (Baker, Falgout, Kolev, Yang 2011)."""

    def __init__(self, apply, inv_blocks):
        self.apply = apply
        self.inv_blocks = inv_blocks          # (h, w, k, k), or (H, W) on level 0
        self._scaled = {}                     # level 0: factor -> factor * inv_blocks (one image pass fewer)

    def precondition(self, v: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
        """factor * D_l1^-1 v."""
        if self.inv_blocks.dim() == 2:        # level 0: (C, H, W) fields, scalar diagonal
            if factor not in self._scaled:
                self._scaled[factor] = self.inv_blocks * factor
            return v * self._scaled[factor]
        return torch.matmul(self.inv_blocks, v).mul_(factor)


def _chebyshev(level: _Level, b: torch.Tensor, x, degree: int, lo: float, hi: float) -> torch.Tensor:
    """``degree`` steps of Chebyshev smoothing of A x = b on the interval [lo, hi] of D_l1^-1 A;
    x = None means x = 0 (saves a product). Updates a given x in place."""
    theta, delta = 0.5 * (hi + lo), 0.5 * (hi - lo)
    sigma = theta / delta
    rho = 1.0 / sigma
    if x is None:
        res = b
        x = d = level.precondition(b, 1.0 / theta)
    else:
        res = level.apply(x)
        res = torch.sub(b, res, out=res)
        d = level.precondition(res, 1.0 / theta)
        x += d
    for _ in range(degree - 1):
        res = res - level.apply(d)
        rho_new = 1.0 / (2.0 * sigma - rho)
        d = (rho_new * rho) * d + level.precondition(res, 2.0 * rho_new / delta)
        rho = rho_new
        x += d
    return x


class AffineMultigrid:
    """Preconditioner z = B^-1 r for A = I + w S on (C, H, W) fields (module docstring).

    apply: A on (C, H, W) tensors (any C). l1_diagonal: (H, W) absolute row sums of A, sum_j |A_ij| (the
    level-0 smoother; see _Level). null: (m, H, W) near-null vectors of S (m = 4: [1, R, G, B], scaled as S
    requires). block: pixels per aggregate side on level 0 (>= 2: M couples pixels up to 2 apart); coarser
    levels aggregate 2 x 2 nodes. cycle: "W" or "V". degree: Chebyshev steps before and after the coarse
    correction, on the interval [1 / lower_ratio, 1] of D_l1^-1 A. coordinates: also give the coarse spaces
    the near-null vectors times the pixel coordinates y and x (3m per aggregate instead of m): local affine
    models whose coefficients may vary linearly across the block, as the low modes' coefficients do. Off
    by default: at 0.8 MP it cut the iterations from 105 to 76 but, with 3x the coarse unknowns, cost more
    than it saved, in setup (5.7 s against 1.1 s) and per cycle (docs/experiments/2026-11-smoothing-solver.md).
    dtype: of the preconditioner's fields (float32 halves the traffic; CG keeps its own dtype).
    coarse_size: largest number of unknowns solved by a dense Cholesky factorisation.
    """

    def __init__(self, apply, l1_diagonal: torch.Tensor, null: torch.Tensor, block: int = 8, cycle: str = "V",
                 degree: int = 1, dtype=torch.float32, coarse_size: int = 1024, lower_ratio: float = 30.0,
                 coordinates: bool = False):
        if block < 2:
            raise ValueError(f"block must be >= 2 (M couples pixels up to 2 apart), got {block}")
        if cycle not in ("V", "W"):
            raise ValueError(f"cycle must be 'V' or 'W', got {cycle!r}")
        if degree < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        if lower_ratio <= 1:
            raise ValueError(f"lower_ratio must be > 1, got {lower_ratio}")
        if l1_diagonal.dim() != 2:
            raise ValueError(f"l1_diagonal must have shape (H, W), got {tuple(l1_diagonal.shape)}")
        h, w = l1_diagonal.shape
        if null.dim() != 3 or tuple(null.shape[1:]) != (h, w):
            raise ValueError(f"null must have shape (m, H, W) with H, W = {(h, w)}, got {tuple(null.shape)}")
        self.cycle, self.degree, self.dtype, self.lower_ratio = cycle, degree, dtype, lower_ratio
        if coordinates:
            ys = torch.arange(h, dtype=null.dtype, device=null.device) / max(h, w)
            xs = torch.arange(w, dtype=null.dtype, device=null.device) / max(h, w)
            null = torch.cat([null, null * ys[:, None], null * xs[None, :]])

        self.levels = [_Level(apply, (1.0 / l1_diagonal).to(dtype))]
        self.aggregations = []
        agg = Aggregation(null.permute(1, 2, 0).unsqueeze(2), block, dtype, planar=True)
        op = galerkin(apply, agg)
        while True:
            self.aggregations.append(agg)
            if op.h * op.w * op.k <= coarse_size or (op.h <= 2 and op.w <= 2):
                break
            self.levels.append(_Level(op, torch.linalg.inv(self._regularised(op.l1_blocks(), agg.kept))))
            agg = Aggregation(agg.coarse_null, 2, dtype)
            op = galerkin(op, agg)
        n = op.h * op.w * op.k
        dense = op.dense().to(torch.float64)
        dense = 0.5 * (dense + dense.T) + torch.diag((~agg.kept.reshape(n)).to(dense.dtype))   # dropped: identity
        self._coarse_shape = (op.h, op.w, op.k)
        self._coarse_factor = torch.linalg.cholesky(dense)

    @staticmethod
    def _regularised(blocks: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """Block diagonals with 1 on the unknowns whose basis column was dropped (zero rows and columns)."""
        return blocks + torch.diag_embed((~kept).to(blocks.dtype))

    @property
    def shapes(self):
        """Unknowns per level, finest first."""
        return [tuple(lv.inv_blocks.shape[:2]) for lv in self.levels] + [self._coarse_shape[:2]]

    def _coarse_solve(self, b: torch.Tensor) -> torch.Tensor:
        hc, wc, m = self._coarse_shape
        c = b.shape[-1]
        x = torch.cholesky_solve(b.reshape(hc * wc * m, c).to(torch.float64), self._coarse_factor)
        return x.to(b.dtype).reshape(hc, wc, m, c)

    def _cycle(self, level: int, b: torch.Tensor) -> torch.Tensor:
        """x ~ A_level^-1 b by one V- or W-cycle."""
        if level == len(self.levels):
            return self._coarse_solve(b)
        lv = self.levels[level]
        lo, hi = 1.0 / self.lower_ratio, 1.0
        x = _chebyshev(lv, b, None, self.degree, lo, hi)
        r = lv.apply(x)
        r = torch.sub(b, r, out=r)                       # in place: image-sized temporaries are costly
        bc = self.aggregations[level].restrict(r)
        del r
        e = self._cycle(level + 1, bc)
        if self.cycle == "W" and level + 1 < len(self.levels):
            e = e + self._cycle(level + 1, bc - self.levels[level + 1].apply(e))
        x += self.aggregations[level].prolong(e)
        return _chebyshev(lv, b, x, self.degree, lo, hi)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """B^-1 r for r (C, H, W), in r's dtype."""
        return self._cycle(0, r.to(self.dtype)).to(r.dtype)
