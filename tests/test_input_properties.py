"""Property-based tests (hypothesis) of what reads the user's data and of the ops' argument checks:
random shapes, dtypes, strides and values either give a well-formed result or raise a clear Python
exception (ValueError, TypeError, or the ops' RuntimeError) — never a crash of the process, a NaN or a
value outside 0..1. A crash in a compiled kernel would take this test process down with it."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpst_ext.engine import ops
from dpst_ext.image_io import load_image
from dpst_ext.masks import parse_mask

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NP_DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]
TORCH_DTYPES = [torch.uint8, torch.int16, torch.int64, torch.float16, torch.bfloat16, torch.float32,
                torch.float64, torch.bool, torch.complex64]
SPECIAL = [0.0, 1.0, -0.0, 0.5, 255.0, 65535.0, -1.0, 1.0000001, float("nan"), float("inf"), -float("inf")]


@st.composite
def arrays(draw, max_side=6):
    """A numpy array of random rank (0-4), sizes (0-max_side), dtype, layout and values."""
    shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=0, max_size=4)))
    dtype = draw(st.sampled_from(NP_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 255.0, 65535.0, 1e30]))
    a = rng.uniform(-0.1 * scale, scale, size=shape)
    if a.size and draw(st.booleans()):
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(SPECIAL))
    with np.errstate(invalid="ignore", over="ignore"):
        a = a.astype(dtype)
    layout = draw(st.sampled_from(["c", "transposed", "strided"]))
    if layout == "transposed" and a.ndim >= 2:
        a = np.swapaxes(a, 0, 1)
    elif layout == "strided" and a.ndim >= 1:
        a = a[::2]
    return a


def _check_image(t, shape_hw=None):
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.dim() == 3 and t.shape[0] == 3
    assert t.shape[1] >= 1 and t.shape[2] >= 1
    assert bool(torch.isfinite(t).all()) and float(t.min()) >= 0 and float(t.max()) <= 1


@SETTINGS
@given(arrays())
def test_load_image_on_any_array(a):
    try:
        t = load_image(a, "content")
    except (ValueError, TypeError) as e:
        assert str(e).startswith(("content", "image")), e
        return
    _check_image(t)


@SETTINGS
@given(arrays(), st.booleans())
def test_load_image_on_any_tensor(a, to_torch_dtype):
    try:
        t = torch.from_numpy(np.ascontiguousarray(a))
    except TypeError:
        return                                            # a numpy dtype torch has no tensor for
    if to_torch_dtype and t.numel():
        t = t.to(TORCH_DTYPES[t.numel() % len(TORCH_DTYPES)])
    try:
        out = load_image(t, "style")
    except (ValueError, TypeError) as e:
        assert str(e).startswith("style"), e
        return
    _check_image(out)


@SETTINGS
@given(arrays(max_side=8), st.tuples(st.integers(1, 9), st.integers(1, 9)), st.sampled_from(["nearest", "reference"]))
def test_parse_mask_on_any_array(a, size, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            labels = parse_mask(a, size=size, mode=mode, name="content mask")
        except (ValueError, TypeError) as e:
            assert str(e).startswith(("content mask", "image")), e
            return
    assert labels.shape == size and labels.dtype == torch.int64
    assert int(labels.min()) >= -1 and int(labels.max()) <= 8


@st.composite
def op_arguments(draw):
    """An image, its statistics and a vector, each perhaps of a wrong shape, dtype or layout."""
    def tensor(shape):
        dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float32, torch.float64, torch.float16,
                                      torch.int64, torch.complex64]))
        t = torch.rand(shape, dtype=torch.float64).to(dtype)
        if draw(st.booleans()) and t.dim() >= 2 and t.shape[-1] > 1:
            t = t[..., ::2]                               # non-contiguous
        return t

    h, w = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    wrong = st.integers(0, 4)
    image = tensor((draw(st.sampled_from([3, 3, 3, 1, 4])), h, w))
    stats_shape = (draw(st.sampled_from([9, 9, 9, 8])), max(h - 2, 0) + draw(wrong) // 4, max(w - 2, 0))
    v = tensor((draw(st.integers(0, 3)), h + draw(wrong) // 4, w))
    eps = draw(st.sampled_from([1e-7, 1e-7, 0.0, -1.0, float("nan"), float("inf")]))
    return image, tensor(stats_shape), v, eps


@SETTINGS
@given(op_arguments())
def test_ops_check_their_arguments(args):
    image, stats, v, eps = args
    errors = (RuntimeError, ValueError, TypeError)
    try:
        real = ops.window_stats(image, eps)
    except errors:
        real = None
    else:
        assert real.shape == (9, max(image.shape[1] - 2, 0), max(image.shape[2] - 2, 0))
    for s in ([stats] if real is None else [stats, real]):
        for op in (lambda: ops.laplacian_matvec(image, s, v), lambda: ops.laplacian_diagonal(image, s),
                   lambda: ops.photoreal_loss(image, s, v), lambda: ops.laplacian_csr(image, s)):
            try:
                op()
            except errors:
                pass


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
