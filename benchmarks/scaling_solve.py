"""Time against megapixels of the 3-channel L·v and of the fast smoothing solve: ours against scipy (CSR
SpMM, CG on the assembled matrix) and pymatting (its matrix-free lkm_laplacian with radius 1, which is the
same operator, and its CG). Writes benchmarks/scaling_solve.json and benchmarks/scaling_solve.png.

    OMP_NUM_THREADS=2 python benchmarks/scaling_solve.py [--mp 0.25 0.5 1 2 4 8 16] [--anchors-up-to 4]

Photo: scikit-image astronaut resized; y: benchmarks/bench_smoothing.target (a colour transform computed
at 1/4 size and upsampled). System: the full-resolution step's, (I + w/9 M) r = y (normalize="interior",
beta 0.9999, no preconditioner), tol 1e-3 ("fast" smoothing), x0 = y, every channel; glibc's heap reuse on, as
in the CLI. Solve times include
building each operator (ours: the stencil; scipy: the CSR matrix; pymatting: its window inverses). L·v:
medians of --repeat, all alternating: ours from the stencil (what the solve uses) and matrix-free from the
window statistics, float32; the anchors float64 (their only dtype). Each solve runs once. The anchors run up
to --anchors-up-to megapixels (scipy's matrix takes ~300 B/px and its CG minutes there), pymatting's solve to
--pymatting-solve-up-to. scipy and pymatting are single-threaded code; ours uses the torch threads.
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
from dpst_ext.engine.memory import reuse_freed_memory  # noqa: E402
from dpst_ext.engine.smoothing import smooth, weight_from_beta  # noqa: E402

W = weight_from_beta(0.9999) / 9.0   # normalize="interior": S = M / 9
TOL = 1e-3


def measure(mp, repeat, anchors=True, pymatting_solve=True):
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
    stencil = lap.stencil()
    v = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    fns = {"ours": lambda: stencil.matvec(v), "ours matrix-free": lambda: lap.matvec(v)}
    if anchors:
        csr = MattingLaplacian(img.double(), 1e-7).to_scipy()
        hwc = np.ascontiguousarray(img.double().permute(1, 2, 0).numpy())
        pm_matvec = lkm_laplacian(hwc, epsilon=1e-7, radius=1, return_diagonal=False)
        vn = np.ascontiguousarray(v.double().reshape(3, -1).numpy().T)
        vp = [vn[:, c].copy() for c in range(3)]
        fns.update(scipy=lambda: csr @ vn, pymatting=lambda: [pm_matvec(p) for p in vp])
    runs = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t)
    out["matvec"] = {k: statistics.median(r) for k, r in runs.items()}
    del lap, stencil, fns
    if anchors:
        del csr
    # -- solve
    yn = y.numpy()
    t = time.perf_counter()
    res = smooth(img, y, tol=TOL, normalize="interior", preconditioner="none", laplacian_dtype=torch.float32)
    out["solve"] = {"ours": time.perf_counter() - t}
    out["iterations"] = {"ours": res.iterations}
    if not anchors:
        return out
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
    if not pymatting_solve:
        return out
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
    for ax, key, title in ((axes[0], "matvec", "3-channel L·v"),
                           (axes[1], "solve", f"fast smoothing solve (tol {TOL:g}), incl. build")):
        for name, style, colour in (("ours", "o-", "C0"), ("ours matrix-free", "o:", "C1"), ("scipy", "s--", "C2"),
                                    ("pymatting", "^--", "C3")):
            pts = [(r["mp"], r[key][name]) for r in rows if name in r[key]]
            if pts:
                ax.loglog(*zip(*pts), style, color=colour, label=name)
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
    p.add_argument("--anchors-up-to", type=float, default=4.0, help="run scipy and pymatting up to this size (MP)")
    p.add_argument("--pymatting-solve-up-to", type=float, default=0.5,
                   help="pymatting's CG (a Python loop around its numba L·v; ~20 s at 0.05 MP) up to this size")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    # As `dpst transfer` does: image-sized temporaries reuse the heap. Without it every product's output is a
    # fresh mmap whose pages fault in on first touch (measured: the 3-channel L·v at 8 MP took 10x its 4 MP time).
    reuse_freed_memory()
    rows = []
    load = [os.getloadavg()[0]]
    for mp in args.mp:
        rows.append(measure(mp, args.repeat, anchors=mp <= args.anchors_up_to,
                            pymatting_solve=mp <= args.pymatting_solve_up_to))
        print(json.dumps(rows[-1]), flush=True)
    load.append(os.getloadavg()[0])
    with open(os.path.join(HERE, "scaling_solve.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(), "loadavg": load,
                   "torch": torch.__version__, "rows": rows}, f, indent=1)
    plot(rows, os.path.join(HERE, "scaling_solve.png"))
    print(f"load average {load[0]:.1f} -> {load[1]:.1f}")


if __name__ == "__main__":
    main()
