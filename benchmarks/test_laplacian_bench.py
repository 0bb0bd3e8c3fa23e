"""Ours vs the anchors, side by side in one session, on real photos at 0.26, 1 and 4 MP.

    python benchmarks/report.py        # runs this suite, writes benchmarks/RESULTS.md and scaling.png
    pytest benchmarks --benchmark-only # the suite alone

Groups (one per op and size) put each of our ops next to its anchor:
  csr-<mp>       ours laplacian_csr (float32 values, int32 indices) vs pymatting cf_laplacian
  matvec1-<mp>   ours laplacian_matvec, 1 channel, matrix-free    vs scipy CSR SpMV on pymatting's matrix
  matvec3-<mp>   ours laplacian_matvec, 3 channels                 vs scipy SpMV with 3 columns
                 (both groups also: ours stencil_matvec, M stored as its 5x5 stencil, 12 values per pixel)
  stencil-<mp>   ours laplacian_stencil (the stencil's build, once per image)
  stats-<mp>, diagonal-<mp>, loss-<mp>  ours only
  bandwidth      a 256 MB torch clone and numpy copy, 2 threads: the machine's copy bandwidth
Every benchmark's extra_info carries megapixels, pixels and the bytes the op must move.
"""
import numpy as np
import pytest
import torch

from conftest import MEGAPIXELS, THREADS, inputs
from dpst_ext.engine import ops

# Rounds per measurement: enough for a stable median on a shared machine, few for the slow builds.
FAST_ROUNDS, SLOW_ROUNDS = 21, 7


def _run(benchmark, fn, group, x, rounds, **info):
    benchmark.group = group
    benchmark.extra_info.update(megapixels=x.mp, pixels=x.pixels, threads=THREADS, **info)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_ours_window_stats(benchmark, mp):
    x = inputs(mp)
    _run(benchmark, lambda: ops.window_stats(x.image, 1e-7), f"stats-{mp}", x, FAST_ROUNDS,
         impl="ours", op="window_stats")


@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_ours_matvec(benchmark, mp, channels):
    x = inputs(mp)
    v = x.v1 if channels == 1 else x.v3
    # bytes a matrix-free L.v must move, float32: image 12 + stats 36 + v 4C + out 4C per pixel
    _run(benchmark, lambda: ops.laplacian_matvec(x.image, x.stats, v), f"matvec{channels}-{mp}", x,
         FAST_ROUNDS, impl="ours", op=f"matvec{channels}", bytes=x.pixels * (12 + 36 + 8 * channels))


@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_ours_stencil_matvec(benchmark, mp, channels):
    x = inputs(mp)
    v = x.v1 if channels == 1 else x.v3
    # bytes: stencil 48 + v 4C + out 4C per pixel
    _run(benchmark, lambda: ops.stencil_matvec(x.stencil, v), f"matvec{channels}-{mp}", x, FAST_ROUNDS,
         impl="stencil", op=f"matvec{channels}", bytes=x.pixels * (48 + 8 * channels))


@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_ours_stencil_build(benchmark, mp):
    x = inputs(mp)
    _run(benchmark, lambda: ops.laplacian_stencil(x.image, 1e-7), f"stencil-{mp}", x, FAST_ROUNDS,
         impl="ours", op="stencil")


@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_anchor_scipy_spmv(benchmark, mp, channels):
    x = inputs(mp)
    L, v = x.pymatting_matrix, x.v_numpy(channels)
    _run(benchmark, lambda: L @ v, f"matvec{channels}-{mp}", x, FAST_ROUNDS, impl="scipy",
         op=f"matvec{channels}")


@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_ours_csr(benchmark, mp):
    x = inputs(mp)
    _run(benchmark, lambda: ops.laplacian_csr(x.image, x.stats), f"csr-{mp}", x, SLOW_ROUNDS,
         impl="ours", op="csr")


@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_anchor_pymatting_csr(benchmark, mp):
    from pymatting.laplacian.cf_laplacian import cf_laplacian

    x = inputs(mp)
    _run(benchmark, lambda: cf_laplacian(x.image_hwc, epsilon=1e-7, radius=1), f"csr-{mp}", x,
         SLOW_ROUNDS, impl="pymatting", op="csr")


@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_ours_diagonal(benchmark, mp):
    x = inputs(mp)
    _run(benchmark, lambda: ops.laplacian_diagonal(x.image, x.stats), f"diagonal-{mp}", x,
         FAST_ROUNDS, impl="ours", op="diagonal")


@pytest.mark.parametrize("mp", MEGAPIXELS)
def test_ours_loss(benchmark, mp):
    x = inputs(mp)
    _run(benchmark, lambda: ops.photoreal_loss(x.image, x.stats, x.v3), f"loss-{mp}", x,
         FAST_ROUNDS, impl="ours", op="loss3")


COPY_BYTES = 256 << 20  # far larger than the 32 MB L3: a memory-to-memory copy


def test_bandwidth_torch_copy(benchmark):
    """Copy bandwidth with 2 threads (torch copy_ into a preallocated tensor: no page faults)."""
    src = torch.rand(COPY_BYTES // 4)
    dst = torch.empty_like(src)
    benchmark.group = "bandwidth"
    # read + write: the same way of counting as the bytes of L.v (every input read, output written)
    benchmark.extra_info.update(impl="torch", op="copy", bytes=2 * COPY_BYTES, threads=THREADS)
    benchmark.pedantic(lambda: dst.copy_(src), rounds=FAST_ROUNDS, iterations=1, warmup_rounds=1)


def test_bandwidth_numpy_copy(benchmark):
    """The same copy with numpy (single-threaded): a second opinion on the floor."""
    src = np.random.default_rng(0).random(COPY_BYTES // 8)
    dst = np.empty_like(src)
    benchmark.group = "bandwidth"
    benchmark.extra_info.update(impl="numpy", op="copy", bytes=2 * COPY_BYTES, threads=1)
    benchmark.pedantic(lambda: np.copyto(dst, src), rounds=FAST_ROUNDS, iterations=1, warmup_rounds=1)
