"""Closed-form smoothing (FastPhotoStyle's (I + w D^-1/2 M D^-1/2) r = y, beta 0.9999) at 1 and 4 MP:
dpst_ext.engine.smoothing (matrix-free batched CG) against scipy's CG on the assembled sparse system.

    python benchmarks/bench_smoothing.py --mp 1 4 [--threads 2] [--tol 1e-6] [--no-scipy] [--repeat 1]
        [--precond none multigrid] [--vectors float64|float32|auto] [--normalize true|interior] [--rounds 1]

Every solve runs in its own subprocess so its peak RSS (VmHWM, whole process, interpreter included) is
its own, with its CPU time (all threads) beside the wall time; --rounds alternates the solvers. y is a
"stylised" target: a colour transform of the photo computed at 1/4 size and upsampled
bicubically (the blocky, haloed input that the smoothing exists to clean). Times include building the
operator (window statistics, or the sparse matrix). Solutions are compared in float64 (relative l2).
Results are printed as one JSON line per run and a table; solutions go to --out (default /tmp).

    python benchmarks/bench_smoothing.py --end-to-end PHOTO [--working-size 1024] [--smoothing fast]

runs dpst_ext.engine.highres.upscale_result on PHOTO with a stand-in working-size result (a tone curve,
channel mix and smooth tint of the photo downscaled to --working-size, plus 8-bit-like noise: not locally
affine, as a neural result is not) and reports wall time, peak RSS, the PSNR of the full-resolution output
downscaled against the working result, and the photorealism residual (1/N) sum_c V_c^T M V_c at full
resolution for: ours, ours without smoothing, and naive bicubic upsampling.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def peak_rss() -> int:
    """Peak resident set of this process in bytes (VmHWM; ru_maxrss can carry a parent's peak across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def process_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def target(mp: float):
    import torch
    import torch.nn.functional as F

    from dpst_ext import samples

    img = samples.photo_megapixels(mp, name="astronaut", dtype=torch.float32)
    x = img.double()
    m = torch.tensor([[0.9, 0.3, 0.0], [0.1, 0.7, 0.2], [0.0, 0.3, 0.8]], dtype=torch.float64)
    y = torch.einsum("ij,jhw->ihw", m, x).clamp(0, 1) ** 0.8
    h, w = img.shape[1:]
    small = F.interpolate(y[None], size=(h // 4, w // 4), mode="area")
    return img, F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0].contiguous()


NORMALIZE = {"true": True, "interior": "interior"}   # --normalize: FastPhotoStyle's form, or highres's


def child(args):
    import torch

    from dpst_ext.engine.memory import reuse_freed_memory

    torch.set_num_threads(args.threads)
    if not args.mmap:
        reuse_freed_memory()   # as `dpst transfer` does
    from dpst_ext.engine.smoothing import cg_vector_dtype, smooth, weight_from_beta, window_counts

    img, y = target(args.mp)
    h, w = img.shape[1:]
    rss0 = peak_rss()
    t0, c0 = time.perf_counter(), process_seconds()
    info = {"solver": args.child, "mp": args.mp, "shape": [h, w], "threads": args.threads, "tol": args.tol,
            "load_before": os.getloadavg()[0]}
    if args.child == "ours":
        dtype = getattr(torch, args.dtype)
        # --vectors auto: what the full-resolution step uses (smoothing.cg_vector_dtype).
        vectors = cg_vector_dtype("cpu", args.precond) if args.vectors == "auto" else getattr(torch, args.vectors)
        args.vectors = str(vectors).removeprefix("torch.")
        res = smooth(img.to(dtype), y, tol=args.tol, laplacian_dtype=dtype, preconditioner=args.precond,
                     cascade_levels=args.cascade, normalize=NORMALIZE[args.normalize], vector_dtype=vectors)
        sol = res.solution.numpy()
        info.update(dtype=args.dtype, vectors=args.vectors, normalize=args.normalize, precond=args.precond, cascade=args.cascade, iterations=res.iterations,
                    levels=[{k: v for k, v in lv.items()} for lv in res.levels], converged=res.converged,
                    residual=max(res.relative_residual))
    else:
        import scipy.sparse
        import scipy.sparse.linalg

        from dpst_ext.engine import MattingLaplacian

        lap = MattingLaplacian(img.double())
        m = lap.to_scipy()
        del lap
        if args.normalize == "interior":      # D = 9 I (the full-resolution step's system)
            d = scipy.sparse.identity(h * w, format="csr") / 3.0
        else:
            d = scipy.sparse.diags(window_counts(h, w).numpy().reshape(-1) ** -0.5)
        a = (scipy.sparse.identity(h * w, format="csr") + weight_from_beta(0.9999) * (d @ m @ d)).tocsr()
        del m
        info["build_seconds"] = time.perf_counter() - t0
        sols, its = [], []
        for c in range(3):
            it = [0]
            x, _ = scipy.sparse.linalg.cg(a, y[c].numpy().reshape(-1), rtol=args.reference_tol or args.tol, atol=0.0,
                                          maxiter=20000,
                                          callback=lambda _: it.__setitem__(0, it[0] + 1))
            sols.append(x.reshape(h, w))
            its.append(it[0])
        sol = np.stack(sols)
        info["iterations"] = its
    info["seconds"] = time.perf_counter() - t0
    info["cpu_seconds"] = process_seconds() - c0
    info["load_after"] = os.getloadavg()[0]
    info["peak_rss_gib"] = peak_rss() / 2**30
    info["rss_before_gib"] = rss0 / 2**30
    path = os.path.join(args.out, f"smooth_{args.child}_{args.mp}_{args.tol:g}_{args.dtype}_{args.vectors}_"
                              f"{args.normalize}_{args.precond}_{args.cascade}.npy")
    np.save(path, sol.astype(np.float64))
    info["solution"] = path
    print(json.dumps(info), flush=True)


def stand_in(content_small):
    import torch

    g = torch.Generator().manual_seed(0)
    x = content_small.double()
    m = torch.tensor([[0.7, 0.4, 0.0], [0.1, 0.8, 0.1], [0.2, 0.1, 0.6]], dtype=torch.float64)
    y = torch.einsum("ij,jhw->ihw", m, x).clamp(0, 1) ** torch.tensor([0.7, 0.9, 1.2], dtype=torch.float64)[:, None, None]
    h, w = x.shape[1:]
    ramp = torch.linspace(-0.05, 0.05, w, dtype=torch.float64)[None, None, :] * torch.tensor([1.0, 0.0, -1.0],
                                                                                          dtype=torch.float64)[:, None, None]
    return (y + ramp + 0.01 * torch.randn(3, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)


def end_to_end_child(args):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from dpst_ext.engine.memory import reuse_freed_memory

    torch.set_num_threads(args.threads)
    reuse_freed_memory()
    from dpst_ext.engine import MattingLaplacian
    from dpst_ext.engine.highres import upscale_result

    full = torch.from_numpy(np.asarray(Image.open(args.end_to_end).convert("RGB")).transpose(2, 0, 1).copy())
    full = full.float().div_(255.0)
    H, W = full.shape[1:]
    s = args.working_size / max(H, W)
    hs, ws = round(H * s), round(W * s)
    small = F.interpolate(full[None], size=(hs, ws), mode="area", antialias=False)[0]
    result_small = stand_in(small)
    info = {"photo": args.end_to_end, "shape": [H, W], "working": [hs, ws], "variant": args.variant,
            "threads": args.threads}
    t0, c0 = time.perf_counter(), process_seconds()
    if args.variant == "bicubic":
        out = F.interpolate(result_small[None].float(), size=(H, W), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    else:
        rep = {}
        out = upscale_result(full, small, result_small, smoothing=args.variant, report=rep)
        info.update({k: v for k, v in rep.items() if k != "smooth_residual"})
    info["seconds"] = time.perf_counter() - t0
    info["cpu_seconds"] = process_seconds() - c0
    info["load_after"] = os.getloadavg()[0]
    info["peak_rss_gib"] = peak_rss() / 2**30
    down = F.interpolate(out[None].double(), size=(hs, ws), mode="area")[0]
    mse = ((down - result_small) ** 2).mean().item()
    info["psnr_db"] = 10 * np.log10(1.0 / mse)
    lap = MattingLaplacian(full)
    info["photoreal_residual"] = lap.quad(out.float()).item() / (H * W)
    print(json.dumps(info), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mp", type=float, nargs="+", default=[1.0, 4.0])  # child: one value
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--precond", nargs="+", default=["none", "multigrid"], choices=["none", "jacobi", "multigrid"])
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the whole list of solvers this many times, alternating (ratios within a round)")
    p.add_argument("--cascade", type=int, default=0)
    p.add_argument("--vectors", default="float64", choices=["float64", "float32", "auto"],
                   help="CG vector dtype (ours); auto: the full-resolution step's (smoothing.cg_vector_dtype)")
    p.add_argument("--normalize", default="true", choices=sorted(NORMALIZE), help="the system (ours; scipy: true)")
    p.add_argument("--no-scipy", action="store_true")
    p.add_argument("--reference-tol", type=float, default=None,
                   help="scipy's tolerance (default --tol): e.g. 1e-9 for a float64 reference solution")
    p.add_argument("--mmap", action="store_true",
                   help="keep glibc's default mmap threshold (see dpst_ext/engine/memory.py)")
    p.add_argument("--repeat", type=int, default=1, help="runs of ours per size (median reported)")
    p.add_argument("--out", default="/tmp")
    p.add_argument("--end-to-end", metavar="PHOTO")
    p.add_argument("--working-size", type=int, default=1024)
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", choices=["ours", "scipy"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.end_to_end:
        if args.variant:
            end_to_end_child(args)
            return
        for variant in ("bicubic", "off", "fast"):
            cmd = [sys.executable, __file__, "--end-to-end", args.end_to_end, "--variant", variant,
                   "--working-size", str(args.working_size), "--threads", str(args.threads)]
            print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip(), flush=True)
        return
    if args.child:
        args.mp, args.precond = args.mp[0], args.precond[0]
        child(args)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads)}
    rows = []
    for mp in args.mp:
        runs = [("ours", pre) for _ in range(args.rounds) for pre in args.precond for _ in range(args.repeat)]
        for solver, pre in runs + ([] if args.no_scipy else [("scipy", "none")]):
            cmd = [sys.executable, __file__, "--child", solver, "--mp", str(mp), "--threads", str(args.threads),
                   "--tol", str(args.tol), "--dtype", args.dtype, "--precond", pre, "--vectors", args.vectors,
                   "--normalize", args.normalize,
                   "--cascade", str(args.cascade), "--out", args.out] + (["--mmap"] if args.mmap else []) \
                + (["--reference-tol", str(args.reference_tol)] if args.reference_tol else [])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\n{'MP':>4} {'solver':>16} {'seconds':>8} {'CPU s':>8} {'peak GiB':>8} {'iterations':>16}  "
          "rel. diff to scipy")
    for mp in args.mp:
        group = [r for r in rows if r["mp"] == mp]
        ref = next((np.load(r["solution"]) for r in group if r["solver"] == "scipy"), None)
        shown = []
        for pre in args.precond:   # the median run of each preconditioner
            ours = sorted((r for r in group if r["solver"] == "ours" and r["precond"] == pre),
                          key=lambda r: r["seconds"])
            shown += [ours[len(ours) // 2]] if ours else []
        for r in shown + [r for r in group if r["solver"] == "scipy"]:
            diff = ""
            if ref is not None and r["solver"] == "ours":
                s = np.load(r["solution"])
                diff = f"{np.linalg.norm(s - ref) / np.linalg.norm(ref):.1e}"
            name = r["solver"] if r["solver"] == "scipy" else f"ours {r['precond']}"
            print(f"{mp:>4} {name:>16} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['peak_rss_gib']:>8.2f} "
                  f"{str(r['iterations']):>16}  {diff}")


if __name__ == "__main__":
    main()
