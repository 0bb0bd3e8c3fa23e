"""The fused CG passes (csrc/cpu/pcg_cpu.cpp, dpst_ext.engine.ops.pcg_*) that batched_pcg runs on a
SmoothingOperator on the CPU: each pass against its formula in float64 torch, and the whole solve against
the eager loop (the same batched_pcg given a plain function) and against the assembled system's residual,
on a noise image and a real photo crop; float32 CG vectors against the float64 eager loop, on noise and on
every hard photo crop (near-singular windows included)."""
import numpy as np
import pytest
import torch

from common import EPS, PHOTO_CROPS, photo_crop
from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian, ops
from dpst_ext.engine.smoothing import (SmoothingOperator, batched_pcg, cg_vector_dtype, fused_iteration,
                                     weight_from_beta)
from test_smoothing import _assembled, _y


def _vectors(c=3, h=7, w=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(c, h, w, generator=g, dtype=torch.float64) for _ in range(4)], \
        torch.rand(h, w, generator=g, dtype=torch.float64) + 0.1


@pytest.mark.parametrize("mdtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("jacobi", [True, False])
def test_passes_match_their_formulas(mdtype, jacobi):
    (x, r, p, m), d = _vectors()
    m = m.to(mdtype)
    d_, d1 = (d, d) if jacobi else (None, 1.0)
    beta, alpha, weight = [0.5, -1.25, 2.0], [0.3, 0.7, -0.2], 37.0

    p_ref = d1 * r + torch.tensor(beta, dtype=torch.float64)[:, None, None] * p
    u = torch.empty(p.shape, dtype=mdtype)
    ops.pcg_direction(r, d_, p, beta, u)
    torch.testing.assert_close(p, p_ref, rtol=1e-15, atol=1e-15)
    assert u.dtype == mdtype
    # (to within one rounding: the kernel may fuse the multiply-adds)
    torch.testing.assert_close(u, p_ref.to(mdtype), rtol=1e-15 if mdtype == torch.float64 else 1.2e-7, atol=0)

    ap = p + weight * m.double()
    torch.testing.assert_close(ops.pcg_curvature(p, m, weight), (p * ap).sum((1, 2)), rtol=1e-13, atol=0)

    a = torch.tensor(alpha, dtype=torch.float64)[:, None, None]
    x_ref, r_ref = x + a * p, r - a * ap
    sums = ops.pcg_update(x, r, p, m, weight, alpha, d_)
    torch.testing.assert_close(x, x_ref, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(r, r_ref, rtol=1e-15, atol=1e-14)
    torch.testing.assert_close(sums, torch.stack([(r_ref ** 2).sum((1, 2)), (d1 * r_ref ** 2).sum((1, 2))]),
                               rtol=1e-13, atol=0)


@pytest.mark.parametrize("vdtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mdtype", [torch.float32, torch.float64])
def test_step_matches_its_formula(vdtype, mdtype):
    """pcg_step (no maps): x += alpha p, r -= alpha (p + w m), then p = r + beta p from r as stored; r.r of
    the stored r. Each stored value is its double formula rounded once to the vectors' dtype."""
    (x, r, p, m), _ = _vectors(seed=5)
    x, r, p, m = x.to(vdtype), r.to(vdtype), p.to(vdtype), m.to(mdtype)
    alpha, beta, weight = [0.3, 0.7, -0.2], [0.5, -1.25, 2.0], 37.0
    a, b = (torch.tensor(c, dtype=torch.float64)[:, None, None] for c in (alpha, beta))
    p64 = p.double()
    x_ref = (x.double() + a * p64).to(vdtype)
    r_ref = (r.double() - a * (p64 + weight * m.double())).to(vdtype)
    p_ref = (r_ref.double() + b * p64).to(vdtype)
    rr = ops.pcg_step(x, r, p, m, weight, alpha, beta)
    ulp = 1e-15 if vdtype == torch.float64 else 1.2e-7          # (FMA contraction: one rounding either way)
    for got, want in ((x, x_ref), (r, r_ref), (p, p_ref)):
        torch.testing.assert_close(got, want, rtol=ulp, atol=1e-14)
    torch.testing.assert_close(rr, (r.double() ** 2).sum((1, 2)), rtol=1e-13, atol=0)   # of r as stored


def test_the_fused_loop_runs_where_the_passes_have_kernels():
    # CPU (csrc/cpu/pcg_cpu.cpp) and CUDA (csrc/cuda/pcg_kernels.cuh, run by tests/test_cuda_emulation.py):
    # float32 vectors for the full-resolution step there; the eager float64 loop elsewhere.
    for device in ("cpu", "cuda"):
        assert fused_iteration(device, "none") and cg_vector_dtype(device, "multigrid") == torch.float32
    assert not fused_iteration("meta", "none") and cg_vector_dtype("meta", "jacobi") == torch.float64
    assert not fused_iteration("cpu", "ilu")


def test_sums_do_not_depend_on_thread_count():
    (x, r, p, m), d = _vectors(c=2, h=300, w=200, seed=1)   # several chunks of pixels
    before = torch.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append((ops.pcg_curvature(p, m, 3.0),
                        ops.pcg_update(x.clone(), r.clone(), p, m, 3.0, [0.1, 0.2], d),
                        ops.pcg_step(x.clone(), r.clone(), p.clone(), m, 3.0, [0.1, 0.2], [0.3, 0.4])))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(out[0], out[1]))


@pytest.mark.parametrize("name", ["noise", "rocket_sky"])
@pytest.mark.parametrize("normalize,precond", [(True, "jacobi"), (False, "none"), ("interior", "jacobi")])
def test_solve_matches_eager_loop_and_assembled_residual(name, normalize, precond):
    image = samples.random_image(24, 29, seed=3) if name == "noise" else photo_crop(name, 32)
    y = _y(image)
    for dtype in (torch.float64, torch.float32):
        lap = MattingLaplacian(image, EPS, dtype=dtype)
        op = SmoothingOperator(lap, weight_from_beta(0.9999), normalize)
        inv = 1.0 / op.diagonal if precond == "jacobi" else None
        assert op.fused_cg(y, inv)
        # float32 matvecs: a tolerance they can reach; the paths round w M u differently (the fused one in
        # double), which near float32's limit moves the iteration count by a few percent.
        tol = 1e-8 if dtype == torch.float64 else 1e-5
        fused = batched_pcg(op, y, y, inv, tol=tol, maxiter=3000)
        eager = batched_pcg(lambda v: op(v), y, y, inv, tol=tol, maxiter=3000)
        assert fused[3] and eager[3]
        assert abs(fused[1] - eager[1]) <= max(2, 0.03 * eager[1]), (fused[1], eager[1])
        # The true residual of the float64 assembled system (float32 matvecs: up to their accuracy).
        if dtype == torch.float64:     # the true residual on the assembled float64 system
            wi = op.weight             # "interior": S = M / 9, i.e. the plain form with w / 9
            a = _assembled(image, False, beta=wi / (1.0 + wi)) if normalize == "interior" \
                else _assembled(image, normalize)
            x = fused[0].reshape(3, -1).numpy().T
            b = y.reshape(3, -1).numpy().T
            res = np.linalg.norm(b - a @ x, axis=0) / np.linalg.norm(b, axis=0)
            assert res.max() < 1e-7, res
        scale = float(fused[0].abs().max())
        torch.testing.assert_close(fused[0], eager[0], rtol=0, atol=(1e-7 if dtype == torch.float64 else 1e-3) * scale)


def test_bad_inputs_are_named():
    (x, r, p, m), d = _vectors()
    with pytest.raises(RuntimeError, match="beta must hold one value per channel"):
        ops.pcg_direction(r, d, p, [1.0], torch.empty(p.shape))
    with pytest.raises(RuntimeError, match="u must be a contiguous float32 or float64"):
        ops.pcg_direction(r, d, p, [1.0] * 3, torch.empty(p.shape, dtype=torch.float16))
    with pytest.raises(RuntimeError, match="p must be float32 or float64, got Half"):
        ops.pcg_curvature(p.half(), m, 1.0)
    with pytest.raises(RuntimeError, match=r"r must have the dtype of the other CG vectors \(Double\), got Float"):
        ops.pcg_update(x, r.float(), p, m, 1.0, [0.1] * 3, d)
    with pytest.raises(RuntimeError, match=r"inv_diag must have shape \(H, W\)"):
        ops.pcg_update(x, r, p, m, 1.0, [0.1] * 3, d[:3])
    with pytest.raises(RuntimeError, match="m must be a contiguous float32 or float64"):
        ops.pcg_update(x, r, p, m[:2], 1.0, [0.1] * 3, d)
    with pytest.raises(RuntimeError, match="beta must hold one value per channel"):
        ops.pcg_step(x, r, p, m, 1.0, [0.1] * 3, [0.2] * 2)
    with pytest.raises(RuntimeError, match="r must have the dtype of the other CG vectors"):
        ops.pcg_step(x, r.float(), p, m, 1.0, [0.1] * 3, [0.2] * 3)


@pytest.mark.parametrize("vdtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("jacobi", [True, False])
def test_aten_passes_other_devices_run_match_the_fused_ones(jacobi, vdtype):
    # The CompositeExplicitAutograd kernels (what CUDA and other devices run), called on the CPU through
    # the dispatcher, against the fused CPU kernels on the same inputs.
    composite = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    (x, r, p, m), d = _vectors(seed=2)
    x, r, p, m = x.to(vdtype), r.to(vdtype), p.to(vdtype), m.float()
    d = d if jacobi else None
    beta, alpha = [0.5, -1.25, 2.0], [0.3, 0.7, -0.2]
    outs = []
    for call in (lambda op, *a: op(*a), lambda op, *a: op.redispatch(composite, *a)):
        x1, r1, p1, u1 = x.clone(), r.clone(), p.clone(), torch.empty(p.shape)
        call(torch.ops.dpst.pcg_direction.default, r1, d, p1, beta, u1)
        c = call(torch.ops.dpst.pcg_curvature.default, p1, m, 37.0)
        sums = call(torch.ops.dpst.pcg_update.default, x1, r1, p1, m, 37.0, alpha, d)
        x2, r2, p2 = x.clone(), r.clone(), p.clone()
        rr = call(torch.ops.dpst.pcg_step.default, x2, r2, p2, m, 37.0, alpha, beta)
        outs.append((p1, u1, c, x1, r1, sums, x2, r2, p2, rr))
    # float32 vectors: both round the double result once, up to FMA contraction (one float32 ulp), and the
    # sums are those of the vectors as stored.
    rtol = 1e-13 if vdtype == torch.float64 else 2.4e-7
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-14)


def test_opcheck():
    # Schemas (mutation annotations), fake tensors (the composite kernels run on them) and aot dispatch.
    (x, r, p, m), d = _vectors(seed=3)
    m, u = m.float(), torch.empty(p.shape)
    torch.library.opcheck(torch.ops.dpst.pcg_direction.default, (r, d, p, [0.5, 1.0, 2.0], u))
    torch.library.opcheck(torch.ops.dpst.pcg_direction.default, (r, None, p, [0.5, 1.0, 2.0], None))
    torch.library.opcheck(torch.ops.dpst.pcg_curvature.default, (p, m, 3.0))
    torch.library.opcheck(torch.ops.dpst.pcg_update.default, (x, r, p, m, 3.0, [0.1, 0.2, 0.3], d))
    torch.library.opcheck(torch.ops.dpst.pcg_step.default, (x, r, p, m, 3.0, [0.1, 0.2, 0.3], [0.5, 1.0, 2.0]))


def test_non_contiguous_right_hand_side():
    image = samples.random_image(12, 15, seed=4)
    op = SmoothingOperator(MattingLaplacian(image, EPS), weight_from_beta(0.99), True)
    y = _y(image)
    y_t = y.transpose(1, 2).contiguous().transpose(1, 2)     # same values, column-major planes
    a = batched_pcg(op, y, y, 1.0 / op.diagonal, tol=1e-10)
    b = batched_pcg(op, y_t, y_t, 1.0 / op.diagonal, tol=1e-10)
    assert a[1] == b[1] and torch.equal(a[0], b[0].contiguous())


@pytest.mark.parametrize("mdtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("jacobi", [True, False])
def test_float32_vectors_round_the_float64_passes_once(mdtype, jacobi):
    # The passes compute in double whatever the vectors' dtype: on float32 vectors each stored value is the
    # float64 formula's result on the same (float32) inputs, rounded once; the sums are those of the stored r.
    (x, r, p, m), d = _vectors(seed=5)
    x, r, p, m = x.float(), r.float(), p.float(), m.to(mdtype)
    d_, d1 = (d, d) if jacobi else (None, 1.0)
    beta, alpha, weight = [0.5, -1.25, 2.0], [0.3, 0.7, -0.2], 37.0
    one = dict(rtol=2 ** -24, atol=1e-30)       # within one float32 rounding of the float64 result

    p_ref = d1 * r.double() + torch.tensor(beta, dtype=torch.float64)[:, None, None] * p.double()
    u = torch.empty(p.shape, dtype=mdtype)
    ops.pcg_direction(r, d_, p, beta, u)
    assert p.dtype == torch.float32
    torch.testing.assert_close(p.double(), p_ref, **one)
    torch.testing.assert_close(u.double(), p.double(), **(one if mdtype == torch.float32 else dict(rtol=1e-15, atol=0)))
    if not jacobi:                               # u may be left out (the matvec then reads p)
        p2 = p.clone()
        ops.pcg_direction(r, d_, p2, beta, None)
        p_ref2 = d1 * r.double() + torch.tensor(beta, dtype=torch.float64)[:, None, None] * p.double()
        torch.testing.assert_close(p2.double(), p_ref2, **one)

    ap = p.double() + weight * m.double()
    torch.testing.assert_close(ops.pcg_curvature(p, m, weight), (p.double() * ap).sum((1, 2)), rtol=1e-13, atol=0)

    a = torch.tensor(alpha, dtype=torch.float64)[:, None, None]
    x_ref, r_ref = x.double() + a * p.double(), r.double() - a * ap
    sums = ops.pcg_update(x, r, p, m, weight, alpha, d_)
    assert x.dtype == r.dtype == torch.float32
    torch.testing.assert_close(x.double(), x_ref, **one)
    torch.testing.assert_close(r.double(), r_ref, **one)
    r64 = r.double()
    torch.testing.assert_close(sums, torch.stack([(r64 ** 2).sum((1, 2)), (d1 * r64 ** 2).sum((1, 2))]),
                               rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", ["noise", *PHOTO_CROPS])
@pytest.mark.parametrize("normalize,precond", [("interior", "none"), (True, "jacobi")])
def test_float32_vectors_follow_the_float64_eager_loop(name, normalize, precond):
    # float32 CG vectors (fused) against float64 ones, both on the float32 Laplacian: the same iterates as
    # the float64 eager loop to float32 accuracy early on, and the same tolerance reached in as many
    # iterations as the float64 fused loop.
    image = samples.random_image(24, 29, seed=3) if name == "noise" else photo_crop(name, 32)
    y = _y(image)
    op = SmoothingOperator(MattingLaplacian(image, EPS, dtype=torch.float32), weight_from_beta(0.9999), normalize)
    inv = 1.0 / op.diagonal if precond == "jacobi" else None
    y32 = y.float()
    assert op.fused_cg(y32, inv)
    eager = lambda v: op(v)                         # noqa: E731  (a plain function: the eager loop)
    # After one iteration: within a few float32 roundings (measured <= 1e-7 of max|x|). After five, rounding
    # differences grow through alpha and beta, as they do between the fused and eager float64 loops in
    # near-singular windows (measured up to 3.3e-5, coffee with Jacobi): at most twice that, or 3e-6.
    for k, floor in ((1, 2.5e-7), (5, 3e-6)):
        x32 = batched_pcg(op, y32, y32, inv, maxiter=k, tol=1e-12)[0]
        x64 = batched_pcg(eager, y, y, inv, maxiter=k, tol=1e-12)[0]
        f64 = batched_pcg(op, y, y, inv, maxiter=k, tol=1e-12)[0]
        assert x32.dtype == torch.float32
        scale = float(x64.abs().max())
        err = float((x32.double() - x64).abs().max()) / scale
        assert err <= max(floor, 2 * float((f64 - x64).abs().max()) / scale), (k, err)
    tol = 1e-6
    fused = batched_pcg(op, y32, y32, inv, tol=tol, maxiter=3000)
    ref = batched_pcg(op, y, y, inv, tol=tol, maxiter=3000)   # float64 vectors, same passes (eager: above)
    assert fused[3] and ref[3] and max(fused[2]) <= tol
    # No more iterations than float64 vectors, typically. Near-singular windows make any float32-matvec CG's
    # count wander either way, and chaotically: on coffee_saturated, y perturbed by 1e-6 of itself moves the
    # float32 loop's count by -33..+24 around float64's 438 (with the one pass of pcg_step; -26..+1 with
    # update and direction as two passes). So the median over y and two such perturbations of y.
    excess = [fused[1] - ref[1]]
    for seed in (1, 2):
        g = torch.Generator().manual_seed(seed)
        yk = y * (1 + 1e-6 * torch.randn(y.shape, generator=g, dtype=torch.float64))
        excess.append(batched_pcg(op, yk.float(), yk.float(), inv, tol=tol, maxiter=3000)[1]
                      - batched_pcg(op, yk, yk, inv, tol=tol, maxiter=3000)[1])
    assert sorted(excess)[1] <= max(2, 0.03 * ref[1]), (excess, ref[1])
    # Both solutions agree to what float32 matvecs allow (test_solve_matches_eager_loop...: 1e-3 of max|x|).
    torch.testing.assert_close(fused[0].double(), ref[0], rtol=0, atol=1e-3 * float(ref[0].abs().max()))
