"""Time against megapixels of the 3-channel L·v and of the fast smoothing solve: ours against scipy (CSR
SpMM, CG on the assembled matrix) and pymatting (its matrix-free lkm_laplacian with radius 1, which is the
same operator, and its CG). Writes benchmarks/scaling_solve.json and benchmarks/scaling_solve.png.

    OMP_NUM_THREADS=2 python benchmarks/scaling_solve.py [--mp 0.25 0.5 1 2] [--repeat 5]

Photo: scikit-image astronaut resized; y: benchmarks/bench_smoothing.target (a colour transform computed
at 1/4 size and upsampled). System: the full-resolution step's, (I + w/9 M) r = y (normalize="interior",
beta 0.9999, no preconditioner), tol 1e-3 ("fast" smoothing), x0 = y, every channel. Solve times include
building each operator (window statistics; scipy: the CSR matrix; pymatting: its window inverses). L·v:
medians of --repeat, the three alternating; ours float32, the anchors float64 (their only dtype). Each
solve runs once. scipy and pymatting are single-threaded code; ours uses the torch threads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_smoothing import target  # noqa: E402

from dpst_ext.engine import MattingLaplacian  # noqa: E402
from dpst_ext.engine.smoothing import smooth, weight_from_beta  # noqa: E402

W = weight_from_beta(0.9999) / 9.0   # normalize="interior": S = M / 9
TOL = 1e-3


def measure(mp, repeat):
    import scipy.sparse
    import scipy.sparse.linalg
    from pymatting.laplacian.lkm_laplacian import lkm_laplacian
    from pymatting.solver.cg import cg as pm_cg

    img, y = target(mp)
    h, w = img.shape[1:]
    n = h * w
    out = {"mp": mp, "shape": [h, w]}
    # -- L·v
    lap = MattingLaplacian(img, 1e-7)
    csr = MattingLaplacian(img.double(), 1e-7).to_scipy()
    hwc = np.ascontiguousarray(img.double().permute(1, 2, 0).numpy())
    pm_matvec = lkm_laplacian(hwc, epsilon=1e-7, radius=1, return_diagonal=False)
    v = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    vn = np.ascontiguousarray(v.double().reshape(3, -1).numpy().T)
    vp = [vn[:, c].copy() for c in range(3)]
    runs = {"ours": [], "scipy": [], "pymatting": []}
    for _ in range(repeat):
        for name, fn in (("ours", lambda: lap.matvec(v)), ("scipy", lambda: csr @ vn),
                         ("pymatting", lambda: [pm_matvec(p) for p in vp])):
            t = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t)
    out["matvec"] = {k: statistics.median(r) for k, r in runs.items()}
    del lap
    # -- solve
    yn = y.numpy()
    t = time.perf_counter()
    res = smooth(img, y, tol=TOL, normalize="interior", preconditioner="none", laplacian_dtype=torch.float32)
    out["solve"] = {"ours": time.perf_counter() - t}
    out["iterations"] = {"ours": res.iterations}
    t = time.perf_counter()
    a = (scipy.sparse.identity(n, format="csr") + W * MattingLaplacian(img.double(), 1e-7).to_scipy()).tocsr()
    its = []
    for c in range(3):
        k = [0]
        scipy.sparse.linalg.cg(a, yn[c].reshape(-1), x0=yn[c].reshape(-1), rtol=TOL, atol=0.0, maxiter=20000,
                               callback=lambda _: k.__setitem__(0, k[0] + 1))
        its.append(k[0])
    out["solve"]["scipy"] = time.perf_counter() - t
    out["iterations"]["scipy"] = its
    del a
    t = time.perf_counter()
    pm = lkm_laplacian(hwc, epsilon=1e-7, radius=1, return_diagonal=False)
    its = []
    for c in range(3):
        k = [0]
        pm_cg(lambda p: p + W * pm(p), yn[c].reshape(-1), x0=yn[c].reshape(-1).copy(), rtol=TOL, maxiter=20000,
              callback=lambda *_: k.__setitem__(0, k[0] + 1))
        its.append(k[0])
    out["solve"]["pymatting"] = time.perf_counter() - t
    out["iterations"]["pymatting"] = its
    return out


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    mps = [r["mp"] for r in rows]
    for ax, key, title in ((axes[0], "matvec", "3-channel L·v"),
                           (axes[1], "solve", f"fast smoothing solve (tol {TOL:g}), incl. build")):
        for name, style in (("ours", "o-"), ("scipy", "s--"), ("pymatting", "^--")):
            ax.loglog(mps, [r[key][name] for r in rows], style, label=name)
        ax.set_xlabel("megapixels")
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mp", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    rows = []
    load = [os.getloadavg()[0]]
    for mp in args.mp:
        rows.append(measure(mp, args.repeat))
        print(json.dumps(rows[-1]), flush=True)
    load.append(os.getloadavg()[0])
    with open(os.path.join(HERE, "scaling_solve.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(), "loadavg": load,
                   "torch": torch.__version__, "rows": rows}, f, indent=1)
    plot(rows, os.path.join(HERE, "scaling_solve.png"))
    print(f"load average {load[0]:.1f} -> {load[1]:.1f}")


if __name__ == "__main__":
    main()
