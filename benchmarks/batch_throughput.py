"""Throughput of dpst batch on this machine (issue 19).

    python benchmarks/batch_throughput.py [--methods fast,default] [--side 700] [--fast-photos 4] [--default-photos 2]

1. Ray's start-up: ray.init of the embedded local Ray, then one worker actor ready (its process imports
   torch and dpst_ext).
2. `dpst batch` (a fresh output folder each run, so nothing is skipped) on N content photos at --side px in
   the look of scikit-image's chelsea, --method fast and --method default, with 1 worker x 2 threads and
   2 workers x 1 thread: wall time of the whole command (Ray's start-up included) and photos per minute.
3. The baseline without batch: the same fast items as one `dpst transfer --threads 2` process each, one
   after another.

The content photos are scikit-image's other sample photos (and two of them mirrored) at --side px. Appends
the figures with the date, CPU, torch version and the load average before and after each run (the machine
is shared) to --out (benchmarks/batch.json) and prints a Markdown table. The default counts keep a run
short; on a busy machine a 700 px photo takes ten times longer than on a quiet one.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dpst_ext.image_io import save_image
from dpst_ext.samples import photo

CMD = [sys.executable, "-m", "dpst_ext.cli"]


def make_photos(folder: Path, side: int, n: int) -> list[Path]:
    names = ["astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]
    paths = []
    for i in range(n):
        img = photo(names[i % len(names)], side, torch.float32)
        if i >= len(names):
            img = img.flip(-1)     # mirrored: another photo of the same size
        paths.append(save_image(img, folder / f"p{i:02d}.png"))
    return paths


def startup() -> dict:
    import ray

    from dpst_ext.batch import _Worker
    from dpst_ext.ray_workers import cores, start_ray

    t0 = time.perf_counter()
    start_ray(None, cores(), verbose=False)
    t1 = time.perf_counter()
    actor = ray.remote(_Worker).options(num_cpus=1).remote(1)
    ray.get(actor.__ray_ready__.remote())
    t2 = time.perf_counter()
    ray.shutdown()
    return {"ray_init_s": round(t1 - t0, 2), "worker_ready_s": round(t2 - t1, 2)}


def run_batch(inputs: Path, style: Path, method: str, workers: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        r = subprocess.run(CMD + ["batch", str(inputs), "--style", str(style), "-o", out, "--method", method,
                                  "--workers", str(workers), "--threads", str(threads), "-q"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"dpst batch failed: {r.stderr}")
        s = json.loads((Path(out) / "dpst-batch-summary.json").read_text())
    n = len(s["done"])
    return {"method": method, "workers": workers, "threads": threads, "photos": n, "wall_s": round(wall, 1),
            "photos_per_min": round(60 * n / wall, 2),
            "item_s": sorted(round(d["seconds"], 1) for d in s["done"])}


def run_sequential(photos: list[Path], style: Path, method: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        for p in photos:
            subprocess.run(CMD + ["transfer", str(p), str(style), "-o", os.path.join(out, p.name), "--method",
                                  method, "--threads", "2", "-q"], check=True)
        wall = time.perf_counter() - t0
    return {"method": method, "workers": "dpst transfer, one process per photo", "threads": 2,
            "photos": len(photos), "wall_s": round(wall, 1), "photos_per_min": round(60 * len(photos) / wall, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=700)
    ap.add_argument("--methods", default="fast,default")
    ap.add_argument("--fast-photos", type=int, default=4)
    ap.add_argument("--default-photos", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).with_name("batch.json")))
    args = ap.parse_args()
    results = {"date": datetime.date.today().isoformat(), "cpu": _cpu(), "cores": len(os.sched_getaffinity(0)),
               "torch": torch.__version__, "side": args.side}
    methods = args.methods.split(",")
    runs = []

    def measured(fn, *a):
        before = os.getloadavg()[0]
        r = fn(*a)
        r["load_before_after"] = [round(before, 2), round(os.getloadavg()[0], 2)]
        print(r, flush=True)
        runs.append(r)

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        style = save_image(photo("chelsea", args.side, torch.float32), d / "style.png")
        results["startup"] = startup()
        print(results["startup"], flush=True)
        for method in methods:
            folder = d / method
            folder.mkdir()
            photos = make_photos(folder, args.side, args.fast_photos if method == "fast" else args.default_photos)
            for workers, threads in ((1, 2), (2, 1)):
                measured(run_batch, folder, style, method, workers, threads)
            if method == "fast":
                measured(run_sequential, photos, style, "fast")
    results["runs"] = runs
    out = Path(args.out)
    history = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(history + [results], indent=1) + "\n")
    print(f"\n{results['date']}, {results['cpu']}, {results['cores']} cores, torch {results['torch']}, "
          f"{args.side} px; Ray start-up {results['startup']}\n")
    print("| method | how | photos | wall | photos/min | load average before, after |\n|---|---|---|---|---|---|")
    for r in runs:
        how = r["workers"] if isinstance(r["workers"], str) else f"{r['workers']} worker(s) x {r['threads']} thread(s)"
        print(f"| {r['method']} | {how} | {r['photos']} | {r['wall_s']} s | {r['photos_per_min']} | "
              f"{r['load_before_after'][0]}, {r['load_before_after'][1]} |")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
