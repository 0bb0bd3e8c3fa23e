"""Matrix-free smoothing (dpst_ext.engine.smoothing) against sparse direct solves on the assembled system.

Measured (float64, 40x40 crops, tol 1e-10): solutions within ~1e-9 of spsolve; CG iteration counts equal
scipy's CG on the assembled matrix within 2; Jacobi does not reduce them for these systems (printed with -s).
"""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

from common import EPS, photo_crop
from dpst_ext import samples
from dpst_ext.engine import LaplacianStencil, MattingLaplacian
from dpst_ext.engine.smoothing import SmoothingOperator, batched_pcg, smooth, weight_from_beta, window_counts

BETA = 0.9999


def _image(name):
    return samples.random_image(24, 29, seed=3) if name == "noise" else photo_crop(name, 40)


def _assembled(image, normalize, beta=BETA):
    m = MattingLaplacian(image, EPS).to_scipy().astype(np.float64)
    n = m.shape[0]
    w = weight_from_beta(beta)
    if normalize == "interior":                      # D = 9 I (the full-resolution step's form)
        m = m / 9.0
    elif normalize:
        d = scipy.sparse.diags(window_counts(*image.shape[1:]).numpy().reshape(-1) ** -0.5)
        m = d @ m @ d
    return (scipy.sparse.identity(n) + w * m).tocsc()


def _y(image):
    # A "stylised" target: a colour transform of the content plus structured noise, 3 channels.
    g = torch.Generator().manual_seed(1)
    return (image.flip(0) ** 0.7 + 0.05 * torch.randn(image.shape, generator=g, dtype=torch.float64)).contiguous()


@pytest.mark.parametrize("normalize", [True, False, "interior"])
@pytest.mark.parametrize("name", ["noise", "pasted", "astronaut_black"])
def test_pcg_matches_sparse_direct_solve(name, normalize):
    image = _image(name)
    y = _y(image)
    a = _assembled(image, normalize)
    exact = np.stack([scipy.sparse.linalg.spsolve(a, y[c].numpy().reshape(-1)) for c in range(3)])
    for pre in ("none", "jacobi"):
        res = smooth(image, y, normalize=normalize, tol=1e-10, preconditioner=pre)
        assert res.converged and max(res.relative_residual) <= 1e-10
        sol = res.solution.numpy().reshape(3, -1)
        # ||x - x*|| / ||x*|| <= kappa(A) * tol, kappa <= 1 + 9 w * max(D^-1) ~ 1e5 here: 1e-5. Measured ~1e-9.
        err = np.linalg.norm(sol - exact) / np.linalg.norm(exact)
        assert err <= 1e-5, (pre, err)


def test_fastphotostyle_formulation():
    """Ours (I + w D^-1/2 M D^-1/2) r = y with D = window counts equals FastPhotoStyle's
    (1 - beta) (I - beta D^-1/2 W D^-1/2)^-1 y, W the matting affinity with self-loops, D = W 1."""
    image = photo_crop("pasted", 40)
    y = _y(image)
    m = MattingLaplacian(image, EPS).to_scipy().astype(np.float64)
    n = m.shape[0]
    counts = window_counts(*image.shape[1:]).numpy().reshape(-1)
    affinity = scipy.sparse.diags(counts) - m            # W_ij = sum_k (1 + z_i.z_j) / 9
    degree = np.asarray(affinity.sum(axis=0)).ravel()
    np.testing.assert_allclose(degree, counts, rtol=0, atol=1e-9)   # D = W 1 = window counts
    dh = scipy.sparse.diags(degree ** -0.5)
    fps = (scipy.sparse.identity(n) - BETA * dh @ affinity @ dh).tocsc()
    ref = np.stack([(1 - BETA) * scipy.sparse.linalg.spsolve(fps, y[c].numpy().reshape(-1)) for c in range(3)])
    ours = smooth(image, y, tol=1e-10).solution.numpy().reshape(3, -1)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= 1e-6


@pytest.mark.parametrize("normalize", [True, False])
def test_iteration_counts_match_scipy_cg(normalize):
    """Unpreconditioned batched CG does what scipy's CG does on the assembled matrix, channel by channel
    (our count is the slowest channel's). Counts are printed for the record (pytest -s)."""
    image = photo_crop("astronaut_black", 40)
    y = _y(image)
    a = _assembled(image, normalize)
    counts = []
    for c in range(3):
        it = [0]
        scipy.sparse.linalg.cg(a, y[c].numpy().reshape(-1), rtol=1e-8, atol=0.0, maxiter=20000,
                               callback=lambda _: it.__setitem__(0, it[0] + 1))
        counts.append(it[0])
    op = SmoothingOperator(MattingLaplacian(image, EPS), weight_from_beta(BETA), normalize)
    _, ours, rel, ok = batched_pcg(op, y.clone(), tol=1e-8)
    _, jac, _, ok_j = batched_pcg(op, y.clone(), inv_diag=1.0 / op.diagonal, tol=1e-8)
    print(f"\nnormalize={normalize}: CG iterations ours {ours}, scipy {counts}, ours+Jacobi {jac}")
    assert ok and ok_j
    assert abs(ours - max(counts)) <= 2


def test_defaults_are_no_preconditioner_and_vectors_in_the_laplacians_dtype():
    """smooth()'s defaults: no preconditioner (Jacobi took more iterations on every example pair,
    benchmarks/smoothing_preconditioners.py) and, where the fused passes run, CG vectors and solution in the
    Laplacian's dtype (float32 vectors take float64's iterations to the same residual)."""
    image = photo_crop("coffee_saturated", 40)
    y = _y(image)
    for dtype in (torch.float32, torch.float64):
        default = smooth(image.to(dtype), y, tol=1e-6)
        explicit = smooth(image.to(dtype), y, tol=1e-6, preconditioner="none", vector_dtype=dtype)
        assert default.converged and default.solution.dtype == dtype
        assert default.iterations == explicit.iterations and torch.equal(default.solution, explicit.solution)
    stencil = LaplacianStencil(image.double(), EPS, dtype=torch.float32)   # a given stencil's dtype decides
    assert smooth(image.double(), y, tol=1e-6, laplacian=stencil).solution.dtype == torch.float32


def test_float32_matvec_reaches_tolerance():
    """float32 matvecs with float64 CG vectors reach a 1e-6 relative residual, and the solution agrees
    with the float64 solve to within the float32 operator's own accuracy."""
    image = photo_crop("coffee_saturated", 40)
    y = _y(image)
    r64 = smooth(image, y, tol=1e-6)
    r32 = smooth(image, y, tol=1e-6, laplacian_dtype=torch.float32, vector_dtype=torch.float64)
    assert r32.converged and r32.solution.dtype == torch.float64
    # True residual of the float32-matvec solution under the float64 operator.
    op64 = SmoothingOperator(MattingLaplacian(image, EPS), weight_from_beta(BETA), True)
    true_rel = (torch.linalg.vector_norm(y - op64(r32.solution)) / torch.linalg.vector_norm(y)).item()
    err = (torch.linalg.vector_norm(r32.solution - r64.solution) / torch.linalg.vector_norm(r64.solution)).item()
    print(f"\nfloat32 matvec: iterations {r32.iterations} (float64 {r64.iterations}), true residual {true_rel:.1e}, "
          f"solution difference {err:.1e}")
    assert true_rel <= 1e-2 and err <= 1e-4


def test_cascade_and_warm_start_give_the_same_solution():
    image = photo_crop("hubble_dark", 40)
    y = _y(image)
    ref = smooth(image, y, tol=1e-8, x0=torch.zeros_like(y))
    casc = smooth(image, y, tol=1e-8, cascade_levels=1)
    assert casc.converged and [lv["step"] for lv in casc.levels] == ["cg", "upsample", "cg"]
    err = (torch.linalg.vector_norm(casc.solution - ref.solution) / torch.linalg.vector_norm(ref.solution)).item()
    assert err <= 1e-5


def test_constants_and_the_border_effect_of_the_degree_normalisation():
    """M 1 = 0, so the plain and "interior" forms leave a flat image unchanged. FastPhotoStyle's D = diag(n)
    does not: its null vector is D^1/2 1, and the solution of a flat image is ~ sqrt(n_i / 9) times the
    interior value on the 2-pixel border ring (n_i < 9), corners (n = 1) at ~1/3."""
    image = photo_crop("coffee_saturated", 40)
    y = torch.full((1, 40, 40), 0.5, dtype=torch.float64)
    for form in (False, "interior"):
        res = smooth(image, y, normalize=form, tol=1e-8)
        assert res.iterations <= 1 and (res.solution - y).abs().max().item() <= 1e-12
    r = smooth(image, y, normalize=True, tol=1e-8).solution[0]
    # w large: r ~ the projection of y onto u = D^1/2 1, i.e. 0.5 sqrt(n_i) sum_j sqrt(n_j) / sum_j n_j.
    n = window_counts(40, 40)
    projected = 0.5 * n.sqrt() * n.sqrt().sum() / n.sum()
    assert (r - projected).abs().max().item() <= 0.05   # measured 0.037 (colour-linear null directions)
    assert abs(r[0, 0].item() / r[20, 20].item() - 1 / 3) <= 0.05


def test_progress_callback_and_arguments():
    image = samples.random_image(20, 20, seed=1)
    seen = []
    smooth(image, image.clone(), tol=1e-4, callback=lambda lv, it, rel: seen.append((lv, it, len(rel))))
    assert seen and seen[0][1] == 1 and all(s[0] == 0 and s[2] == 3 for s in seen)
    with pytest.raises(ValueError, match="beta"):
        smooth(image, image, beta=1.0)
    with pytest.raises(ValueError, match="y must have shape"):
        smooth(image, image[:, :10])
    with pytest.raises(ValueError, match="preconditioner"):
        smooth(image, image, preconditioner="ilu")


def test_window_counts():
    c = window_counts(5, 4)
    assert c[2, 1].item() == 6 and c[0, 0].item() == 1 and c.sum().item() == 9 * 3 * 2
    assert window_counts(2, 7).abs().sum().item() == 0
