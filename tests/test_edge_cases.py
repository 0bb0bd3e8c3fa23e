"""Edge cases with defined behaviour: tiny and empty images, constant images, wrong channel counts,
NaN/Inf, wrong dtype/device/shape, mismatched v, bad eps. Each is a correct result or an error whose
message names the argument — never a crash or a silent wrong answer."""
import numpy as np
import pytest
import torch

from common import EPS, TOL, max_rel, randn
from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian, ops
from dpst_ext.engine.reference import diagonal_reference, matting_laplacian_dense, matvec_reference


# ---- images with no 3x3 window: M = 0, every output still well-formed ----------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("h,w", [(1, 1), (2, 2), (2, 7), (7, 2), (1, 9), (0, 5), (5, 0)])
def test_images_smaller_than_3x3_have_zero_laplacian(h, w, dtype):
    lap = MattingLaplacian(samples.random_image(h, w, dtype=dtype), EPS)
    assert lap.stats.shape == (9, max(h - 2, 0), max(w - 2, 0))
    v = randn(2, h, w, seed=1, dtype=dtype)
    assert torch.equal(lap.matvec(v), torch.zeros_like(v))
    assert torch.equal(lap.diagonal(), torch.zeros(h, w, dtype=dtype))
    assert lap.quad(v).item() == 0.0
    n, width = h * w, min(h, 5) * min(w, 5)
    crow, col, val = lap.csr()
    assert crow.shape == (n + 1,) and col.shape == (n * width,) and val.shape == (n * width,)
    assert crow.dtype == col.dtype == torch.int32 and val.dtype == dtype
    assert torch.equal(crow, torch.arange(n + 1, dtype=torch.int32) * width)
    assert torch.equal(val, torch.zeros_like(val))
    assert lap.to_scipy().shape == (n, n) and lap.to_scipy().count_nonzero() == 0
    assert lap.to_torch_sparse().shape == (n, n)


@pytest.mark.parametrize("h,w", [(3, 3), (3, 8), (4, 4), (5, 6), (6, 5), (9, 7)])
def test_csr_layout_is_fixed_width_sorted_and_in_range(h, w):
    crow, col, val = MattingLaplacian(samples.random_image(h, w), EPS).csr()
    n, width = h * w, min(h, 5) * min(w, 5)
    assert torch.equal(crow, torch.arange(n + 1, dtype=torch.int32) * width)
    cols = col.reshape(n, width)
    assert bool((cols[:, 1:] > cols[:, :-1]).all())            # strictly increasing: sorted, no duplicates
    assert int(cols.min()) >= 0 and int(cols.max()) < n
    # every structural non-zero of the reference lies inside the row's fixed window of columns
    dense = np.zeros((n, n))
    dense[np.repeat(np.arange(n), width), cols.reshape(-1).numpy()] = 1
    ref = matting_laplacian_dense(samples.random_image(h, w), EPS, np.float64)
    assert np.all(dense[ref != 0] == 1)


# ---- constant images: Sigma = 0, blocks I - 11^T/9 ----------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
def test_constant_image(value, dtype):
    h, w = 8, 11
    image = torch.full((3, h, w), value, dtype=dtype)
    lap = MattingLaplacian(image, EPS)
    v = randn(3, h, w, seed=2, dtype=dtype)
    # Every block is I - 11^T/9: (M v)_i = n_i v_i - sum_{k containing i} mean_k(v).
    ref = matvec_reference(image.double(), v.double(), EPS, np.float64)
    assert max_rel(lap.matvec(v), ref) <= TOL[(dtype, "noise")]
    assert max_rel(lap.diagonal(), diagonal_reference(image.double(), EPS)) <= TOL[(dtype, "noise")]
    n_i = torch.tensor([[min(y, h - 3) - max(y - 2, 0) + 1 for _ in range(w)] for y in range(h)]) * \
        torch.tensor([min(x, w - 3) - max(x - 2, 0) + 1 for x in range(w)])
    assert max_rel(lap.diagonal(), n_i.double() * 8 / 9) <= TOL[(dtype, "noise")]


# ---- wrong channel count, dtype, shape, device ---------------------------------------------------

@pytest.mark.parametrize("channels", [1, 2, 4])
def test_image_with_wrong_channel_count_is_rejected(channels):
    with pytest.raises(RuntimeError, match=r"image must have shape \(3, H, W\).*got \[" + str(channels)):
        MattingLaplacian(torch.rand(channels, 6, 6), EPS)
    with pytest.raises(ValueError, match=r"image as a numpy array must have shape \(H, W, 3\)"):
        MattingLaplacian(np.random.rand(6, 6, channels), EPS)


@pytest.mark.parametrize("shape", [(6, 6), (1, 3, 6, 6), (3,)])
def test_image_with_wrong_rank_is_rejected(shape):
    with pytest.raises(RuntimeError, match=r"image must have shape \(3, H, W\)"):
        ops.window_stats(torch.rand(*shape), EPS)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32, torch.uint8])
def test_image_with_wrong_dtype_is_rejected(dtype):
    image = torch.zeros(3, 6, 6, dtype=dtype)
    with pytest.raises(RuntimeError, match="image must be float32 or float64"):
        ops.window_stats(image, EPS)
    with pytest.raises(TypeError, match="image must be float32 or float64"):
        MattingLaplacian(image, EPS)


def test_image_of_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="image must be a torch.Tensor"):
        MattingLaplacian([[0.0]], EPS)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_image_is_rejected(bad):
    image = samples.random_image(6, 7)
    image[1, 3, 4] = bad
    with pytest.raises(RuntimeError, match="image must contain only finite values"):
        MattingLaplacian(image, EPS)
    with pytest.raises(RuntimeError, match="image must contain only finite values"):
        ops.window_stats(image.float(), EPS)


@pytest.mark.parametrize("eps", [0.0, -1e-7, float("nan"), float("inf")])
def test_bad_eps_is_rejected(eps):
    with pytest.raises(RuntimeError, match="eps must be a positive finite number"):
        MattingLaplacian(samples.random_image(5, 5), eps)


def _op_calls(image, stats, v):
    return {
        "matvec": lambda: ops.laplacian_matvec(image, stats, v),
        "diagonal": lambda: ops.laplacian_diagonal(image, stats),
        "csr": lambda: ops.laplacian_csr(image, stats),
        "loss": lambda: ops.photoreal_loss(image, stats, v),
    }


@pytest.mark.parametrize("op", ["matvec", "diagonal", "csr", "loss"])
def test_stats_of_wrong_shape_or_dtype_are_rejected(op):
    image = samples.random_image(6, 7)
    stats = ops.window_stats(image, EPS)
    v = randn(1, 6, 7)
    with pytest.raises(RuntimeError, match=r"stats must have shape \(9, H-2, W-2\) = \(9, 4, 5\)"):
        _op_calls(image, stats[:, :, :-1], v)[op]()
    with pytest.raises(RuntimeError, match="stats must have the image's dtype"):
        _op_calls(image, stats.float(), v)[op]()
    other = ops.window_stats(samples.random_image(7, 6), EPS)
    with pytest.raises(RuntimeError, match="stats must have shape"):
        _op_calls(image, other, v)[op]()


@pytest.mark.parametrize("op", ["matvec", "loss"])
def test_v_of_wrong_size_or_dtype_is_rejected(op):
    image = samples.random_image(6, 7)
    stats = ops.window_stats(image, EPS)
    for bad in (randn(1, 7, 6), randn(2, 6, 8), randn(6, 7), randn(1, 1, 6, 7)):
        with pytest.raises(RuntimeError, match=r"v must have shape \(C, H, W\) with the image's H and W \(6, 7\)"):
            _op_calls(image, stats, bad)[op]()
    with pytest.raises(RuntimeError, match="v must have the image's dtype"):
        _op_calls(image, stats, randn(1, 6, 7, dtype=torch.float32))[op]()


def test_front_end_rejects_v_of_wrong_size_or_type():
    lap = MattingLaplacian(samples.random_image(6, 7), EPS)
    for bad in (torch.zeros(7, 6), torch.zeros(41), torch.zeros(2, 6, 6), torch.zeros(1, 1, 6, 7)):
        with pytest.raises(ValueError, match=r"v must have shape \(H, W\), \(C, H, W\) or \(H\*W,\)"):
            lap.matvec(bad)
        with pytest.raises(ValueError, match=r"v must have shape"):
            lap.quad(bad)
    with pytest.raises(TypeError, match="v must be a torch.Tensor or numpy array"):
        lap.matvec([0.0] * 42)


# Tensors on another device: this machine has no GPU, so "meta" plays the other device. The fake
# (meta) kernels in dpst_ext/engine/ops.py run for any call with a meta argument, so they must repeat the
# C++ device checks; otherwise a CPU call with meta stats returns an uninitialised CPU tensor.
@pytest.mark.parametrize("op", ["matvec", "diagonal", "csr", "loss"])
def test_stats_on_another_device_are_rejected(op):
    image = samples.random_image(6, 7)
    stats = ops.window_stats(image, EPS).to("meta")
    with pytest.raises(RuntimeError, match="stats must be on the image's device"):
        _op_calls(image, stats, randn(1, 6, 7))[op]()


@pytest.mark.parametrize("op", ["matvec", "loss"])
def test_v_on_another_device_is_rejected(op):
    image = samples.random_image(6, 7)
    stats = ops.window_stats(image, EPS)
    with pytest.raises(RuntimeError, match="v must be on the image's device"):
        _op_calls(image, stats, randn(1, 6, 7).to("meta"))[op]()


def test_empty_channel_count_is_fine():
    lap = MattingLaplacian(samples.random_image(5, 6), EPS)
    assert lap.matvec(torch.zeros(0, 5, 6, dtype=torch.float64)).shape == (0, 5, 6)
    assert lap.quad(torch.zeros(0, 5, 6, dtype=torch.float64)).item() == 0.0


def test_csr_index_dtype_switches_to_int64_for_large_images_in_the_fake_kernel():
    """nnz >= 2^31 needs int64 indices (a 16 MP image has 400 M non-zeros; 2^31 needs >= 86 M pixels,
    too large to build here, so only the fake kernel's shape rule is checked; the C++ rule is the same
    expression in csrc/cpu/laplacian_cpu.cpp)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        for h, w, index_dtype in [(9000, 9000, torch.int32), (9300, 9300, torch.int64)]:
            image = torch.empty(3, h, w)
            stats = torch.empty(9, h - 2, w - 2)
            crow, col, val = ops.laplacian_csr(image, stats)
            assert crow.dtype == col.dtype == index_dtype
            assert crow.shape == (h * w + 1,) and col.shape == val.shape == (h * w * 25,)
