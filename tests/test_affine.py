"""Smooth local affine ops (local_affine_fit, bilateral_affine_apply; csrc/affine_math.h) against the
readable float64 torch definition (dpst_ext/engine/postprocess.py): the CPU op and the emulated CUDA kernels,
random and real-photo inputs, float32 and float64, odd sizes, radius 0/1/3/15, images smaller than the
radius; opcheck; bad inputs.

Tolerances (relative to the largest reference magnitude, see `scale` below), with measured maxima:
* fit: solved in double on both paths (4x4 Cholesky here, torch.linalg.solve in the reference); the
  normal matrix with ridge 1e-3 has condition up to ~1e4 (flat windows), so float64 agrees to ~1e-12
  (measured 2.1e-12 on the photos, tolerance 1e-11); float32 stores the double solution rounded once
  (measured 3.6e-8, tolerance 3e-7).
* filter + reconstruction, relative to max_p sum_k |A'_ck| |[I;1]_k| (the terms of the reconstruction,
  which cancel to an output in 0..1): float64 measured 4.8e-15, tolerance 1e-13. float32 accumulates
  the 13 weighted sums of up to 961 taps in float32 and each weight carries its exponent's rounding
  (|exponent| up to ~87 times u32): measured 8.9e-7, tolerance 5e-6.
"""

import pytest
import torch

from common import emulated
from dpst_ext.engine import ops, postprocess
from dpst_ext.samples import photo

import dpst_ext._emu  # noqa: F401,E402  (registers torch.ops.dpst_emu.*; built by every install)

EMU = torch.ops.dpst_emu

FIT_TOL = {torch.float64: 1e-11, torch.float32: 3e-7}
APPLY_TOL = {torch.float64: 1e-13, torch.float32: 5e-6}



def stylised(content: torch.Tensor, seed: int) -> torch.Tensor:
    """A plausible 'current output' for a content image: a channel mix, a gamma, a little noise."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.1, 0.5]], dtype=torch.float64)
    x = torch.einsum("ij,jhw->ihw", mix, content.double()).clamp(0, 1) ** 1.3
    return (x + 0.03 * torch.randn(content.shape, generator=g, dtype=torch.float64)).to(content.dtype)


def random_pair(h, w, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    content = torch.rand(3, h, w, generator=g, dtype=torch.float64)
    # Flat and dark patches as photos have: near-singular windows where the ridge matters.
    if h > 4 and w > 4:
        content[:, : h // 2, : w // 3] = 0.02
    content = content.to(dtype)
    return content, stylised(content, seed + 1)


def photo_pair(name, long_side, dtype):
    content = photo(name, long_side=long_side, dtype=dtype)
    return content, stylised(content, 3)


def reference_fit(content, output, ridge=1e-3):
    return postprocess.local_affine_fit_torch(content.double(), output.double(), ridge)


def reference_apply(coeffs, content, radius, edge):
    content = content.double()
    return postprocess.apply_affine(postprocess.joint_bilateral(coeffs.double(), content, radius, edge), content)


def rel(got, want, scale):
    return float((got.double() - want).abs().max() / scale) if want.numel() else 0.0


def apply_scale(coeffs, content):
    """max_p sum_k |A_ck| |[I;1]_k| over the coefficients: the size of the reconstruction's terms."""
    h, w = content.shape[1:]
    x = torch.cat([content.double().abs(), torch.ones(1, h, w, dtype=torch.float64)])
    return float((coeffs.double().abs().reshape(3, 4, h, w) * x[None]).sum(1).max()) if h * w else 1.0


SIZES = [(1, 1), (1, 6), (2, 3), (5, 7), (8, 4), (13, 17)]


# ---- CPU op ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_fit_matches_reference(size, dtype):
    content, output = random_pair(*size, seed=sum(size), dtype=dtype)
    got = ops.local_affine_fit(content, output, 1e-3)
    want = reference_fit(content, output)
    assert got.shape == (12, *size) and got.dtype == dtype
    assert rel(got, want, float(want.abs().max())) <= FIT_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("radius", [0, 1, 3, 15])
@pytest.mark.parametrize("size", [(1, 1), (2, 9), (7, 5), (21, 26)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_apply_matches_reference(size, radius, dtype):
    content, output = random_pair(*size, seed=7 * size[0] + size[1], dtype=dtype)
    coeffs = ops.local_affine_fit(content, output, 1e-3)
    for edge in (0.01, 0.3):
        got = ops.bilateral_affine_apply(coeffs, content, radius, edge)
        want = reference_apply(coeffs, content, radius, edge)
        assert got.shape == (3, *size) and got.dtype == dtype
        assert rel(got, want, apply_scale(coeffs, content)) <= APPLY_TOL[dtype], edge


def test_radius_zero_is_the_fit_reconstruction():
    """No filtering: out = A [I; 1] exactly, and it reproduces the output where the 3x3 fit is exact."""
    content = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # no flat patch
    affine = torch.tensor([[0.5, 0.2, 0.0, 0.1], [0.0, 0.9, 0.1, -0.05], [0.2, 0.0, 0.7, 0.0]], dtype=torch.float64)
    output = torch.einsum("ck,khw->chw", affine[:, :3], content) + affine[:, 3, None, None]
    coeffs = ops.local_affine_fit(content, output, 1e-12)
    torch.testing.assert_close(coeffs, affine.reshape(12, 1, 1).expand(12, 9, 11), rtol=0, atol=1e-6)
    got = ops.bilateral_affine_apply(coeffs, content, 0, 0.01)
    torch.testing.assert_close(got, postprocess.apply_affine(coeffs, content), rtol=0, atol=1e-15)
    # A globally affine output survives the whole pipeline at the default settings (up to the ridge).
    torch.testing.assert_close(ops.smooth_local_affine(content, output, ridge=1e-9), output, rtol=0, atol=1e-5)


PHOTOS = [("astronaut", 48), ("coffee", 41), ("chelsea", 37)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,long_side", PHOTOS, ids=[p[0] for p in PHOTOS])
def test_smooth_local_affine_on_photos(name, long_side, dtype):
    content, output = photo_pair(name, long_side, dtype)
    got = ops.smooth_local_affine(content, output)  # defaults: radius 15, edge 0.01, ridge 1e-3
    want = postprocess.smooth_local_affine_torch(content.double(), output.double())
    coeffs = reference_fit(content, output)
    assert rel(ops.local_affine_fit(content, output), coeffs, float(coeffs.abs().max())) <= FIT_TOL[dtype]
    filtered = postprocess.joint_bilateral(coeffs, content.double(), 15, 0.01)
    assert rel(got, want, apply_scale(filtered, content)) <= APPLY_TOL[dtype]


def test_photo_crop_larger_than_the_neighbourhood():
    """A 64x80 crop: interior pixels see all 961 taps (the smaller tests are mostly border)."""
    content = photo("astronaut", long_side=160, dtype=torch.float64)[:, 20:84, 30:110]
    output = stylised(content, 5)
    for dtype in (torch.float64, torch.float32):
        c, o = content.to(dtype), output.to(dtype)
        got = ops.smooth_local_affine(c, o)
        want = postprocess.smooth_local_affine_torch(c.double(), o.double())
        filtered = postprocess.joint_bilateral(reference_fit(c, o), c.double(), 15, 0.01)
        assert rel(got, want, apply_scale(filtered, c)) <= APPLY_TOL[dtype]


def test_output_dtype_follows_content_and_non_contiguous_inputs():
    base, output = random_pair(14, 22, seed=4, dtype=torch.float64)
    content = base[:, ::2, 1::2]  # (3, 7, 11), strided
    out = output[:, ::2, 1::2].float()  # converted to content's dtype by the wrapper, as in postprocess
    got = ops.smooth_local_affine(content, out, radius=3)
    want = postprocess.smooth_local_affine_torch(content, out, radius=3)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-11)
    coeffs = ops.local_affine_fit(content, out.double()).permute(0, 2, 1).contiguous().permute(0, 2, 1)
    torch.testing.assert_close(ops.bilateral_affine_apply(coeffs, content, 3, 0.01), got, rtol=0, atol=1e-14)


def test_empty_images():
    for h, w in [(0, 5), (4, 0)]:
        content = torch.rand(3, h, w, dtype=torch.float64)
        assert ops.local_affine_fit(content, content, 1e-3).shape == (12, h, w)
        assert ops.smooth_local_affine(content, content).shape == (3, h, w)


def test_argument_errors_name_the_argument():
    content, output = random_pair(6, 7, seed=2, dtype=torch.float64)
    coeffs = ops.local_affine_fit(content, output)
    libs = [torch.ops.dpst] + ([EMU] if EMU is not None else [])
    for lib in libs:
        cases = [
            (lambda: lib.local_affine_fit(content[:2], output, 1e-3), "content must have shape"),
            (lambda: lib.local_affine_fit(content.half(), output.half(), 1e-3), "content must be float32 or float64"),
            (lambda: lib.local_affine_fit(content, output[:, 1:], 1e-3), r"output must have shape \(3, H, W\)"),
            (lambda: lib.local_affine_fit(content, output.float(), 1e-3), "output must have content's dtype"),
            (lambda: lib.local_affine_fit(content, output, 0.0), "ridge must be a positive"),
            (lambda: lib.local_affine_fit(content, output, float("nan")), "ridge must be a positive"),
            (lambda: lib.local_affine_fit(content.clone().fill_(float("nan")), output, 1e-3),
             "content must contain only finite"),
            (lambda: lib.bilateral_affine_apply(coeffs[:9], content, 3, 0.01), r"coeffs must have shape \(12, H, W\)"),
            (lambda: lib.bilateral_affine_apply(coeffs.float(), content, 3, 0.01), "coeffs must have content's dtype"),
            (lambda: lib.bilateral_affine_apply(coeffs, content, -1, 0.01), "radius must lie in 0..1000"),
            (lambda: lib.bilateral_affine_apply(coeffs, content, 3, 0.0), "edge must be a positive"),
            (lambda: lib.bilateral_affine_apply(coeffs * float("inf"), content, 3, 0.01), "coeffs must contain only finite"),
        ]
        for call, message in cases:
            with pytest.raises(RuntimeError, match=message):
                call()


def test_opcheck():
    content, output = random_pair(5, 6, seed=9, dtype=torch.float64)
    coeffs = ops.local_affine_fit(content, output)
    torch.library.opcheck(torch.ops.dpst.local_affine_fit.default, (content, output, 1e-3))
    torch.library.opcheck(torch.ops.dpst.bilateral_affine_apply.default, (coeffs, content, 2, 0.05))
    torch.library.opcheck(torch.ops.dpst.bilateral_affine_apply.default,
                          (coeffs.float(), content.float(), 0, 0.01))


def test_torch_compile_fullgraph():
    content, output = random_pair(9, 8, seed=12, dtype=torch.float32)
    fn = torch.compile(lambda c, o: ops.smooth_local_affine(c, o, radius=2), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(fn(content, output), ops.smooth_local_affine(content, output, radius=2))


# ---- emulated CUDA kernels ------------------------------------------------------------------------


# (fit_x, fit_y, bilateral_x, bilateral_y, shared_budget): the emulation default (tiny blocks, 8 KB so
# that radius 3 spans several tap chunks), odd blocks with a budget so small that every chunk holds a
# single tap (the smallest tile, which the launcher uses even above the budget), the GPU default.
SMALL = (8, 4, 8, 4, 8192)
ODD = (5, 3, 3, 5, 1200)
GPU = (32, 8, 32, 4, 48 * 1024)


@pytest.fixture(params=[SMALL, ODD], ids=["blocks8x4", "blocks-odd"])
def affine_shape(request):
    EMU.set_affine_launch_shape(*request.param)
    yield request.param
    EMU.set_affine_launch_shape(*SMALL)


EMU_SIZES = [(1, 1), (2, 5), (6, 9), (11, 7)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("size", EMU_SIZES, ids=[f"{h}x{w}" for h, w in EMU_SIZES])
def test_emulated_kernels_match_reference_and_cpu(size, dtype, affine_shape):
    content, output = random_pair(*size, seed=3 * size[0] + size[1], dtype=dtype)
    coeffs = emulated(EMU.local_affine_fit, content, output, 1e-3)
    want = reference_fit(content, output)
    assert rel(coeffs, want, float(want.abs().max())) <= FIT_TOL[dtype]
    cpu_coeffs = ops.local_affine_fit(content, output, 1e-3)
    for radius in (0, 1, 3):
        got = emulated(EMU.bilateral_affine_apply, cpu_coeffs, content, radius, 0.05)
        want_out = reference_apply(cpu_coeffs, content, radius, 0.05)
        scale = apply_scale(cpu_coeffs, content)
        assert rel(got, want_out, scale) <= APPLY_TOL[dtype], radius
        cpu = ops.bilateral_affine_apply(cpu_coeffs, content, radius, 0.05)
        assert rel(got, cpu.double(), scale) <= APPLY_TOL[dtype], radius


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_emulated_default_radius_on_a_photo_smaller_than_the_radius(dtype):
    """Radius 15 on a 12x14 photo: every tap chunk straddles the border; GPU and small block shapes."""
    content, output = photo_pair("coffee", 14, dtype)
    coeffs = ops.local_affine_fit(content, output)
    want = reference_apply(coeffs, content, 15, 0.01)
    scale = apply_scale(coeffs, content)
    for shape in (SMALL, GPU):
        EMU.set_affine_launch_shape(*shape)
        try:
            got = emulated(EMU.bilateral_affine_apply, coeffs, content, 15, 0.01)
        finally:
            EMU.set_affine_launch_shape(*SMALL)
        assert rel(got, want, scale) <= APPLY_TOL[dtype], shape


def test_emulated_photo_float32_error_next_to_cpu():
    """A 20x30 photo crop at the default settings: the emulated kernels' float32 error vs the CPU op's."""
    content64 = photo("astronaut", long_side=120, dtype=torch.float64)[:, 30:50, 40:70]
    output64 = stylised(content64, 8)
    content, output = content64.float(), output64.float()
    want = postprocess.smooth_local_affine_torch(content.double(), output.double())
    filtered = postprocess.joint_bilateral(reference_fit(content, output), content.double(), 15, 0.01)
    scale = apply_scale(filtered, content)
    emu = emulated(EMU.bilateral_affine_apply, emulated(EMU.local_affine_fit, content, output, 1e-3), content, 15, 0.01)
    cpu = ops.smooth_local_affine(content, output)
    e_emu, e_cpu = rel(emu, want, scale), rel(cpu, want, scale)
    print(f"\nastronaut 20x30 float32 relative error (emulated CUDA | CPU): {e_emu:.2e} | {e_cpu:.2e}")
    assert e_emu <= APPLY_TOL[torch.float32] and e_cpu <= APPLY_TOL[torch.float32]


def test_emulated_empty_and_non_contiguous():
    for h, w in [(0, 4), (3, 0)]:
        c = torch.rand(3, h, w, dtype=torch.float64)
        assert emulated(EMU.local_affine_fit, c, c, 1e-3).shape == (12, h, w)
        assert emulated(EMU.bilateral_affine_apply, torch.rand(12, h, w, dtype=torch.float64), c, 2, 0.1).shape == (3, h, w)
    base, output = random_pair(10, 14, seed=6, dtype=torch.float64)
    content = base[:, ::2, 1::2]
    out = output[:, ::2, 1::2]
    coeffs = emulated(EMU.local_affine_fit, content, out, 1e-3)
    torch.testing.assert_close(coeffs, ops.local_affine_fit(content, out), rtol=0, atol=1e-12)
    torch.testing.assert_close(emulated(EMU.bilateral_affine_apply, coeffs, content, 2, 0.1),
                               ops.bilateral_affine_apply(coeffs, content, 2, 0.1), rtol=0, atol=1e-12)


def test_emulated_launch_shape_hook_rejects_bad_shapes():
    with pytest.raises(RuntimeError, match="block sizes must lie"):
        EMU.set_affine_launch_shape(0, 4, 8, 4, 8192)
    with pytest.raises(RuntimeError, match="shared_budget must lie"):
        EMU.set_affine_launch_shape(8, 4, 8, 4, 0)
