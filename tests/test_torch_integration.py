"""The ops as PyTorch citizens: opcheck, gradcheck, torch.compile, non-contiguous inputs, batched channels,
and the MattingLaplacian front end's accepted shapes (numpy and torch)."""
import numpy as np
import pytest
import torch

from common import EPS, TOL, max_rel, photo_crop, randn
from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian, ops
from dpst_ext.engine.reference import matvec_reference

DTYPES = [torch.float64, torch.float32]


def _setup(h=9, w=11, dtype=torch.float64, c=3):
    image = samples.random_image(h, w, seed=11, dtype=dtype)
    return image, ops.window_stats(image, EPS), randn(c, h, w, seed=12, dtype=dtype)


# ---- opcheck: schema, fake kernels, autograd registration, aot dispatch ------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", [(9, 11), (2, 6), (4, 4)], ids=str)
def test_opcheck_every_op(size, dtype):
    image, stats, v = _setup(*size, dtype=dtype)
    torch.library.opcheck(torch.ops.dpst.window_stats.default, (image, EPS))
    torch.library.opcheck(torch.ops.dpst.laplacian_matvec.default, (image, stats, v))
    torch.library.opcheck(torch.ops.dpst.laplacian_diagonal.default, (image, stats))
    torch.library.opcheck(torch.ops.dpst.laplacian_csr.default, (image, stats))
    torch.library.opcheck(torch.ops.dpst.photoreal_loss.default, (image, stats, v.requires_grad_()))
    torch.library.opcheck(torch.ops.dpst.laplacian_stencil.default, (image, EPS))
    stencil = ops.laplacian_stencil(image, EPS)
    torch.library.opcheck(torch.ops.dpst.stencil_matvec.default, (stencil, v.detach().requires_grad_()))
    torch.library.opcheck(torch.ops.dpst.stencil_matvec_out.default, (stencil, v.detach(), torch.empty_like(v)))
    torch.library.opcheck(torch.ops.dpst.stencil_matvec_dots.default, (stencil, v.detach(), torch.empty_like(v)))
    torch.library.opcheck(torch.ops.dpst.stencil_matvec.default, (stencil, v.detach().requires_grad_(), True))
    torch.library.opcheck(torch.ops.dpst.stencil_matvec_out.default,
                          (stencil, v.detach(), torch.empty_like(v), True))
    torch.library.opcheck(torch.ops.dpst.stencil_matvec_dots.default,
                          (stencil, v.detach(), torch.empty_like(v), True))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_product_into_a_buffer_is_the_product(dtype):
    """stencil_matvec_out (the solver's reused buffer) writes exactly stencil_matvec's values, and refuses an
    out of another shape, dtype or layout, or one sharing memory with v or the stencil, naming the rule."""
    image, _, v = _setup(13, 17, dtype=dtype)
    lap = MattingLaplacian(image, EPS).stencil()
    out = torch.full_like(v, float("nan"))
    assert lap.matvec(v, out=out) is out and torch.equal(out, lap.matvec(v))
    v_strided = torch.stack([v, v], 3).reshape(3, 13, 34)[:, :, ::2]       # read through its strides
    assert torch.equal(ops.stencil_matvec_out(lap.weights, v_strided, torch.empty_like(v)), lap.matvec(v))
    other = torch.float32 if dtype == torch.float64 else torch.float64
    for bad, rule in [(torch.empty(2, 13, 17, dtype=dtype), "out must have v's shape"),
                      (torch.empty(3, 13, 17, dtype=other), "out must have v's dtype"),
                      (torch.empty(3, 17, 13, dtype=dtype).transpose(1, 2), "out must be contiguous"),
                      (v, "out must not share memory with v or the stencil"),
                      (lap.weights[:3], "out must not share memory with v or the stencil")]:
        with pytest.raises(RuntimeError, match=rule):
            ops.stencil_matvec_out(lap.weights, v, bad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_product_with_its_sums(dtype, channels):
    """stencil_matvec_dots writes stencil_matvec's values exactly and returns v.v, v.(M v) and (M v).(M v) per
    channel, the sums in double of the stored values (a CG iteration's p.Ap and |Ap|^2): on a real photo crop
    and on noise, in groups of three channels and the rest; the same for any number of threads."""
    for image in (photo_crop("hubble_dark", 32).to(dtype), samples.random_image(23, 41, seed=3, dtype=dtype)):
        h, w = image.shape[1:]
        lap = MattingLaplacian(image, EPS).stencil()
        v = randn(channels, h, w, seed=channels, dtype=dtype)
        out = torch.full_like(v, float("nan"))
        dots = lap.matvec_dots(v, out)
        assert torch.equal(out, lap.matvec(v))
        assert dots.shape == (3, channels) and dots.dtype == torch.float64
        v64, m64 = v.double(), out.double()
        torch.testing.assert_close(dots[0], (v64 * v64).sum((1, 2)), rtol=1e-14, atol=0)
        torch.testing.assert_close(dots[2], (m64 * m64).sum((1, 2)), rtol=1e-14, atol=0)
        scale = (v64 * m64).abs().sum((1, 2))
        assert ((dots[1] - (v64 * m64).sum((1, 2))).abs() <= 1e-14 * scale).all()
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            assert torch.equal(lap.matvec_dots(v, torch.empty_like(v)), dots)
        finally:
            torch.set_num_threads(threads)
    with pytest.raises(RuntimeError, match="out must not share memory with v"):
        lap.matvec_dots(v, v)
    assert lap.matvec_dots(v[:0], v[:0].clone()).shape == (3, 0)


def test_opcheck_non_contiguous_inputs():
    image, stats, v = _setup(7, 9, c=2)
    image_t = image.transpose(1, 2).contiguous().transpose(1, 2)
    stats_t = stats.transpose(1, 2).contiguous().transpose(1, 2)
    v_t = v.permute(2, 1, 0).contiguous().permute(2, 1, 0)
    torch.library.opcheck(torch.ops.dpst.window_stats.default, (image_t, EPS))
    torch.library.opcheck(torch.ops.dpst.laplacian_matvec.default, (image_t, stats_t, v_t))
    torch.library.opcheck(torch.ops.dpst.laplacian_diagonal.default, (image_t, stats_t))
    torch.library.opcheck(torch.ops.dpst.laplacian_csr.default, (image_t, stats_t))
    torch.library.opcheck(torch.ops.dpst.photoreal_loss.default, (image_t, stats_t, v_t.requires_grad_()))
    torch.library.opcheck(torch.ops.dpst.laplacian_stencil.default, (image_t, EPS))
    stencil_t = ops.laplacian_stencil(image, EPS).transpose(1, 2).contiguous().transpose(1, 2)
    torch.library.opcheck(torch.ops.dpst.stencil_matvec.default, (stencil_t, v_t.detach()))


# ---- autograd ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_gradcheck_loss(seed):
    image, stats, _ = _setup(6, 7)
    v = randn(2, 6, 7, seed=seed).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: ops.photoreal_loss(image, stats, v), (v,))


def test_loss_gradient_is_two_M_v_on_a_photo():
    image = photo_crop("pasted", 20)
    lap = MattingLaplacian(image, EPS)
    v = randn(3, 20, 20, seed=3).requires_grad_()
    (grad,) = torch.autograd.grad(lap.quad(v) * 0.5, v)
    ref = matvec_reference(image, v.detach(), EPS, np.longdouble)
    assert max_rel(grad, ref) <= TOL[(torch.float64, "photo")]


# ---- torch.compile -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_loss_and_matvec(backend):
    """fullgraph=True (no graph breaks): the ops trace through their fake kernels and the loss's
    registered autograd. aot_eager checks the tracing alone; inductor (default backend, ~15 s of C++
    compilation on 2 cores) checks the generated code around the custom ops too."""
    image, stats, _ = _setup(12, 10)

    def step(v):
        loss = ops.photoreal_loss(image, stats, v)
        mv = ops.laplacian_matvec(image, stats, v.detach())
        return loss, mv

    compiled = torch.compile(step, fullgraph=True, backend=backend)
    v = randn(3, 12, 10, seed=4).requires_grad_()
    loss, mv = compiled(v)
    loss.backward()
    eager_loss, eager_mv = step(v)
    assert torch.equal(mv, eager_mv)
    assert loss.item() == pytest.approx(eager_loss.item(), rel=1e-14)
    assert max_rel(v.grad, 2 * eager_mv) <= 1e-14


def test_matvec_is_differentiable_in_v():
    """M v is linear in v with gradient M^T g = M g; backprop through laplacian_matvec must give it
    (a user writing an objective with L @ v, e.g. a residual |M v - b|^2, relies on it)."""
    image, stats, _ = _setup(5, 6)
    v = randn(2, 5, 6, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: ops.laplacian_matvec(image, stats, v), (v,))
    stencil = ops.laplacian_stencil(image, EPS)
    assert torch.autograd.gradcheck(lambda v: ops.stencil_matvec(stencil, v), (v,))
    assert torch.autograd.gradcheck(lambda v: ops.stencil_matvec(stencil, v, normalized=True), (v,))


# ---- non-contiguous inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_inputs_give_the_same_results(dtype):
    image, stats, v = _setup(13, 9, dtype=dtype, c=4)
    image_t = image.transpose(1, 2).contiguous().transpose(1, 2)       # same values, transposed strides
    stats_t = stats.transpose(1, 2).contiguous().transpose(1, 2)
    v_big = torch.zeros(8, 13, 18, dtype=dtype)
    v_big[::2, :, ::2] = v                                              # sliced view, every other
    v_s = v_big[::2, :, ::2]
    assert not (image_t.is_contiguous() or stats_t.is_contiguous() or v_s.is_contiguous())
    assert torch.equal(ops.window_stats(image_t, EPS), stats)
    assert torch.equal(ops.laplacian_matvec(image_t, stats_t, v_s), ops.laplacian_matvec(image, stats, v))
    assert torch.equal(ops.laplacian_diagonal(image_t, stats_t), ops.laplacian_diagonal(image, stats))
    for a, b in zip(ops.laplacian_csr(image_t, stats_t), ops.laplacian_csr(image, stats)):
        assert torch.equal(a, b)
    assert torch.equal(ops.photoreal_loss(image_t, stats_t, v_s), ops.photoreal_loss(image, stats, v))


def test_numpy_hwc_image_and_channels_last_view():
    image = photo_crop("rocket_sky", 16)
    hwc = image.numpy().transpose(1, 2, 0)                       # non-contiguous numpy view
    a = MattingLaplacian(hwc, EPS)
    b = MattingLaplacian(image, EPS)
    assert torch.equal(a.stats, b.stats)
    u8 = np.round(hwc * 255).astype(np.uint8)
    assert torch.allclose(MattingLaplacian(u8, EPS).image.double(), image, atol=1e-7)


# ---- batched channels and front-end shapes -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_batched_channels_equal_per_channel_products(channels, dtype):
    image, stats, v = _setup(10, 14, dtype=dtype, c=channels)
    out = ops.laplacian_matvec(image, stats, v)
    assert out.shape == (channels, 10, 14)
    for c in range(channels):
        assert torch.equal(out[c], ops.laplacian_matvec(image, stats, v[c:c + 1])[0])
    ref = matvec_reference(image.double(), v.double(), EPS, np.float64)
    assert max_rel(out, ref) <= TOL[(dtype, "noise")]
    loss = ops.photoreal_loss(image, stats, v)
    per_channel = sum(ops.photoreal_loss(image, stats, v[c:c + 1]) for c in range(channels))
    assert abs(loss.item() - per_channel.item()) <= TOL[(dtype, "noise")] * abs(per_channel.item())


def test_front_end_accepts_hw_flat_and_chw_torch_and_numpy():
    image, _, v = _setup(7, 8, c=3)
    lap = MattingLaplacian(image, EPS)
    full = lap.matvec(v)
    hw = lap.matvec(v[1])
    assert hw.shape == (7, 8) and torch.equal(hw, full[1])
    flat = lap @ v[2].reshape(-1)
    assert flat.shape == (56,) and torch.equal(flat, full[2].reshape(-1))
    as_np = lap.matvec(v[0].numpy())
    assert isinstance(as_np, np.ndarray) and np.array_equal(as_np, full[0].numpy())
    assert torch.equal(lap.quad(v[0]), lap.quad(v[0:1])) and torch.equal(lap.quad(v[0].reshape(-1)), lap.quad(v[0:1]))
    assert lap.shape == (56, 56) and lap.to_scipy().shape == (56, 56) and lap.to_torch_sparse().shape == (56, 56)
    # v of another float dtype is converted to the image's dtype
    assert torch.allclose(lap.matvec(v.float()), full, rtol=0, atol=1e-5 * full.abs().max().item())
