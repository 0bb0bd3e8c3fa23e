"""The CUDA kernels (csrc/cuda/laplacian_kernels.cuh, pcg_kernels.cuh), run on the CPU by the host emulation.

dpst_ext._emu compiles the exact kernel bodies and entry points of the CUDA build as plain C++ and
registers them as torch.ops.dpst_emu.* (same schemas as torch.ops.dpst.*, CPU tensors). Every
__global__ kernel runs here and is compared with the float64 reference (dpst_ext/engine/reference.py) and
with the CPU ops on the same inputs. Block shapes are small (set_launch_shape) so that images of a few
pixels leave partial blocks, several blocks, and images smaller than one block.

Emulated threads are std::threads, so images stay small. A __syncthreads that not every thread reaches
hangs, as on a GPU: every emulated call runs under a timeout.
"""

import numpy as np
import pytest
import torch

import dpst_ext._emu  # noqa: F401  (registers torch.ops.dpst_emu.*)
from common import emulated, stencil_dense
from dpst_ext.engine import ops
from dpst_ext.engine.reference import matting_laplacian_reference
from dpst_ext.samples import photo

EMU = torch.ops.dpst_emu

# Block shapes: the emulation default (tiny, odd sizes exercise edges) and the GPU default.
SMALL = (8, 4, 8, 4, 32)
ODD = (5, 3, 3, 7, 17)  # non-power-of-two block sizes (block reductions, tile arithmetic)
GPU = (32, 8, 16, 16, 256)  # LaunchShape{} in laplacian_kernels.cuh



@pytest.fixture(params=[SMALL, ODD], ids=["blocks8x4", "blocks-odd"])
def launch_shape(request):
    EMU.set_launch_shape(*request.param)
    yield request.param
    EMU.set_launch_shape(*SMALL)


def reference_matrix(image, eps):
    """Dense float64 M from the reference, for the image values as stored (float32 images promoted)."""
    hwc = image.double().permute(1, 2, 0).numpy()
    m = matting_laplacian_reference(hwc, eps)
    return np.asarray(m.todense()) if hasattr(m, "todense") else m


def rel_error(got, want, scale):
    """max |got - want| / scale, with scale the magnitude of the quantity's terms (not of the result,
    which cancels to ~0 for v in the Laplacian's near-null space)."""
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / max(scale, 1e-300))


# float64 agrees with the reference to rounding of O(1) terms; float32 to a few ulps of the terms on
# random images with moderate eps (photos with eps 1e-7 are measured against the CPU path below).
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}

SIZES = [(1, 1), (2, 7), (3, 3), (3, 5), (4, 3), (5, 6), (7, 9), (13, 11), (17, 20)]


def assert_stats_close(a, b):
    f64 = a.dtype == torch.float64
    scale = float(b.abs().max()) if b.numel() else 1.0
    torch.testing.assert_close(a, b, rtol=1e-13 if f64 else 3e-7, atol=(1e-13 if f64 else 1e-7) * scale)


def all_ops(image, v, eps):
    """Every op, emulated and on the CPU, on the same inputs."""
    out = {}
    for name, lib in (("emu", EMU), ("cpu", torch.ops.dpst)):
        stats = emulated(lib.window_stats, image, eps) if name == "emu" else lib.window_stats(image, eps)
        # Feed both paths the CPU statistics too, so each later op is compared on identical inputs.
        s = ops.window_stats(image, eps)
        call = (lambda f, *a: emulated(f, *a)) if name == "emu" else (lambda f, *a: f(*a))
        out[name] = dict(
            stats=stats,
            matvec=call(lib.laplacian_matvec, image, s, v),
            diagonal=call(lib.laplacian_diagonal, image, s),
            csr=call(lib.laplacian_csr, image, s),
            loss=call(lib.photoreal_loss, image, s, v),
            stencil=call(lib.laplacian_stencil, image, eps),
            # (the CPU stencil for both products, as the CPU statistics above)
            stencil_matvec=call(lib.stencil_matvec, ops.laplacian_stencil(image, eps), v),
            stencil_matvec_normalized=call(lib.stencil_matvec, ops.laplacian_stencil(image, eps), v, True),
        )
    return out


def check_against_reference(image, v, eps, res, tol):
    h, w = image.shape[1:]
    m = reference_matrix(image, eps)
    vv = v.double().reshape(v.shape[0], -1).numpy()
    absm = np.abs(m)
    # M v, matrix-free and from the stencil; the stencil's entries
    want = (m @ vv.T).T
    scale = float(np.max(absm @ np.abs(vv).T)) if m.size else 1.0
    assert rel_error(res["matvec"].reshape(v.shape[0], -1), want, scale) <= tol
    assert rel_error(res["stencil_matvec"].reshape(v.shape[0], -1), want, scale) <= tol
    # D^-1/2 M D^-1/2 v, D = diag(windows containing each pixel), terms of size s |M| s |v|
    n = np.zeros((h, w))
    for ky in range(h - 2):
        for kx in range(w - 2):
            n[ky:ky + 3, kx:kx + 3] += 1
    sq = 1 / np.sqrt(np.maximum(n, 1).reshape(-1))
    want_n = ((sq[:, None] * m * sq[None, :]) @ vv.T).T
    scale_n = float(np.max((sq[:, None] * absm * sq[None, :]) @ np.abs(vv).T)) if m.size else 1.0
    assert rel_error(res["stencil_matvec_normalized"].reshape(v.shape[0], -1), want_n, scale_n) <= tol
    assert res["stencil"].shape == (12, h, w) and res["stencil"].dtype == image.dtype
    assert rel_error(stencil_dense(res["stencil"]), m, max(float(absm.max(initial=0)), 1.0)) <= tol
    # diagonal
    assert rel_error(res["diagonal"].reshape(-1), np.diag(m), max(float(absm.max(initial=0)), 1.0)) <= tol
    # CSR: as a dense matrix, and every stored entry
    crow, col, val = (t.numpy() for t in res["csr"])
    width = min(h, 5) * min(w, 5)
    assert crow.shape == (h * w + 1,) and col.shape == val.shape == (h * w * width,)
    dense = np.zeros((h * w, h * w))
    for i in range(h * w):
        np.add.at(dense[i], col[crow[i]:crow[i + 1]], val[crow[i]:crow[i + 1]])
    assert rel_error(dense, m, max(float(absm.max(initial=0)), 1.0)) <= tol
    # loss: sum_c v_c^T M v_c, terms of size |v|^T |M| |v|
    want_loss = float(np.einsum("ci,ij,cj->", vv, m, vv))
    scale = float(np.einsum("ci,ij,cj->", np.abs(vv), absm, np.abs(vv))) or 1.0
    assert abs(float(res["loss"]) - want_loss) / scale <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_every_kernel_matches_reference_and_cpu(size, channels, dtype, launch_shape):
    g = torch.Generator().manual_seed(hash((size, channels)) % 2**31)
    h, w = size
    image = torch.rand(3, h, w, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(channels, h, w, generator=g, dtype=torch.float64).to(dtype)
    eps = 1e-4
    res = all_ops(image, v, eps)
    emu, cpu = res["emu"], res["cpu"]
    # The statistics are computed in double by the same window_math.h function on both paths; the CPU
    # build (-march=native) may contract to FMA where the emulation build does not: last-bit changes.
    assert_stats_close(emu["stats"], cpu["stats"])
    # Identical structure, values as the CPU op's up to rounding order.
    assert emu["csr"][0].dtype == cpu["csr"][0].dtype == torch.int32
    assert torch.equal(emu["csr"][0], cpu["csr"][0]) and torch.equal(emu["csr"][1], cpu["csr"][1])
    check_against_reference(image, v, eps, emu, TOL[dtype])
    check_against_reference(image, v, eps, cpu, TOL[dtype])


def test_gpu_block_shape_and_many_channels():
    """The GPU's default block shapes (256 threads, 16x16 matvec tiles) on an image of several blocks."""
    EMU.set_launch_shape(*GPU)
    try:
        g = torch.Generator().manual_seed(7)
        image = torch.rand(3, 21, 37, generator=g, dtype=torch.float64)
        v = torch.randn(5, 21, 37, generator=g, dtype=torch.float64)
        res = all_ops(image, v, 1e-5)
        assert_stats_close(res["emu"]["stats"], res["cpu"]["stats"])
        check_against_reference(image, v, 1e-5, res["emu"], TOL[torch.float64])
    finally:
        EMU.set_launch_shape(*SMALL)


def test_loss_reduction_is_deterministic_and_sums_many_blocks():
    """Two-stage block reduction: more partials than threads of the final block, same bits each run."""
    EMU.set_launch_shape(4, 2, 8, 4, 8)  # 8-thread blocks: a 30x40 image gives 15*19 = 285 partials
    try:
        g = torch.Generator().manual_seed(3)
        image = torch.rand(3, 32, 42, generator=g, dtype=torch.float64)
        v = torch.randn(2, 32, 42, generator=g, dtype=torch.float64)
        s = ops.window_stats(image, 1e-4)
        a = emulated(EMU.photoreal_loss, image, s, v)
        b = emulated(EMU.photoreal_loss, image, s, v)
        assert torch.equal(a, b)
        torch.testing.assert_close(a, torch.ops.dpst.photoreal_loss(image, s, v), rtol=1e-12, atol=0)
    finally:
        EMU.set_launch_shape(*SMALL)


def test_empty_and_windowless_inputs():
    for h, w in [(0, 5), (5, 0), (2, 9), (9, 1)]:
        image = torch.rand(3, h, w, dtype=torch.float64)
        stats = emulated(EMU.window_stats, image, 1e-4)
        assert stats.shape == (9, max(h - 2, 0), max(w - 2, 0))
        v = torch.rand(2, h, w, dtype=torch.float64)
        assert torch.equal(emulated(EMU.laplacian_matvec, image, stats, v), torch.zeros_like(v))
        assert torch.equal(emulated(EMU.laplacian_diagonal, image, stats), torch.zeros(h, w, dtype=torch.float64))
        assert float(emulated(EMU.photoreal_loss, image, stats, v)) == 0.0
        stencil = emulated(EMU.laplacian_stencil, image, 1e-4)
        assert torch.equal(stencil, torch.zeros(12, h, w, dtype=torch.float64))
        assert torch.equal(emulated(EMU.stencil_matvec, stencil, v), torch.zeros_like(v))
        for a, b in zip(emulated(EMU.laplacian_csr, image, stats), torch.ops.dpst.laplacian_csr(image, stats)):
            assert a.shape == b.shape and a.dtype == b.dtype
    image = torch.rand(3, 6, 6, dtype=torch.float64)
    stats = ops.window_stats(image, 1e-4)
    zero_channels = torch.rand(0, 6, 6, dtype=torch.float64)
    assert emulated(EMU.laplacian_matvec, image, stats, zero_channels).shape == (0, 6, 6)
    assert float(emulated(EMU.photoreal_loss, image, stats, zero_channels)) == 0.0
    assert emulated(EMU.stencil_matvec, ops.laplacian_stencil(image, 1e-4), zero_channels).shape == (0, 6, 6)
    dots = emulated(EMU.stencil_matvec_dots, ops.laplacian_stencil(image, 1e-4), zero_channels, zero_channels.clone())
    assert dots.shape == (3, 0) and dots.dtype == torch.float64


def test_argument_errors_name_the_argument():
    image = torch.rand(3, 6, 6, dtype=torch.float64)
    stats = ops.window_stats(image, 1e-4)
    with pytest.raises(RuntimeError, match="image must have shape"):
        EMU.window_stats(torch.rand(4, 6, 6, dtype=torch.float64), 1e-4)
    with pytest.raises(RuntimeError, match="eps must be a positive"):
        EMU.window_stats(image, 0.0)
    with pytest.raises(RuntimeError, match="stats must have shape"):
        EMU.laplacian_matvec(image, stats[:, 1:], image)
    with pytest.raises(RuntimeError, match="v must have the image's dtype"):
        EMU.laplacian_matvec(image, stats, image.float())
    with pytest.raises(RuntimeError, match="eps must be a positive"):
        EMU.laplacian_stencil(image, -1.0)
    stencil = ops.laplacian_stencil(image, 1e-4)
    with pytest.raises(RuntimeError, match=r"stencil must have shape \(12, H, W\)"):
        EMU.stencil_matvec(stencil[1:], image)
    with pytest.raises(RuntimeError, match="v must have shape"):
        EMU.stencil_matvec(stencil, image[:, 1:])
    with pytest.raises(RuntimeError, match="v must have the stencil's dtype"):
        EMU.stencil_matvec(stencil, image.float())
    with pytest.raises(RuntimeError, match="out must have v's shape"):
        EMU.stencil_matvec_out(stencil, image, image[1:].clone())
    with pytest.raises(RuntimeError, match="out must not share memory with v"):
        EMU.stencil_matvec_out(stencil, image, image)
    with pytest.raises(RuntimeError, match="out must not share memory with v"):
        EMU.stencil_matvec_dots(stencil, image, image)
    with pytest.raises(RuntimeError, match="block sizes must lie"):
        EMU.set_launch_shape(0, 4, 8, 4, 32)


def test_too_many_rows_for_the_grid_is_an_error():
    EMU.set_launch_shape(8, 1, 8, 1, 32)  # one row per block: at most 65535 rows
    try:
        image = torch.rand(3, 65536, 3, dtype=torch.float64)
        with pytest.raises(RuntimeError, match="image must have at most 65535 rows"):
            EMU.window_stats(image, 1e-4)
        stats = ops.window_stats(image, 1e-4)
        with pytest.raises(RuntimeError, match="image must have at most 65535 rows"):
            EMU.laplacian_matvec(image, stats, image)
    finally:
        EMU.set_launch_shape(*SMALL)


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(11)
    base = torch.rand(3, 14, 20, generator=g, dtype=torch.float64)
    image = base[:, ::2, 1::2]  # (3, 7, 10), strided
    v = torch.randn(10, 7, 3, generator=g, dtype=torch.float64).permute(2, 1, 0)
    s = emulated(EMU.window_stats, image, 1e-4)
    assert_stats_close(s, ops.window_stats(image.contiguous(), 1e-4))
    torch.testing.assert_close(emulated(EMU.laplacian_matvec, image, s, v),
                               torch.ops.dpst.laplacian_matvec(image, s, v), rtol=1e-12, atol=1e-12)
    k = emulated(EMU.laplacian_stencil, image, 1e-4)
    torch.testing.assert_close(k, ops.laplacian_stencil(image.contiguous(), 1e-4), rtol=1e-13, atol=1e-13)
    k_strided = torch.stack([k, k], 3).reshape(12, 7, 20)[:, :, ::2]
    torch.testing.assert_close(emulated(EMU.stencil_matvec, k_strided, v),
                               torch.ops.dpst.stencil_matvec(k, v.contiguous()), rtol=1e-12, atol=1e-12)
    out = torch.full((3, 7, 10), float("nan"), dtype=torch.float64)
    emulated(EMU.stencil_matvec_out, k_strided, v, out)     # the solver's reused buffer: the same launch
    assert torch.equal(out, emulated(EMU.stencil_matvec, k_strided, v))
    dots_out = torch.full((3, 7, 10), float("nan"), dtype=torch.float64)
    dots = emulated(EMU.stencil_matvec_dots, k_strided, v, dots_out)
    assert torch.equal(dots_out, out)
    torch.testing.assert_close(dots, torch.ops.dpst.stencil_matvec_dots(k, v.contiguous(), torch.empty_like(out)),
                               rtol=1e-14, atol=0)


@pytest.mark.parametrize("normalized", [False, True], ids=["M", "normalized"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("shape", [(3, 7, 9), (1, 5, 3), (4, 19, 13)], ids=["3x7x9", "1x5x3", "4x19x13"])
def test_product_with_its_sums_matches_the_cpu_kernel(shape, dtype, normalized, launch_shape):
    """The CUDA product with its sums (one kernel: the product and per-block partial sums, then their sums):
    the product bit for bit the plain kernel's; per channel v.v as the CPU kernel's, v.(M v) and (M v).(M v)
    as float64 sums of its own stored M v (float32 products may differ from the CPU's by FMA contraction), to
    double rounding, over partial blocks and several blocks per row and column (launch_shape's block shapes)."""
    g = torch.Generator().manual_seed(sum(shape))
    c, h, w = shape
    image = torch.rand(3, h, w, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(c, h, w, generator=g, dtype=torch.float64).to(dtype)
    stencil = ops.laplacian_stencil(image, 1e-4)
    out = torch.full_like(v, float("nan"))
    dots = emulated(EMU.stencil_matvec_dots, stencil, v, out, normalized)
    assert torch.equal(out, emulated(EMU.stencil_matvec, stencil, v, normalized))
    want_out = torch.empty_like(v)
    want = torch.ops.dpst.stencil_matvec_dots(stencil, v, want_out, normalized)
    assert_stats_close(out, want_out)                  # (up to FMA contraction)
    torch.testing.assert_close(dots[0], want[0], rtol=1e-14, atol=0)
    v64, m64 = v.double(), out.double()
    torch.testing.assert_close(dots[2], (m64 * m64).sum((1, 2)), rtol=1e-14, atol=0)   # (of its own M v)
    assert ((dots[1] - (v64 * m64).sum((1, 2))).abs() <= 1e-14 * (v64 * m64).abs().sum((1, 2))).all()
    again = emulated(EMU.stencil_matvec_dots, stencil, v, torch.empty_like(v), normalized)
    assert torch.equal(again, dots)   # no atomics


# ---- the fused CG passes (csrc/cuda/pcg_kernels.cuh) against the CPU kernels ------------------------

def _cg_inputs(c, h, w, vdtype, mdtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, r, p = (torch.randn(c, h, w, generator=g, dtype=torch.float64).to(vdtype) for _ in range(3))
    m = torch.randn(c, h, w, generator=g, dtype=torch.float64).to(mdtype)
    d = torch.rand(h, w, generator=g, dtype=torch.float64) + 0.1
    return x, r, p, m, d


def _cg_passes(lib, x, r, p, m, d, u_dtype):
    """One iteration's passes through torch.ops.<lib> on copies: (p, u, p.Ap, x, r, sums)."""
    c = p.shape[0]
    x, r, p = x.clone(), r.clone(), p.clone()
    u = None if u_dtype is None else torch.empty(p.shape, dtype=u_dtype)
    beta, alpha = [0.5, -1.25, 2.0, 0.75][:c], [0.3, 0.7, -0.2, 1.1][:c]
    emulated(lib.pcg_direction, r, d, p, beta, u)
    curvature = emulated(lib.pcg_curvature, p, m, 37.0)
    xs, rs, ps = x.clone(), r.clone(), p.clone()           # pcg_step (no d) from the directed p
    rr = emulated(lib.pcg_step, xs, rs, ps, m, 37.0, alpha, beta)
    sums = emulated(lib.pcg_update, x, r, p, m, 37.0, alpha, d)
    return p, u, curvature, x, r, sums, xs, rs, ps, rr


@pytest.mark.parametrize("vdtype", [torch.float64, torch.float32], ids=["v64", "v32"])
@pytest.mark.parametrize("mdtype", [torch.float64, torch.float32], ids=["m64", "m32"])
@pytest.mark.parametrize("jacobi", [True, False], ids=["jacobi", "no-jacobi"])
@pytest.mark.parametrize("shape", [(3, 7, 9), (1, 5, 3), (4, 11, 13)], ids=["3x7x9", "1x5x3", "4x11x13"])
def test_cg_passes_match_the_cpu_kernels(shape, jacobi, mdtype, vdtype, launch_shape):
    # Partial and several blocks of 32 or 17 threads; 4 channels: grid.y. The stored vectors are the same
    # formulas (csrc/pcg_math.h) on the same inputs: within FMA contraction of the CPU kernels' (one
    # rounding of the stored dtype). The sums are those of each implementation's own stored vectors.
    x, r, p, m, d = _cg_inputs(*shape, vdtype, mdtype)
    d = d if jacobi else None
    u_dtype = mdtype if (jacobi or vdtype != mdtype) else None
    got = _cg_passes(EMU, x, r, p, m, d, u_dtype)
    want = _cg_passes(torch.ops.dpst, x, r, p, m, d, u_dtype)
    for k in (0, 1, 3, 4, 6, 7, 8):                                # p, u, x, r; pcg_step's x, r, p
        if got[k] is None:
            assert want[k] is None
            continue
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
        rtol = 1e-15 if got[k].dtype == torch.float64 else 1.2e-7
        torch.testing.assert_close(got[k], want[k], rtol=rtol, atol=1e-15)
    p2, _, curvature, _, r2, sums, _, rs, _, rr = got
    d1 = d if jacobi else 1.0
    p64, r64 = p2.double(), r2.double()
    torch.testing.assert_close(curvature, (p64 * (p64 + 37.0 * m.double())).sum((1, 2)), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(sums, torch.stack([(r64 ** 2).sum((1, 2)), (d1 * r64 ** 2).sum((1, 2))]),
                               rtol=1e-13, atol=0)
    torch.testing.assert_close(rr, (rs.double() ** 2).sum((1, 2)), rtol=1e-13, atol=0)


def test_cg_sums_are_deterministic_and_add_many_blocks():
    EMU.set_launch_shape(8, 4, 8, 4, 8)  # 8-thread blocks: 3 x 30 x 40 gives 150 partials per channel
    try:
        x, r, p, m, d = _cg_inputs(3, 30, 40, torch.float32, torch.float32, seed=1)
        runs = [_cg_passes(EMU, x, r, p, m, d, torch.float32) for _ in range(2)]
        for a, b in zip(*runs):
            assert torch.equal(a, b)                   # run to run: bitwise
        cpu = _cg_passes(torch.ops.dpst, x, r, p, m, d, torch.float32)
        # p.Ap as the CPU's, to double rounding of its terms (they cancel: w m is large and of either sign);
        # pcg_update's (r.r, r.d r) and pcg_step's r.r, of its own stored r (whose float32 roundings may differ
        # from the CPU's by FMA contraction, which moves the sum by ~1e-10)
        p64, r64 = runs[0][0].double(), runs[0][4].double()
        terms = (p64 * (p64 + 37.0 * m.double())).abs().sum((1, 2))
        assert ((runs[0][2] - cpu[2]).abs() <= 1e-13 * terms).all()
        torch.testing.assert_close(runs[0][5], torch.stack([(r64 ** 2).sum((1, 2)), (d * r64 ** 2).sum((1, 2))]),
                                   rtol=1e-13, atol=0)
        torch.testing.assert_close(runs[0][9], (runs[0][7].double() ** 2).sum((1, 2)), rtol=1e-13, atol=0)
        EMU.set_launch_shape(*GPU)                     # the GPU's 256-thread blocks: one partial block
        gpu = _cg_passes(EMU, x, r, p, m, d, torch.float32)
        for k in (0, 1, 3, 4):
            torch.testing.assert_close(gpu[k], cpu[k], rtol=1.2e-7, atol=0)
    finally:
        EMU.set_launch_shape(*SMALL)


def test_smoothing_solve_on_the_emulated_cg_kernels(monkeypatch):
    # batched_pcg's fused loop (what a CUDA device runs) with the emulated CUDA kernels in place of the CPU
    # ones, the product included: the same iterates after 12 iterations, with Jacobi (the passes) and without
    # (the product with its sums, then pcg_step), on FastPhotoStyle's system (the normalised product).
    from dpst_ext import samples
    from dpst_ext.engine import LaplacianStencil
    from dpst_ext.engine.smoothing import SmoothingOperator, batched_pcg, weight_from_beta

    image = samples.random_image(12, 15, seed=4)
    op = SmoothingOperator(LaplacianStencil(image, 1e-7, dtype=torch.float32), weight_from_beta(0.9999), True)
    y = image.float() ** 0.8
    for inv in ((1.0 / op.diagonal).float(), None):
        cpu = batched_pcg(op, y, y, inv, tol=1e-12, maxiter=12)
        with monkeypatch.context() as patch:
            for name in ("pcg_direction", "pcg_curvature", "pcg_update", "pcg_step", "stencil_matvec_dots",
                         "stencil_matvec_out"):
                patch.setattr(ops, name, lambda *a, _f=getattr(EMU, name): emulated(_f, *a))
            emu = batched_pcg(op, y, y, inv, tol=1e-12, maxiter=12)
        assert emu[1] == cpu[1] == 12
        torch.testing.assert_close(emu[0], cpu[0], rtol=0, atol=1e-5 * float(cpu[0].abs().max()))
        np.testing.assert_allclose(emu[2], cpu[2], rtol=1e-3)


def test_cg_passes_on_empty_inputs_and_bad_arguments():
    for shape in [(0, 4, 5), (2, 0, 5), (2, 4, 0)]:
        x, r, p, m, d = _cg_inputs(*shape, torch.float64, torch.float32)
        p2, u, curvature, x2, r2, sums, *_, rr = _cg_passes(EMU, x, r, p, m, d, torch.float32)
        assert torch.equal(curvature, torch.zeros(shape[0], dtype=torch.float64))
        assert torch.equal(sums, torch.zeros(2, shape[0], dtype=torch.float64))
        assert torch.equal(rr, torch.zeros(shape[0], dtype=torch.float64))
        assert p2.shape == x2.shape == r2.shape == shape
    x, r, p, m, d = _cg_inputs(3, 4, 5, torch.float64, torch.float32)
    with pytest.raises(RuntimeError, match="beta must hold one value per channel"):
        EMU.pcg_direction(r, d, p, [1.0], m.clone())
    with pytest.raises(RuntimeError, match="p must be float32 or float64, got Half"):
        EMU.pcg_curvature(p.half(), m, 1.0)
    with pytest.raises(RuntimeError, match=r"r must have the dtype of the other CG vectors \(Double\), got Float"):
        EMU.pcg_update(x, r.float(), p, m, 1.0, [0.1] * 3, d)
    with pytest.raises(RuntimeError, match=r"inv_diag must have shape \(H, W\)"):
        EMU.pcg_update(x, r, p, m, 1.0, [0.1] * 3, d[:3])
    with pytest.raises(RuntimeError, match="m must be a contiguous float32 or float64 tensor"):
        EMU.pcg_update(x, r, p, m[:2], 1.0, [0.1] * 3, d)
    with pytest.raises(RuntimeError, match="beta must hold one value per channel"):
        EMU.pcg_step(x, r, p, m, 1.0, [0.1] * 3, [0.2])
    many = torch.zeros(65536, 1, 1, dtype=torch.float64)      # channels on gridDim.y: at most 65535
    with pytest.raises(RuntimeError, match="at most 65535 channels"):
        EMU.pcg_curvature(many, many.float(), 1.0)


# ---- real photos: float32 error of the emulated kernels next to the CPU path's ----------------------

PHOTO_CASES = [("astronaut", 40, 1e-7), ("coffee", 36, 1e-7), ("chelsea", 32, 1e-4)]
_photo_errors = []


@pytest.mark.parametrize("name,long_side,eps", PHOTO_CASES, ids=[c[0] for c in PHOTO_CASES])
def test_photo_float32_error_next_to_cpu(name, long_side, eps):
    image64 = photo(name, long_side=long_side, dtype=torch.float64)
    image = image64.float()
    m = reference_matrix(image, eps)  # of the float32-rounded image both paths see
    absm = np.abs(m)
    g = torch.Generator().manual_seed(5)
    h, w = image.shape[1:]
    # v: random, and the image's own colours (near the Laplacian's null space: M v cancels to ~0)
    v = torch.cat([torch.rand(1, h, w, generator=g), image], 0)
    vv = v.double().reshape(v.shape[0], -1).numpy()
    want_mv = (m @ vv.T).T
    mv_scale = float(np.max(absm @ np.abs(vv).T))
    want_loss = float(np.einsum("ci,ij,cj->", vv, m, vv))
    loss_scale = float(np.einsum("ci,ij,cj->", np.abs(vv), absm, np.abs(vv)))
    errors = {}
    for path, lib, call in (("emu", EMU, emulated), ("cpu", torch.ops.dpst, lambda f, *a: f(*a))):
        s = call(lib.window_stats, image, eps)
        mv = call(lib.laplacian_matvec, image, s, v)
        diag = call(lib.laplacian_diagonal, image, s)
        crow, col, val = call(lib.laplacian_csr, image, s)
        loss = call(lib.photoreal_loss, image, s, v)
        stencil = call(lib.laplacian_stencil, image, eps)
        smv = call(lib.stencil_matvec, stencil, v)
        dense = np.zeros_like(m)
        rows = np.repeat(np.arange(h * w), np.diff(crow.numpy()))
        np.add.at(dense, (rows, col.numpy()), val.double().numpy())
        errors[path] = dict(
            matvec=rel_error(mv.reshape(v.shape[0], -1), want_mv, mv_scale),
            diagonal=rel_error(diag.reshape(-1), np.diag(m), float(absm.max())),
            csr=rel_error(dense, m, float(absm.max())),
            loss=abs(float(loss) - want_loss) / loss_scale,
            stencil=rel_error(stencil_dense(stencil), m, float(absm.max())),
            stencil_matvec=rel_error(smv.reshape(v.shape[0], -1), want_mv, mv_scale),
        )
    _photo_errors.append((name, h, w, eps, errors))
    print(f"\n{name} {h}x{w} eps={eps:g} float32 relative error (emulated CUDA | CPU):")
    for k in errors["emu"]:
        print(f"  {k:9s} {errors['emu'][k]:.2e} | {errors['cpu'][k]:.2e}")
    for k, e in errors["emu"].items():
        # Same arithmetic in another order: within a factor of the CPU path's error.
        assert e <= 4 * errors["cpu"][k] + 1e-8, (k, e, errors["cpu"][k])
    for path in ("emu", "cpu"):
        # The stencil, computed in double from the image and rounded once, is the more accurate product.
        assert errors[path]["stencil_matvec"] <= errors[path]["matvec"], (path, errors[path])


# Every __global__ kernel and the emulated op whose tests above run it: a new kernel fails this test
# until it is added here (and tested).
KERNEL_RUN_BY = {
    "window_stats_kernel": "window_stats",
    "laplacian_matvec_kernel": "laplacian_matvec",
    "laplacian_diagonal_kernel": "laplacian_diagonal",
    "csr_row_offsets_kernel": "laplacian_csr",
    "csr_entries_kernel": "laplacian_csr",
    "loss_partials_kernel": "photoreal_loss",
    "sum_partials_kernel": "photoreal_loss",
    "laplacian_stencil_kernel": "laplacian_stencil",
    "stencil_matvec_kernel": "stencil_matvec",   # and stencil_matvec_dots (its Dots form)
    # csrc/cuda/pcg_kernels.cuh (sum_partials_kernel adds their partials too)
    "pcg_direction_kernel": "pcg_direction",
    "pcg_curvature_kernel": "pcg_curvature",
    "pcg_update_kernel": "pcg_update",
    "pcg_step_kernel": "pcg_step",
    # csrc/cuda/affine_kernels.cuh, run by the emulated-kernel tests of tests/test_affine.py
    "local_affine_fit_kernel": "local_affine_fit",
    "bilateral_affine_kernel": "bilateral_affine_apply",
}


def test_every_global_kernel_is_listed():
    import pathlib
    import re

    csrc = pathlib.Path(__file__).resolve().parents[1] / "csrc"
    found = set()
    for path in list(csrc.rglob("*.cu")) + list(csrc.rglob("*.cuh")):
        found |= set(re.findall(r"__global__\s+void\s+(\w+)", path.read_text()))
    assert found == set(KERNEL_RUN_BY), f"kernels in csrc/ {sorted(found)} vs listed {sorted(KERNEL_RUN_BY)}"
