"""Every fast op equals the slow reference (dpst_ext/engine/reference.py): noise images and real-photo crops
with near-singular windows, float64 and float32, odd sizes and sizes below 5 in a dimension.

Each comparison runs on the values the op actually saw (image and v cast to the op's dtype, then cast up
exactly), so it measures the op's arithmetic, not the rounding of its inputs. Photos are compared with the
numpy longdouble reference (within 1e-13 of exact rational arithmetic on the hardest windows found, see
test_reference.py), noise images with the float64 reference.
"""
import numpy as np
import pytest
import torch

from common import EPS, PHOTO_CROPS, TOL, max_rel, photo_crop, randn, stencil_dense
from dpst_ext import samples
from dpst_ext.engine import LaplacianStencil, MattingLaplacian
from dpst_ext.engine.reference import (diagonal_reference, loss_reference, matting_laplacian_dense,
                                matting_laplacian_reference, matvec_reference, normalized_matvec_reference)

DTYPES = [torch.float64, torch.float32]
NOISE_SIZES = [(3, 3), (3, 4), (4, 3), (4, 9), (5, 5), (7, 11), (16, 13), (20, 20)]


def _cases():
    for h, w in NOISE_SIZES:
        yield pytest.param("noise", (h, w), id=f"noise-{h}x{w}")
    for name in PHOTO_CROPS:
        yield pytest.param(name, (24, 24), id=f"{name}-24x24")
    yield pytest.param("astronaut_black", (17, 29), id="astronaut_black-17x29")
    yield pytest.param("pasted", (40, 40), id="pasted-40x40")


def _image(name, size):
    h, w = size
    if name == "noise":
        return samples.random_image(h, w, seed=h * 100 + w)
    return photo_crop(name, max(size))[:, :h, :w].contiguous()


def _ref_dtype(name):
    return np.float64 if name == "noise" else np.longdouble


def _tol(name, dtype):
    return TOL[(dtype, "noise" if name == "noise" else "photo")]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,size", list(_cases()))
def test_matvec_matches_reference(name, size, dtype):
    image = _image(name, size).to(dtype)
    v = randn(3, *size, seed=1, dtype=dtype)
    fast = MattingLaplacian(image, EPS).matvec(v)
    assert fast.dtype == dtype and fast.shape == v.shape
    ref = matvec_reference(image.double(), v.double(), EPS, _ref_dtype(name))
    assert max_rel(fast, ref) <= _tol(name, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,size", list(_cases()))
def test_csr_matches_reference(name, size, dtype):
    image = _image(name, size).to(dtype)
    lap = MattingLaplacian(image, EPS)
    m = lap.to_scipy()
    assert m.dtype == (np.float64 if dtype == torch.float64 else np.float32)
    dense_ref = matting_laplacian_dense(image.double(), EPS, _ref_dtype(name))
    assert max_rel(m.toarray(), dense_ref) <= _tol(name, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,size", list(_cases()))
def test_diagonal_matches_reference(name, size, dtype):
    image = _image(name, size).to(dtype)
    diag = MattingLaplacian(image, EPS).diagonal()
    assert diag.shape == size and diag.dtype == dtype
    assert max_rel(diag, diagonal_reference(image.double(), EPS, _ref_dtype(name))) <= _tol(name, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,size", list(_cases()))
def test_loss_matches_reference(name, size, dtype):
    image = _image(name, size).to(dtype)
    v = randn(3, *size, seed=2, dtype=dtype)
    loss = MattingLaplacian(image, EPS).quad(v)
    assert loss.dim() == 0 and loss.dtype == dtype
    ref = loss_reference(image.double(), v.double(), EPS, _ref_dtype(name))
    if min(size) < 3:
        assert float(loss) == 0.0
    else:
        assert abs(float(loss) - float(ref)) <= _tol(name, dtype) * abs(float(ref))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,size", list(_cases()))
def test_stencil_matches_reference(name, size, dtype):
    image = _image(name, size).to(dtype)
    stencil = MattingLaplacian(image, EPS).stencil()
    assert stencil.weights.shape == (12, *size) and stencil.dtype == dtype
    dense_ref = matting_laplacian_dense(image.double(), EPS, _ref_dtype(name))
    assert max_rel(stencil_dense(stencil.weights), dense_ref) <= _tol(name, dtype)
    v = randn(3, *size, seed=1, dtype=dtype)
    fast = stencil @ v
    assert fast.dtype == dtype and fast.shape == v.shape
    assert max_rel(fast, matvec_reference(image.double(), v.double(), EPS, _ref_dtype(name))) <= _tol(name, dtype)
    diag_ref = diagonal_reference(image.double(), EPS, _ref_dtype(name))
    assert max_rel(stencil.diagonal(), diag_ref) <= _tol(name, dtype)
    absm = np.abs(dense_ref.astype(np.float64))
    ones = torch.ones(size, dtype=dtype)
    assert max_rel(stencil.abs_matvec(ones), (absm @ np.ones(absm.shape[0])).reshape(size)) <= _tol(name, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,size", list(_cases()) + [pytest.param("noise", (1, 6), id="noise-1x6"),
                                                       pytest.param("noise", (9, 2), id="noise-9x2")])
def test_normalized_stencil_product_matches_reference(name, size, dtype):
    """The normalised product D^-1/2 M D^-1/2 v (FastPhotoStyle's system; D = diag(windows containing each
    pixel)), in the stencil's pass: against the reference's scaled product, as M v is, on every size (the
    border ring, where the degrees differ, is most of a small image) and on windowless images (M = 0)."""
    image = _image(name, size).to(dtype)
    stencil = LaplacianStencil(image, EPS)
    v = randn(3, *size, seed=5, dtype=dtype)
    got = stencil.matvec(v, normalized=True)
    assert got.dtype == dtype and got.shape == v.shape
    want = normalized_matvec_reference(image.double(), v.double(), EPS, _ref_dtype(name))
    if min(size) < 3:
        assert torch.equal(got, torch.zeros_like(v))
        return
    assert max_rel(got, want) <= _tol(name, dtype)
    out = torch.empty_like(v)
    dots = stencil.matvec_dots(v, out, normalized=True)
    assert torch.equal(out, got)
    v64, m64 = v.double(), got.double()
    torch.testing.assert_close(dots, torch.stack([(v64 * v64).sum((1, 2)), (v64 * m64).sum((1, 2)),
                                                  (m64 * m64).sum((1, 2))]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", PHOTO_CROPS)
def test_float32_stencil_product_stays_within_a_few_roundings(name):
    """The stencil is computed in double from the image and rounded once, so its float32 product errs by a few
    roundings of the terms on every hard crop, however near-singular the windows (measured 1.5e-7 to 2.6e-7 of
    max|M v| on these 32x32 crops), where the matrix-free product, which works from float32 window
    statistics, errs by 1.5e-7 to 4.6e-6."""
    image = _image(name, (32, 32)).float()
    v = randn(3, 32, 32, seed=4, dtype=torch.float32)
    ref = matvec_reference(image.double(), v.double(), EPS, np.longdouble)
    lap = MattingLaplacian(image, EPS)
    stencil_err, free_err = max_rel(lap.stencil() @ v, ref), max_rel(lap.matvec(v), ref)
    assert stencil_err <= 3e-7 and stencil_err <= max(free_err, 3e-7), (stencil_err, free_err)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["noise", "astronaut_black", "pasted"])
def test_matvec_equals_csr_product(name, dtype):
    """The matrix-free product and the explicit CSR of the same op agree (pymatting test_lkm style)."""
    size = (23, 31)
    image = _image(name, size).to(dtype)
    lap = MattingLaplacian(image, EPS)
    v = randn(2, *size, seed=3, dtype=dtype)
    csr = lap.to_scipy()
    via_csr = np.stack([csr @ v[c].reshape(-1).numpy() for c in range(2)]).reshape(2, *size)
    via_torch_sparse = torch.stack([lap.to_torch_sparse() @ v[c].reshape(-1) for c in range(2)]).reshape(2, *size)
    fast = lap.matvec(v)
    assert max_rel(fast, via_csr) <= _tol(name, dtype)
    assert max_rel(via_torch_sparse, via_csr) <= _tol(name, dtype)


def test_dense_longdouble_reference_matches_float64_sparse():
    """The two references agree where float64 is enough (noise): guards the oracle itself."""
    image = samples.random_image(9, 12, seed=5)
    a = matting_laplacian_reference(image, EPS).toarray()
    b = matting_laplacian_dense(image, EPS, np.longdouble)
    assert max_rel(a, b) <= 1e-13


def test_fast_float64_beats_the_textbook_float64_formula_on_a_hard_crop():
    """Why photos are compared with longdouble: the textbook float64 evaluation (explicit inverse) is
    less accurate than the engine's whitened float64 path in near-singular windows (measured 2.6e-11
    vs 5.9e-12 relative here), so it cannot serve as the photo oracle at float64 tolerance."""
    image = photo_crop("pasted", 24)
    v = randn(1, 24, 24, seed=4)
    exact = matvec_reference(image, v, EPS, np.longdouble)
    ref64 = matvec_reference(image, v, EPS, np.float64)
    fast64 = MattingLaplacian(image, EPS).matvec(v)
    assert max_rel(fast64, exact) < max_rel(ref64, exact)
