"""The matrix-free operator behaves as the explicit matrix inside a solver (pymatting tests/test_lkm.py):
a matting-style system (M + lambda D) x = lambda D t solved by conjugate gradients with a Jacobi
preconditioner built from laplacian_diagonal, using (a) the matrix-free op, (b) the op's CSR, (c) the
reference matrix (longdouble, rounded to float64). Solutions agree and iteration counts are within 2
(measured: identical counts, solutions within 4e-10)."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

from common import EPS, photo_crop
from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian
from dpst_ext.engine.reference import matting_laplacian_dense

LAMBDA = 100.0


def _cg(apply, b, precond_diag):
    n = b.size
    op = scipy.sparse.linalg.LinearOperator((n, n), matvec=apply, dtype=np.float64)
    pre = scipy.sparse.linalg.LinearOperator((n, n), matvec=lambda r: r / precond_diag, dtype=np.float64)
    iterations = [0]

    def count(_):
        iterations[0] += 1

    x, info = scipy.sparse.linalg.cg(op, b, rtol=1e-10, atol=0.0, maxiter=5000, M=pre, callback=count)
    assert info == 0
    return x, iterations[0]


@pytest.mark.parametrize("name", ["noise", "pasted", "astronaut_black"])
def test_cg_matrix_free_equals_sparse(name):
    image = samples.random_image(32, 37, seed=9) if name == "noise" else photo_crop(name, 40)[:, :32, :37]
    h, w = image.shape[1:]
    lap = MattingLaplacian(image, EPS)
    rng = np.random.default_rng(0)
    known = (rng.random(h * w) < 0.2).astype(np.float64)       # scribbles
    target = image[0].numpy().reshape(-1)                      # a "trimap" taken from the red channel
    b = LAMBDA * known * target
    diag = lap.diagonal().numpy().reshape(-1) + LAMBDA * known

    def matrix_free(x):
        return lap.matvec(torch.from_numpy(np.ascontiguousarray(x).reshape(-1))).numpy() + LAMBDA * known * x

    csr = lap.to_scipy() + scipy.sparse.diags(LAMBDA * known)
    exact = scipy.sparse.csr_matrix(matting_laplacian_dense(image, EPS, np.longdouble).astype(np.float64))
    ref = exact + scipy.sparse.diags(LAMBDA * known)

    x_free, it_free = _cg(matrix_free, b, diag)
    x_csr, it_csr = _cg(lambda x: csr @ x, b, diag)
    x_ref, it_ref = _cg(lambda x: ref @ x, b, diag)

    x = rng.standard_normal(h * w)
    assert np.abs(matrix_free(x) - csr @ x).max() <= 1e-12 * np.abs(csr @ x).max()
    # Measured: solutions agree to <= 4e-10 relative. The worst-case perturbation bound, kappa(M + lambda D)
    # (<= 2e4 here) times (CG rtol 1e-10 + measured matrix difference 5e-11), is 3e-6; 1e-6 sits between.
    for other in (x_csr, x_ref):
        assert np.linalg.norm(x_free - other) <= 1e-6 * np.linalg.norm(other)
    assert abs(it_free - it_csr) <= 2 and abs(it_free - it_ref) <= 2
