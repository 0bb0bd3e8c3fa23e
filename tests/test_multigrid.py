"""The local-affine multigrid preconditioner (dpst_ext.engine.multigrid) against its definition on assembled
matrices: P and P^T, the Galerkin operator by probing, the l1 smoother bound, and the preconditioned CG
against a sparse direct solve.

Measured (float64, with the prints of -s, when the multigrid was written): P^T = P's adjoint exactly, probed
P^T A P = assembled to ~4e-16 relative (tolerance 1e-10), the preconditioner symmetric to ~1e-16 with the
spectrum of B A in (0, 1]; CG iterations to 1e-8 on 40x40 photo crops: 35-36 with the preconditioner
against 410-571 without.
"""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

from common import EPS, photo_crop
from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian
from dpst_ext.engine.multigrid import AffineMultigrid, Aggregation, BlockStencil, galerkin, block_affine_basis
from dpst_ext.engine.smoothing import (SmoothingOperator, batched_pcg, cg_vector_dtype, fused_iteration, smooth,
                                      weight_from_beta, window_counts)

W = weight_from_beta(0.9999)


def _operator(image, normalize):
    return SmoothingOperator(MattingLaplacian(image, EPS), W, normalize)


def _assembled(image, normalize):
    m = MattingLaplacian(image, EPS).to_scipy().astype(np.float64).toarray()
    w = W
    if normalize == "interior":
        w = W / 9
    elif normalize:
        d = np.diag(window_counts(*image.shape[1:]).numpy().reshape(-1) ** -0.5)
        m = d @ m @ d
    return np.eye(m.shape[0]) + w * m


def _prolongation(agg):
    """P as a dense (n_fine, n_coarse) matrix, from the aggregation's own prolong of the identity."""
    hc, wc = agg.coarse_shape
    n = hc * wc * agg.q.shape[-1]
    f = agg.prolong(torch.eye(n, dtype=agg.q.dtype).reshape(hc, wc, -1, n))
    return (f.reshape(n, -1).T if agg.planar else f.reshape(-1, n)).numpy()   # planar: (n, H, W)


@pytest.mark.parametrize("planar", [True, False])
@pytest.mark.parametrize("shape", [(16, 16), (13, 18)])
def test_aggregation_is_orthonormal_local_affine_and_adjoint(shape, planar):
    h, w = shape
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, h, w, generator=g, dtype=torch.float64)
    image[:, :4, :4] = 0.3                       # a flat aggregate: rank 1, three columns dropped
    null = torch.cat([torch.ones(1, h, w, dtype=torch.float64), image]).permute(1, 2, 0).unsqueeze(2)
    agg = Aggregation(null, 4, torch.float64, planar=planar)
    p = _prolongation(agg)
    kept = agg.kept.numpy()
    # The flat block keeps one column; the others min(4, pixels): random colours span all of [1, R, G, B].
    pixels = np.minimum(4, h - 4 * np.arange(kept.shape[0]))[:, None] * np.minimum(4, w - 4 * np.arange(kept.shape[1]))
    expected = np.minimum(4, pixels)
    expected[0, 0] = 1
    np.testing.assert_array_equal(kept.sum(-1), expected)
    kept = kept.reshape(-1)
    np.testing.assert_allclose(p.T @ p, np.diag(kept.astype(float)), atol=1e-12)
    # P P^T reproduces every local affine function of the colours exactly.
    b = null.reshape(h * w, 4).numpy()
    np.testing.assert_allclose(p @ (p.T @ b), b, atol=1e-12)
    # restrict is prolong's adjoint.
    f = torch.randn(3, h, w, generator=g, dtype=torch.float64)
    field = f if planar else f.permute(1, 2, 0).unsqueeze(2)
    r = agg.restrict(field).permute(3, 0, 1, 2).reshape(3, -1).numpy()
    np.testing.assert_allclose(r, (p.T @ f.reshape(3, -1).numpy().T).T, atol=1e-12)


def test_block_affine_basis_keeps_full_rank_blocks_and_gives_coarse_coordinates():
    g = torch.Generator().manual_seed(1)
    null = torch.rand(8, 8, 1, 4, generator=g, dtype=torch.float64)
    q, keep, coarse = block_affine_basis(null, 4, band=1)
    assert q.shape == (2, 2, 4, 4, 1, 4) and bool(keep.all())
    # Q^T B: B is recovered from the coarse coefficients, Q (Q^T B) = B on every aggregate.
    blocks = null.reshape(2, 4, 2, 4, 1, 4).permute(0, 2, 1, 3, 4, 5).reshape(2, 2, 16, 4)
    np.testing.assert_allclose((q.reshape(2, 2, 16, 4) @ coarse).numpy(), blocks.numpy(), atol=1e-12)


@pytest.mark.parametrize("normalize", [True, "interior"])
def test_galerkin_operator_by_probing_equals_assembled(normalize):
    image = photo_crop("pasted", 40)[:, :37, :]
    op = _operator(image, normalize)
    null = op.null_space()
    agg = Aggregation(null.permute(1, 2, 0).unsqueeze(2), 4, torch.float64, planar=True)
    a = _assembled(image, normalize)
    p = _prolongation(agg)
    stencil = galerkin(op, agg)
    ref = p.T @ a @ p
    np.testing.assert_allclose(stencil.dense().numpy(), ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    # The next level (2 x 2 nodes, channel-last fields) by probing the stencil itself.
    agg2 = Aggregation(agg.coarse_null, 2, torch.float64)
    p2 = _prolongation(agg2)
    ref2 = p2.T @ ref @ p2
    np.testing.assert_allclose(galerkin(stencil, agg2).dense().numpy(), ref2, rtol=0,
                               atol=1e-10 * np.abs(ref2).max())


def test_l1_smoother_bounds_the_spectrum():
    """A <= D_l1 on level 0 (abs row sums) and on a stencil level (l1 block Jacobi): the eigenvalues of
    D_l1^-1 A lie in (0, 1], which is why the Chebyshev interval needs no eigenvalue estimate."""
    image = photo_crop("coffee_saturated", 24)
    op = _operator(image, True)
    a = _assembled(image, True)
    l1 = op.l1_diagonal().numpy().reshape(-1)
    np.testing.assert_allclose(l1, np.abs(a).sum(1), rtol=1e-6)
    ev = np.linalg.eigvals(a / l1[:, None]).real
    assert ev.min() > 0 and ev.max() <= 1 + 1e-9
    agg = Aggregation(op.null_space().permute(1, 2, 0).unsqueeze(2), 4, torch.float64, planar=True)
    stencil = galerkin(op, agg)
    blocks = AffineMultigrid._regularised(stencil.l1_blocks(), agg.kept)
    n = stencil.h * stencil.w * 4
    d = torch.block_diag(*blocks.reshape(-1, 4, 4)).numpy()
    ac = stencil.dense().numpy() + np.diag((~agg.kept.reshape(-1)).numpy().astype(float))
    ev = np.linalg.eigvals(np.linalg.solve(d, ac)).real
    assert ev.min() > 0 and ev.max() <= 1 + 1e-9 and n == ac.shape[0]


@pytest.mark.parametrize("cycle", ["V", "W"])
def test_preconditioner_is_symmetric_positive_definite(cycle):
    image = photo_crop("hubble_dark", 40)
    op = _operator(image, "interior")
    mg = AffineMultigrid(op, op.l1_diagonal(), op.null_space(), block=4, cycle=cycle, dtype=torch.float64,
                         coarse_size=64)
    assert len(mg.levels) >= 2                   # at least one stencil level besides the fine one
    n = 40 * 40
    b = mg(torch.eye(n, dtype=torch.float64).reshape(n, 40, 40)).reshape(n, n).numpy()
    np.testing.assert_allclose(b, b.T, atol=1e-12 * np.abs(b).max())
    ev = np.linalg.eigvals(b @ _assembled(image, "interior")).real
    assert ev.min() > 0.01 and ev.max() <= 1 + 1e-8


@pytest.mark.parametrize("normalize", [True, "interior"])
@pytest.mark.parametrize("name", ["pasted", "astronaut_black", "coffee_saturated"])
def test_multigrid_pcg_matches_sparse_direct_solve(name, normalize):
    image = photo_crop(name, 40)
    g = torch.Generator().manual_seed(1)
    y = (image.flip(0) ** 0.7 + 0.05 * torch.randn(image.shape, generator=g, dtype=torch.float64)).contiguous()
    a = scipy.sparse.csc_matrix(_assembled(image, normalize))
    exact = np.stack([scipy.sparse.linalg.spsolve(a, y[c].numpy().reshape(-1)) for c in range(3)])
    plain = smooth(image, y, normalize=normalize, tol=1e-8, preconditioner="none", x0=torch.zeros_like(y))
    res = smooth(image, y, normalize=normalize, tol=1e-8, preconditioner="multigrid", x0=torch.zeros_like(y))
    print(f"\n{name} normalize={normalize}: CG iterations {plain.iterations} plain, {res.iterations} multigrid")
    assert res.converged and res.iterations * 5 <= plain.iterations
    err = np.linalg.norm(res.solution.numpy().reshape(3, -1) - exact) / np.linalg.norm(exact)
    assert err <= 1e-6, err


def test_float32_multigrid_with_float32_matvecs():
    """The default pairing in the high-resolution stage: float32 Laplacian and preconditioner fields,
    float64 CG vectors; reaches 1e-6 with the iteration cut intact."""
    image = samples.random_image(64, 80, seed=5).to(torch.float32)
    y = image.flip(0).to(torch.float64)
    res = smooth(image, y, normalize="interior", tol=1e-6, preconditioner="multigrid",
                 laplacian_dtype=torch.float32, x0=torch.zeros_like(y))
    plain = smooth(image, y, normalize="interior", tol=1e-6, laplacian_dtype=torch.float32,
                   preconditioner="none", x0=torch.zeros_like(y))
    assert res.converged and res.iterations * 5 <= plain.iterations
    step = [lv for lv in res.levels if lv["step"] == "multigrid setup"][0]
    assert step["levels"][0] == (64, 80)


@pytest.mark.parametrize("shape", [(2, 7), (5, 5), (9, 30)])
def test_images_smaller_than_a_block_or_a_window(shape):
    """No stencil level (one aggregate, or fewer pixels than a window): the coarse solve is exact."""
    image = samples.random_image(*shape, seed=2)
    y = image.flip(0).contiguous()
    res = smooth(image, y, tol=1e-10, preconditioner="multigrid", x0=torch.zeros_like(y))
    ref = smooth(image, y, tol=1e-10, preconditioner="none", x0=torch.zeros_like(y))
    assert res.converged and torch.allclose(res.solution, ref.solution, atol=1e-8)


def test_block_stencil_apply_matches_its_dense_matrix():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(3, 5, 2, 3, 3, 2, generator=g, dtype=torch.float64)
    st = BlockStencil(s)
    v = torch.randn(3, 5, 2, 4, generator=g, dtype=torch.float64)
    dense = st.dense()
    np.testing.assert_allclose(st(v).reshape(-1, 4).numpy(), (dense @ v.reshape(-1, 4)).numpy(), atol=1e-12)
    # By the definition: node (1, 2), offset (-1, +1) is S[1, 2, :, 0, 2, :] @ v[0, 3].
    e = torch.zeros_like(v)
    e[0, 3] = v[0, 3]
    out = st(e)[1, 2]
    np.testing.assert_allclose(out.numpy(), (s[1, 2, :, 0, 2, :] @ v[0, 3]).numpy(), atol=1e-12)


def test_bad_arguments_name_the_argument():
    image = samples.random_image(16, 16, seed=1)
    op = _operator(image, "interior")
    l1, null = op.l1_diagonal(), op.null_space()
    for kwargs, match in [({"block": 1}, "block"), ({"cycle": "F"}, "cycle"), ({"degree": 0}, "degree"),
                          ({"lower_ratio": 1.0}, "lower_ratio")]:
        with pytest.raises(ValueError, match=match):
            AffineMultigrid(op, l1, null, **kwargs)
    with pytest.raises(ValueError, match="null"):
        AffineMultigrid(op, l1, null[:, :8])
    with pytest.raises(ValueError, match="l1_diagonal"):
        AffineMultigrid(op, l1[0], null)
    with pytest.raises(ValueError, match="inv_diag or precondition"):
        batched_pcg(op, image.clone(), inv_diag=1.0 / op.diagonal, precondition=lambda r: r)


def test_abs_matvec_matches_scipy():
    image = photo_crop("pasted", 30)
    lap = MattingLaplacian(image, EPS)
    v = torch.rand(30, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref = np.abs(lap.to_scipy()) @ v.numpy().reshape(-1)
    np.testing.assert_allclose(lap.stencil().abs_matvec(v).numpy().reshape(-1), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="single"):
        lap.stencil().abs_matvec(torch.zeros(2, 30, 30, dtype=torch.float64))


@pytest.mark.parametrize("name", ["noise", "pasted", "astronaut_black", "rocket_sky"])
def test_fused_float32_multigrid_cg_matches_the_float64_reference(name):
    """What the full-resolution step runs with preconditioner="multigrid" on the CPU: float32 Laplacian,
    multigrid fields and CG vectors (smoothing.cg_vector_dtype), the cycle between the fused passes. It
    takes the float64 eager loop's iterations (within 2) and lands as close to the float64 direct solve as
    the plain float32 solve does, on noise and on crops with pure black, flat and single-hue windows."""
    assert fused_iteration("cpu", "multigrid") and cg_vector_dtype("cpu", "multigrid") == torch.float32
    image = samples.random_image(40, 44, seed=4) if name == "noise" else photo_crop(name, 40)
    g = torch.Generator().manual_seed(1)
    y = (image.flip(0) ** 0.7 + 0.05 * torch.randn(image.shape, generator=g, dtype=torch.float64)).contiguous()
    a = scipy.sparse.csc_matrix(_assembled(image, "interior"))
    exact = np.stack([scipy.sparse.linalg.spsolve(a, y[c].numpy().reshape(-1)) for c in range(3)])
    zero = torch.zeros_like(y)

    def solve(pre, vectors):
        return smooth(image.float(), y, normalize="interior", tol=1e-6, preconditioner=pre,
                      laplacian_dtype=torch.float32, vector_dtype=vectors, x0=zero)

    mg32, plain32 = solve("multigrid", torch.float32), solve("none", torch.float32)
    assert mg32.solution.dtype == torch.float32 and mg32.converged and plain32.converged
    # The same preconditioner in the eager loop on float64 vectors (a plain function is not fused).
    op = _operator(image.float(), "interior")
    mg = AffineMultigrid(op, op.l1_diagonal(), op.null_space(), dtype=torch.float32)
    eager = batched_pcg(lambda v: op(v), y, zero, tol=1e-6, precondition=mg)
    assert eager[3] and abs(mg32.iterations - eager[1]) <= 2, (mg32.iterations, eager[1])
    assert mg32.iterations * 3 <= plain32.iterations, (mg32.iterations, plain32.iterations)

    def err(sol):
        return np.linalg.norm(sol.double().numpy().reshape(3, -1) - exact) / np.linalg.norm(exact)

    print(f"\n{name}: iterations multigrid {mg32.iterations} (eager float64 {eager[1]}), plain {plain32.iterations};"
          f" error to the float64 direct solve {err(mg32.solution):.1e} (eager float64 {err(eager[0]):.1e}, "
          f"plain {err(plain32.solution):.1e})")
    assert err(mg32.solution) <= 2 * err(eager[0]) + 1e-6
