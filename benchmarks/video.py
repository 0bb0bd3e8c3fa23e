"""dpst video: flicker, style fidelity and throughput (docs/video.md has the results).

    python benchmarks/video.py                  # all parts, ~15 min on 2 cores; writes benchmarks/video.json
    python benchmarks/video.py --parts flicker  # only the flicker and style measures
    python benchmarks/video.py --parts sheet    # docs/video_frames.jpg

Clips (built from scikit-image's photos, no download):

* ``pan``: the astronaut photo panned 2 px per frame under a light rising by 30 % over 2 s (48 frames,
  480x270, 24 fps);
* ``shots``: three shots of 24 frames with cuts between them: a slow zoom into the coffee photo, a pan
  down the rocket photo and a slow zoom out of the chelsea photo, the light varying by a few percent (480x270).

Measures, per clip and per way of stylising it:

* flicker: the mean absolute change between consecutive frames (0..255) of the output and of the input,
  raw and after aligning each pair by the input's global motion (video.global_motion: a similarity, scale,
  rotation and shift, fitted on the input pair and applied to the input and the output alike; the overlap
  only), across no cut; the ratio output / input (target: at most 1.01);
* colour style distance (dpst_ext.metrics.colour_style_distance, one label) of every 4th frame to the
  style, against that of the single-photo result (dpst_ext.run_transfer, method fast, on the frame alone;
  target: within 10 %);
* throughput (``--parts speed``): dpst video on a 720p and a 1080p clip (48 frames), frames per second and
  the per-frame split (decode, analysis, transport, encode); the per-frame smoothing's cost with a warm and
  a cold start; method default's cost per frame.
* per shot (``--parts shots``): the aligned flicker of the shots clip (one label) shot by shot, the video
  against one fixed map per shot;
* Ray (``--parts ray``): dpst video on a 720p clip of 192 frames (4 chunks of 48) in this process with 2
  torch threads, against 2 Ray workers x 1 thread on an embedded Ray (started before, its start-up timed
  apart), alternately twice each; frames per second of the whole call and of pass 2 (the rendering).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dpst_ext import samples  # noqa: E402
from dpst_ext.image_io import resize_long_side  # noqa: E402
from dpst_ext.metrics import colour_style_distance  # noqa: E402
from dpst_ext.transfer import run_transfer  # noqa: E402
from dpst_ext import video  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255


def _window(img: torch.Tensor, cy: float, cx: float, scale: float, h: int, w: int) -> torch.Tensor:
    """A (3, h, w) view of img centred at (cy, cx) (0..1) covering ``scale`` of the photo's width (bilinear)."""
    H, W = img.shape[1:]
    span_x = scale * W
    span_y = span_x * h / w
    ys = (cy * H + (torch.arange(h) + 0.5 - h / 2) * span_y / h) / H * 2 - 1
    xs = (cx * W + (torch.arange(w) + 0.5 - w / 2) * span_x / w) / W * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].float()
    return torch.nn.functional.grid_sample(img[None].float(), grid, mode="bilinear", align_corners=False,
                                           padding_mode="border")[0]


def pan_clip(n=48, h=270, w=480, step=2, ramp=0.3):
    img = samples.photo("astronaut", dtype=torch.float32)   # 512 x 512
    img = resize_long_side(img, 1024)
    frames = []
    for i in range(n):
        crop = img[:, 200:200 + h, 100 + step * i:100 + step * i + w] * (0.85 + ramp * i / (n - 1))
        frames.append(_u8(crop))
    return frames, []


def shots_clip(n=24, h=270, w=480):
    frames = []
    coffee, rocket, cat = (samples.photo(p, dtype=torch.float32) for p in ("coffee", "rocket", "chelsea"))
    for i in range(n):        # zoom in
        frames.append(_u8(_window(coffee, 0.5, 0.5, 1.0 - 0.3 * i / n, h, w) * (1 + 0.05 * i / n)))
    for i in range(n):        # pan down a tall photo
        frames.append(_u8(_window(rocket, 0.3 + 0.3 * i / n, 0.5, 1.0, h, w)))
    for i in range(n):        # zoom out, light falling
        frames.append(_u8(_window(cat, 0.5, 0.5, 0.7 + 0.3 * i / n, h, w) * (1 - 0.05 * i / n)))
    return frames, [n, 2 * n]


def single_photo(frames, style, masks):
    """The photo method (fast) on each frame alone."""
    out = []
    for f in frames:
        r = run_transfer(_t(f), style, method="fast", auto_masks=(masks == "auto"), seed=0)
        out.append(_u8(r.image))
    return out


def measure(name, frames, cuts, style, masks, fps=24, per_frame_baseline=True):
    t = time.perf_counter()
    ours = list(video.stylize_frames(frames, style, fps=fps, masks=masks))
    t_ours = time.perf_counter() - t
    res = {"clip": name, "masks": masks, "frames": len(frames), "size": list(frames[0].shape[:2]),
           "seconds": t_ours}
    # The same plan with each shot's first table for all its frames: how much a fixed colour map (the steadiest
    # possible) changes the output; the video's excess over it is the change the moving maps add.
    planner = video.Planner(style, video.VideoOptions(masks=masks), fps)
    for f in frames:
        planner.observe(f)
    planner.finish()
    maps = [planner.frame_maps(i) for i in range(len(frames))]
    fixed_maps = [(planner.shots[m[3]]["start"],) * 2 + (0.0, m[3]) for m in maps]
    fixed, _ = video.render_chunk(frames, fixed_maps, planner.tables, None, planner.o)
    runs = {"video": ours, "fixed map per shot": fixed}
    if per_frame_baseline:
        t = time.perf_counter()
        runs["per-frame photo method"] = single_photo(frames, style, masks)
        res["per_frame_seconds"] = time.perf_counter() - t
    for key, out in runs.items():
        res[key] = {"flicker": video.flicker(frames, out, cuts=cuts),
                    "flicker_aligned": video.flicker(frames, out, motion=True, cuts=cuts)}
    idx = list(range(0, len(frames), 4))
    s = style.float()
    dist = {k: [colour_style_distance(_t(runs[k][i]), s) for i in idx] for k in runs}
    for k in runs:
        res[k]["colour_distance"] = float(np.mean(dist[k]))
    if per_frame_baseline:
        res["colour_distance_ratio"] = float(np.mean(np.array(dist["video"]) / np.array(dist["per-frame photo method"])))
    return res


def speed(style_path, tmp, sizes=((1280, 720), (1920, 1080)), n=48):
    out = []
    img = samples.photo("astronaut", dtype=torch.float32)
    for w, h in sizes:
        big = resize_long_side(img, int(w * 1.3))
        frames = [_u8(big[:, 40:40 + h, 4 * i:4 * i + w] * (0.9 + 0.2 * i / n)) for i in range(n)]
        src = os.path.join(tmp, f"in_{h}.mp4")
        video.write_video(src, frames, fps=24, crf=18)
        t = time.perf_counter()
        with video._av().open(src) as c:
            for _ in c.decode(video=0):
                pass
        decode_only = time.perf_counter() - t
        for masks in ("none", "auto"):
            t = time.perf_counter()
            r = video.stylize_video(src, style_path, os.path.join(tmp, f"out_{h}_{masks}.mp4"), progress=False,
                                    masks=masks)
            wall = time.perf_counter() - t
            tm = {k: v / n for k, v in r["timings"].items() if isinstance(v, float)}
            out.append({"size": f"{w}x{h}", "masks": masks, "frames": n, "wall_seconds": wall, "fps": n / wall,
                        "per_frame_seconds": tm, "decode_only_per_frame": decode_only / n,
                        "keyframes": r["keyframes"]})
            print(json.dumps(out[-1]), flush=True)
    return out


def per_shot(style, fps=24):
    """The shots clip, one label: aligned flicker per shot of the video and of one fixed map per shot."""
    frames, cuts = shots_clip()
    ours = list(video.stylize_frames(frames, style, fps=fps, masks="none"))
    planner = video.Planner(style, video.VideoOptions(masks="none"), fps)
    for f in frames:
        planner.observe(f)
    planner.finish()
    maps = [planner.frame_maps(i) for i in range(len(frames))]
    fixed, _ = video.render_chunk(frames, [(planner.shots[m[3]]["start"],) * 2 + (0.0, m[3]) for m in maps],
                                  planner.tables, None, planner.o)
    out = []
    for name, (lo, hi) in zip(("zoom in, light +5 %", "pan down", "zoom out, light -5 %"),
                              zip([0] + cuts, cuts + [len(frames)])):
        v, f = (video.flicker(frames[lo:hi], o[lo:hi], motion=True) for o in (ours, fixed))
        out.append({"shot": name, "frames": [lo, hi], "input": v["input"], "video": v["output"],
                    "fixed map": f["output"], "video_ratio": v["ratio"], "fixed_ratio": f["ratio"]})
        print(json.dumps(out[-1]), flush=True)
    return out


def ray_speed(style_path, tmp, n=192, w=1280, h=720, repeats=2):
    """In process (1 x 2 threads) against Ray (2 workers x 1 thread) on one 720p clip, alternately."""
    from dpst_ext.ray_workers import cores, start_ray

    img = resize_long_side(samples.photo("astronaut", dtype=torch.float32), int(w * 1.3))
    frames = [_u8(img[:, 40:40 + h, 2 * i:2 * i + w] * (0.9 + 0.2 * i / n)) for i in range(n)]
    src = os.path.join(tmp, "ray_in.mp4")
    video.write_video(src, frames, fps=24, crf=18)
    del frames
    import ray

    t = time.perf_counter()
    start_ray(None, cores(), verbose=False)
    startup = time.perf_counter() - t
    out = {"size": f"{w}x{h}", "frames": n, "chunk_frames": 48, "ray_start_seconds": startup, "runs": []}
    try:
        for _ in range(repeats):
            for how, kw in (("in process, 1 x 2 threads", {}), ("Ray, 2 workers x 1 thread", dict(workers=2, threads=1))):
                torch.set_num_threads(2 if not kw else 1)
                t = time.perf_counter()
                r = video.stylize_video(src, style_path, os.path.join(tmp, "ray_out.mp4"), progress=False,
                                        masks="none", **kw)
                wall = time.perf_counter() - t
                run = {"how": how, "wall_seconds": wall, "fps": n / wall, "render_seconds": r["render_seconds"],
                       "render_fps": n / r["render_seconds"], "load_average": os.getloadavg()[0]}
                print(json.dumps(run), flush=True)
                out["runs"].append(run)
    finally:
        ray.shutdown()
    return out


def smoothing_cost(style, n=6, h=270, w=480):
    """The per-frame matting smoothing (tol 1e-3) on the pan clip: seconds and CG iterations, warm vs cold."""
    frames, _ = pan_clip(n=n, h=h, w=w)
    planner = video.Planner(style, video.VideoOptions(masks="none"), 24)
    for f in frames:
        planner.observe(f)
    planner.finish()
    maps = [planner.frame_maps(i) for i in range(n)]
    res = {}
    for mode in ("warm", "cold"):
        t = {}
        opts = video.VideoOptions(masks="none", smoothing="fast")
        if mode == "warm":
            out, _ = video.render_chunk(frames, maps, planner.tables, None, opts, t)
        else:
            out = []
            for f, m in zip(frames, maps):
                o, _ = video.render_chunk([f], [m], planner.tables, None, opts, t)
                out += o
        res[mode] = {"seconds_per_frame": t["smoothing"] / n, "iterations_per_frame": t["smoothing_iterations"] / n,
                     "flicker_aligned": video.flicker(frames, out, motion=True)}
    plain, _ = video.render_chunk(frames, maps, planner.tables, None, video.VideoOptions(masks="none"))
    res["off"] = {"flicker_aligned": video.flicker(frames, plain, motion=True)}
    from dpst_ext.metrics import photoreal_residual
    res["photoreal_residual"] = {"off": float(np.mean([photoreal_residual(_t(f), _t(o)) for f, o in zip(frames, plain)])),
                                 "fast": float(np.mean([photoreal_residual(_t(f), _t(o)) for f, o in zip(frames, out)]))}
    return res


def default_method_cost(style, n=3):
    """Method default (VGG refinement) on n consecutive frames of the pan clip at 256x144: seconds per frame and
    flicker, against the fast method on the same frames."""
    frames, _ = pan_clip(n=n, h=144, w=256, step=1, ramp=0.02)
    t = time.perf_counter()
    outs = [_u8(run_transfer(_t(f), style, method="default", auto_masks=False, seed=0).image) for f in frames]
    sec = (time.perf_counter() - t) / n
    fast = list(video.stylize_frames(frames, style, fps=24, masks="none"))
    return {"seconds_per_frame": sec, "size": "256x144", "flicker_aligned": video.flicker(frames, outs, motion=True),
            "fast_flicker_aligned": video.flicker(frames, fast, motion=True)}


def sheet(path=os.path.join(HERE, "..", "docs", "video_frames.jpg")):
    """docs/video_frames.jpg: frames 0, 23, 30 (top) and 47, 50, 71 (below) of the shots clip, each above its
    output (masks none), the style on the right."""
    from PIL import Image

    frames, _ = shots_clip()
    style = samples.photo("astronaut", dtype=torch.float32)
    out = list(video.stylize_frames(frames, style, fps=24, masks="none"))
    rows = []
    for idx in ((0, 23, 30), (47, 50, 71)):
        rows += [np.concatenate([frames[i] for i in idx], 1), np.concatenate([out[i] for i in idx], 1)]
    grid = np.concatenate(rows, 0)
    im = Image.fromarray(grid).resize((grid.shape[1] // 2, grid.shape[0] // 2), Image.LANCZOS)
    canvas = Image.new("RGB", (im.width + 143, im.height), "white")
    canvas.paste(im, (0, 0))
    canvas.paste(Image.fromarray(_u8(style)).resize((135, 135), Image.LANCZOS), (im.width + 4, 0))
    canvas.save(path, quality=85)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="flicker,speed,smoothing,default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "video.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    style = samples.photo("chelsea", dtype=torch.float32)
    shots_style = samples.photo("astronaut", dtype=torch.float32)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()}-core {platform.processor() or 'x86_64'}",
              "torch": torch.__version__, "load_average_at_start": os.getloadavg()[0]}
    if os.path.exists(args.out):
        with open(args.out) as f:
            result = {**json.load(f), **result}
    with tempfile.TemporaryDirectory() as tmp:
        for part, baseline in (("flicker", True), ("fixed", False)):    # "fixed": without the per-frame runs
            if part not in parts:
                continue
            result[part] = []
            for name, (frames, cuts), st in (("pan", pan_clip(), style), ("shots", shots_clip(), shots_style)):
                for masks in ("none", "auto"):
                    r = measure(name, frames, cuts, st, masks, per_frame_baseline=baseline)
                    r["threads"] = args.threads
                    print(json.dumps(r), flush=True)
                    result[part].append(r)
        if "smoothing" in parts:
            result["smoothing"] = {**smoothing_cost(style), "threads": args.threads}
            print(json.dumps(result["smoothing"]), flush=True)
        if "default" in parts:
            result["default_method"] = {**default_method_cost(style), "threads": args.threads}
            print(json.dumps(result["default_method"]), flush=True)
        if "sheet" in parts:
            sheet()
        if "shots" in parts:
            result["per_shot"] = {"runs": per_shot(shots_style), "threads": args.threads}
        if "ray" in parts:
            sp = os.path.join(tmp, "style.png")
            from dpst_ext.image_io import save_image
            save_image(style, sp)
            result["ray"] = ray_speed(sp, tmp)
        if "speed" in parts:
            sp = os.path.join(tmp, "style.png")
            from dpst_ext.image_io import save_image
            save_image(style, sp)
            result["speed"] = [{**r, "threads": args.threads} for r in speed(sp, tmp)]
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
