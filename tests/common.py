"""Shared helpers and tolerances for the tests (imported as `common`; pytest puts tests/ on sys.path).

Tolerances are relative to max|reference| and follow from the dtype and the problem's conditioning:

* Noise images are well conditioned (window covariances far from singular): float64 codes agree to a
  few ulps (measured ~1e-15, tolerance 1e-12); float32 to a few float32 ulps (measured ~1e-7,
  tolerance 1e-6).
* Real 8-bit photos have windows whose covariance is (near-)singular: Sigma + eps/9 I then has condition
  number kappa up to 0.75 / (eps/9) ~ 7e7 (colour variance <= 0.75 in 0..1). kappa * u64 ~ 1e-8 is the
  forward-error bound of a backward-stable float64 evaluation, hence the float64 tolerance on photos
  (the engine measures <= 1.3e-11 against longdouble, benchmarks/accuracy.py; on the patches of
  test_reference.py the textbook explicit inverse errs by up to 3.6e-10 on M's entries, the engine 2.2e-10).
  In float32 the engine stores the window statistics (mean, whitening matrix W) rounded to float32.
  The gather term (I_i - mu_k) . g_k has g_k ~ 1/sqrt(eps/9) ~ 1e4 along the near-null direction, so
  those roundings (~u32 |I|) become ~1e-4 absolute against max|M v| ~ 30: ~3e-6 relative, measured up to
  7.3e-6 (benchmarks/accuracy.py --prototype separates the sources). Tolerance 2e-5; the textbook
  explicit inverse evaluated in float32 measured 2e-5 to 1.3e-2 on the same 96x96 crops.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from dpst_ext import samples
from dpst_ext.engine.laplacian import STENCIL_OFFSETS

EPS = 1e-7

# (dtype, kind) -> relative tolerance on max|error| / max|reference|; kind "noise" or "photo".
TOL = {
    (torch.float64, "noise"): 1e-12,
    (torch.float32, "noise"): 1e-6,
    (torch.float64, "photo"): 1e-8,
    (torch.float32, "photo"): 2e-5,
}


def max_rel(actual, expected) -> float:
    """max|actual - expected| / max|expected|, both converted to float64 numpy."""
    a = np.asarray(actual.detach().cpu().numpy() if hasattr(actual, "detach") else actual, dtype=np.float64)
    e = np.asarray(expected.detach().cpu().numpy() if hasattr(expected, "detach") else expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    scale = np.abs(e).max() if e.size else 0.0
    return float(np.abs(a - e).max() / scale) if scale > 0 else float(np.abs(a - e).max(initial=0.0))


def stencil_dense(K):
    """The dense matrix of a stencil (12, H, W): M_{i, i+d_q} = K_q(i), symmetric, rows summing to 0."""
    h, w = K.shape[1:]
    m = np.zeros((h * w, h * w))
    k = K.double().numpy()
    for q, (dy, dx) in enumerate(STENCIL_OFFSETS):
        for y in range(h - dy):
            for x in range(max(-dx, 0), w - max(dx, 0)):
                i, j = y * w + x, (y + dy) * w + x + dx
                m[i, j] = m[j, i] = k[q, y, x]
    # Entries whose neighbour lies outside the image must be exactly 0.
    for q, (dy, dx) in enumerate(STENCIL_OFFSETS):
        outside = np.ones((h, w), bool)
        outside[:h - dy, max(-dx, 0):w - max(dx, 0)] = False
        assert not np.any(k[q][outside])
    m[np.diag_indices_from(m)] = -m.sum(1)
    return m


def randn(*shape, seed=0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


_CROPS = {}


def photo_crop(name: str, size: int) -> torch.Tensor:
    """One of samples.hard_crops(size) (float64), cached: loading a photo costs ~50 ms."""
    if size not in _CROPS:
        _CROPS[size] = samples.hard_crops(size)
    return _CROPS[size][name]


PHOTO_CROPS = ("astronaut_black", "rocket_sky", "hubble_dark", "coffee_saturated", "retina_border", "pasted")


EMULATION_TIMEOUT_S = 120


def emulated(fn, *args):
    """fn(*args) in a daemon thread; fails (instead of hanging the suite) after EMULATION_TIMEOUT_S.

    For the host-emulated CUDA kernels: a __syncthreads() not reached by every thread of a block hangs
    the emulation, as it would hang a GPU.
    """
    import threading

    import pytest

    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # re-raised in the test's thread
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(EMULATION_TIMEOUT_S)
    if t.is_alive():
        pytest.fail(f"emulated kernel did not finish in {EMULATION_TIMEOUT_S} s "
                    "(a __syncthreads not reached by all threads?)")
    if "error" in result:
        raise result["error"]
    return result["value"]


# The `dpst` command in a subprocess (CLI tests): 2 torch threads, 300 s limit.
CMD = [sys.executable, "-m", "dpst_ext.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def run_cli(args, **kw):
    return subprocess.run(CMD + args, capture_output=True, text=True, env=ENV, timeout=300, **kw)
