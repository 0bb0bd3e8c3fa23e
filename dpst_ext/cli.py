"""The ``dpst`` command.

    dpst transfer CONTENT STYLE -o OUT [--content-mask M --style-mask M] [--size PX] [--iters N1,N2] ...
                  [--output-size full|working] [--max-output PX] [--smoothing off|fast|exact]
    dpst transfer CONTENT STYLE -o OUT       # no masks given: automatic ones, written to OUT_content_mask.png
                                             # and OUT_style_mask.png (--no-auto-masks: one label)
    dpst masks CONTENT STYLE -o OUT          # only those automatic masks (seconds): inspect or repaint them,
                                             # then dpst transfer ... --content-mask/--style-mask
    dpst transfer|masks ... --segmenter my_parser.py:segment [--segmenter-mapping groups.json]
                                             # masks from your own segmentation model instead
    dpst batch PHOTOS... --style S -o FOLDER  # many photos in one look, on Ray (dpst_ext.batch); or
    dpst batch --manifest items.csv -o FOLDER #   one row per item: content, style, masks, output, options
    dpst video IN STYLE -o OUT.mp4 [--masks auto|none|FILE] [--start S --end S] [--max-output PX]
                                             # a clip in the photo's look, without flicker (docs/video.md)

The optimisation runs at the working size (--size); OUT has the content photo's own size (capped by
--max-output) unless --output-size working. Progress goes to stderr (one line per stage, updated in
place on a terminal). Ctrl-C writes the best image so far to OUT and exits with status 130 (SIGTERM: the
same, status 143); a signal that arrives while an output is being written waits until it is. Bad input,
or a full-size output that will not fit in memory (checked before any work): a one-line message and
exit status 2. Every output is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import threading
import time
import warnings

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130        # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143         # SIGTERM, handled as Ctrl-C


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line ('dpst transfer: error: argument --size: must be ...'), not the usage text."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_BAD_INPUT)


def _option_strings(parser: argparse.ArgumentParser, with_value: bool = False) -> set[str]:
    """The options of every subcommand (only those that take a value, with ``with_value``)."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= {o for a in sub._actions if a.nargs != 0 or not with_value for o in a.option_strings}
    return found


def _join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--iters -1,2`` as ``--iters=-1,2``: argparse would take '-1,2' for an option and say only 'expected
    one argument'; joined, the option's own check explains the rule."""
    takes_value = _option_strings(parser, with_value=True)
    out = []
    for a in argv:
        if out and out[-1] in takes_value and re.fullmatch(r"-[\d.][\d.,eE+-]*", a):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def _iters(text: str):
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be N1,N2 (two integers), got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"must be N1,N2 (two non-negative integers), got {text!r}")
    return tuple(parts)


def _count(text: str):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return v


def _positive_int(text: str):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dpst", description="Deep Photo Style Transfer (Luan et al. 2017).")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transfer", help="transfer the style of one photo onto another",
                       description="Photorealistic style transfer. --method default: the content's colours "
                                   "transported label by label onto the style's, smoothed by the matting "
                                   "Laplacian, then refined by the Deep Photo Style Transfer objective; fast: "
                                   "the closed form alone (seconds); reference: the paper's recipe (noise start, "
                                   "1000 + 1000 L-BFGS iterations; tens of minutes on a CPU). --size, --iters, "
                                   "--init, --stage1-size and --[no-]local-affine override the method's recipe.")
    _add_photo_pair(t, "output image path (format from the extension)")
    t.add_argument("--format", default=None, metavar="FMT",
                   help="image format of the output (png, jpeg, tiff, webp, ...) when its extension does not say")
    t.add_argument("--content-mask", help="colour-coded segmentation of the content photo")
    t.add_argument("--style-mask", help="colour-coded segmentation of the style photo")
    t.add_argument("--save-every", type=_positive_int, default=None, metavar="N",
                   help="also write the current image to OUTPUT every N iterations")
    t.add_argument("--save-stage1", default=None, metavar="PATH", help="also write stage 1's output")
    _add_threads_and_quiet(t, "no progress output")
    add_transfer_options(t)

    m = sub.add_parser("masks", help="only compute the automatic masks, to inspect or repaint before a transfer",
                       description="Co-segment CONTENT and STYLE into shared labels and write them as the 9-colour "
                                   "masks that `dpst transfer CONTENT STYLE -o OUTPUT` would compute and use: "
                                   "OUT_content_mask.png and OUT_style_mask.png beside OUTPUT (OUTPUT itself is "
                                   "not written; a transfer capped by --max-output computes them on the "
                                   "downscaled content instead). Repaint them if needed, then pass them with "
                                   "--content-mask/--style-mask.")
    _add_photo_pair(m, "the output path a later transfer will use; the masks are named after it")
    m.add_argument("--auto-k", type=_positive_int, default=None, metavar="K",
                   help="number of labels (default: up to 8, merged as in dpst transfer)")
    m.add_argument("--seed", type=int, default=0, help="seed of the clustering (default 0, as dpst transfer)")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    m.add_argument("--vgg-weights", default=None, metavar="PATH",
                   help="VGG-19 state dict (torchvision or our names) instead of the bundled weights")
    _add_threads_and_quiet(m, "no messages")
    _add_segmenter_arguments(m)

    b = sub.add_parser("batch", help="style many photos in one look, on Ray (this machine, or a cluster)",
                       description="Style many content photos: a folder, globs or files with one --style photo, or "
                                   "a --manifest (CSV or JSON Lines: content, style, content_mask, style_mask, "
                                   "output, and any transfer option per item by its name, e.g. size, iters, "
                                   "max-output). The transfer options below apply to every item. Runs on an "
                                   "embedded local Ray (or --address); each worker loads VGG-19 once. Every item "
                                   "is checked before any work; a rerun skips the items already done with the same "
                                   "inputs and options (a log in the output folder). Exit status 0 when every item "
                                   "is done, 1 when some failed (reasons in the summary), 2 for a bad command.")
    b.add_argument("inputs", nargs="*", help="content photos: folders (their image files), globs or files")
    b.add_argument("--style", help="the style photo for every content photo (with a manifest: for rows without one)")
    b.add_argument("--manifest", metavar="FILE", help="CSV (header row) or JSON Lines (.jsonl), one item per row")
    b.add_argument("-o", "--output", required=True, metavar="FOLDER",
                   help="output folder (created); also holds the resume log and the summary")
    b.add_argument("--name", default="{stem}", metavar="TEMPLATE",
                   help="output file name: {stem} (the content's name), {style} (the style's), {index} "
                        "(default {stem}; a manifest's output column wins)")
    b.add_argument("--format", metavar="EXT", help="output format by extension, e.g. png, jpg, tif (default: the "
                                                   "content's own)")
    b.add_argument("--save-masks", action="store_true",
                   help="also write each item's automatic masks beside its output (OUT_content_mask.png, ...)")
    b.add_argument("--summary", metavar="PATH",
                   help="where the summary JSON goes (default FOLDER/dpst-batch-summary.json)")
    b.add_argument("-v", "--verbose", action="store_true", help="a line per finished item, and the workers' logs")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    r = b.add_argument_group("Ray", "Default: a local Ray on this machine, workers x threads <= its cores (one "
                                    "thread per worker; memory per worker from the largest item's estimate).")
    r.add_argument("--workers", type=_count, default=None,
                   help="worker processes (0: one after another in this process, without Ray, for debugging)")
    r.add_argument("--threads", type=_positive_int, default=None, help="CPU threads per worker")
    r.add_argument("--address", default=None, metavar="ADDR",
                   help="auto (the Ray cluster this node belongs to) or ray://HOST:PORT; inputs and outputs "
                        "must be at the same paths on every node")
    add_transfer_options(b)
    _add_video_parser(sub)
    return p


def _add_photo_pair(p, output_help: str):
    p.add_argument("content", help="content photo (PNG, JPEG, ...)")
    p.add_argument("style", help="style photo")
    p.add_argument("-o", "--output", required=True, help=output_help)


def _add_threads_and_quiet(p, quiet_help: str):
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch")
    p.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def add_transfer_options(parser):
    """The options of one transfer (method, sizes, weights, masks mode, automatic masks, segmenter, output
    resolution): `dpst transfer` takes them once, `dpst batch` for the whole batch and per item in a
    manifest. options_from_args turns them into TransferOptions."""
    from .options import INITS, METHODS, RECIPES, LossWeights, TransferOptions

    opts, w = TransferOptions(), LossWeights()

    def recipe(key, fmt=str):
        return ", ".join(f"{m} {fmt(RECIPES[m][key])}" for m in METHODS)

    t = parser.add_argument_group("transfer options")
    t.add_argument("--method", choices=METHODS, default=opts.method,
                   help=f"default (the best measured result; 30-60 s per photo, up to 12 MP, on 2 CPU cores), "
                        f"fast or reference (default {opts.method})")
    t.add_argument("--size", type=_positive_int, default=None,
                   help=f"long side in px of the working resolution (by method: {recipe('size')})")
    t.add_argument("--iters", type=_iters, default=None, metavar="N1,N2",
                   help="L-BFGS iterations of stage 1 and stage 2 (by method: "
                        f"{recipe('iters', lambda v: ','.join(map(str, v)))})")
    t.add_argument("--stage1-size", type=_positive_int, default=None, metavar="PX",
                   help="coarse-to-fine: run stage 1 at this long side, then upsample (saves CPU time)")
    t.add_argument("--init", choices=INITS, default=None,
                   help="the optimisation starts from noise (the reference), the content, the content "
                        "recoloured by a Gaussian map per label (colour) or the closed form (transport) "
                        f"(by method: {recipe('init')})")
    t.add_argument("--device", default=opts.device, choices=["auto", "cpu", "cuda"], help=f"default {opts.device}")
    t.add_argument("--seed", type=int, default=opts.seed, help=f"random seed (default {opts.seed})")
    t.add_argument("--content-weight", type=float, default=w.content, help=f"default {w.content:g}")
    t.add_argument("--style-weight", type=float, default=w.style, help=f"default {w.style:g}")
    t.add_argument("--tv-weight", type=float, default=w.tv, help=f"default {w.tv:g}")
    t.add_argument("--photoreal-weight", "--lambda", dest="photoreal_weight", type=float, default=w.photoreal,
                   help=f"lambda of the matting-Laplacian term (default {w.photoreal:g})")
    t.add_argument("--local-affine", action=argparse.BooleanOptionalAction, default=None,
                   help="the reference's smooth local affine post-processing at the end (by method: "
                        f"{recipe('local_affine', lambda v: 'on' if v else 'off')})")
    t.add_argument("--refine-posterization", action="store_true",
                   help="after smoothing, put the content's fine detail back under a guided filter "
                        "(out = GF(result) + content - GF(content), radius 8, eps 0.01) against banding")
    t.add_argument("--local-affine-every", type=_count, default=opts.local_affine_every, metavar="N",
                   help=f"smooth local affine previews every N stage-2 iterations (default {opts.local_affine_every}: "
                        "end only)")
    t.add_argument("--mask-mode", choices=["nearest", "reference"], default="nearest",
                   help="nearest palette colour (tolerant) or the reference's channel thresholds")
    t.add_argument("--orphans", choices=["restrict", "keep"], default="restrict",
                   help="content labels missing from the style: no style target (restrict, the paper) "
                        "or an empty target (keep, the reference code)")
    t.add_argument("--vgg-weights", default=None, metavar="PATH",
                   help="VGG-19 state dict (torchvision or our names) instead of the bundled weights")
    # Automatic masks (issue 6).
    t.add_argument("--auto-masks", action=argparse.BooleanOptionalAction, default=None,
                   help="without --content-mask/--style-mask: co-segment content and style into shared labels "
                        "and save them beside OUTPUT as OUT_content_mask.png / OUT_style_mask.png "
                        "(repaint and pass back with --content-mask/--style-mask); on by default, "
                        "--no-auto-masks: one label for the whole photo")
    t.add_argument("--auto-k", type=_positive_int, default=None, metavar="K",
                   help="number of automatic labels (default: up to 8; labels too small for a style, or "
                        "alike in colour in both photos, are merged, and one label is used when the labels "
                        "do not agree with what the photos' features match)")
    _add_segmenter_arguments(parser)
    _add_output_arguments(parser)


# Options of add_transfer_options whose TransferOptions field has another name or unit.
_WEIGHT_DESTS = {"content_weight": "content", "style_weight": "style", "tv_weight": "tv",
                 "photoreal_weight": "photoreal"}


def options_from_args(args, base):
    """``base`` (a TransferOptions) with the transfer options found in ``args`` (a namespace of
    add_transfer_options; a partial one, as a manifest row gives, changes only what it holds). The
    segmenter options are left to _segmenter_from_args (loading user code is the caller's decision)."""
    import dataclasses

    given = vars(args)
    fields = {f.name for f in dataclasses.fields(base)}
    own = ("segmenter", "segmenter_mapping", "threads")
    changes = {k: v for k, v in given.items() if k in fields and k not in own}
    weights = {_WEIGHT_DESTS[k]: v for k, v in given.items() if k in _WEIGHT_DESTS}
    if weights:
        changes["weights"] = dataclasses.replace(base.weights, **weights)
    if "max_memory" in given:
        changes["memory_budget"] = None if given["max_memory"] is None else int(given["max_memory"] * 2**30)
    return dataclasses.replace(base, **changes)


def _add_video_parser(sub):
    """``dpst video``: the fast method on a clip, without flicker (dpst_ext/video.py, docs/video.md)."""
    v = sub.add_parser("video", help="a video clip in the look of a photo, without flicker (fast method)",
                       description="Stylise a video clip with the fast method, stable over time: colour maps are "
                                   "fitted on keyframes of each shot (cuts are detected) and interpolated between "
                                   "them; automatic labels (--masks auto) stay the same across a shot. Keeps the "
                                   "frame rate, size and audio; H.264 output, written atomically. Resumable: "
                                   "finished chunks stay in OUTPUT.parts/ and rerunning the same command continues; "
                                   "Ctrl-C writes the frames done so far to OUTPUT. Needs "
                                   'PyAV: pip install "dpst_ext[video]". See docs/video.md.')
    v.add_argument("input", help="input video (any format FFmpeg reads: MP4, MOV, MKV, WebM, ...)")
    v.add_argument("style", help="style photo")
    v.add_argument("-o", "--output", required=True, help="output video: .mp4, .mov or .mkv")
    v.add_argument("--method", choices=["fast", "default"], default="fast",
                   help="fast (the only one offered for video); default is refused: the per-frame VGG "
                        "refinement took 52 s per 256x144 frame and changed more between frames (docs/video.md)")
    v.add_argument("--masks", default="none", metavar="none|auto|FILE",
                   help="none: one label (default; measured closer to the style and steadier than auto, "
                        "docs/video.md); auto: automatic labels of each shot's first frame, carried to its other "
                        "frames by colour; FILE: a colour-coded content mask for every frame (resized to the "
                        "frames; same aspect ratio), with --style-mask")
    v.add_argument("--style-mask", default=None, metavar="FILE", help="the style's mask, with --masks FILE")
    v.add_argument("--start", type=float, default=None, metavar="S", help="first second of the input to process")
    v.add_argument("--end", type=float, default=None, metavar="S", help="second of the input to stop at")
    v.add_argument("--max-output", type=_positive_int, default=None, metavar="PX",
                   help="cap on the output's long side (default: the input's size)")
    v.add_argument("--keyframe-seconds", type=float, default=1.0, metavar="S",
                   help="seconds between keyframes whose colour maps are interpolated (default 1)")
    v.add_argument("--cut-threshold", type=float, default=0.4, metavar="D",
                   help="histogram distance between consecutive frames (0..1) that starts a new shot (default 0.4)")
    v.add_argument("--smoothing", choices=["off", "fast"], default="off",
                   help="matting smoothing of every frame, warm-started from the previous frame: off (default) "
                        "or fast (tens of seconds per 720p frame)")
    v.add_argument("--chunk-frames", type=_positive_int, default=48, metavar="N",
                   help="frames per chunk, the unit of resuming (default 48)")
    v.add_argument("--crf", type=int, default=18, help="H.264 quality, 0..51, lower is better (default 18)")
    v.add_argument("--auto-k", type=_positive_int, default=None, metavar="K", help="number of automatic labels")
    v.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_threads_and_quiet(v, "no progress output")
    r = v.add_argument_group("Ray", 'The chunks on Ray workers (pip install "dpst_ext[video,batch]"); the plan '
                                    "(pass 1) stays in this process. --threads is then per worker.")
    r.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes rendering chunks on an embedded local Ray (default: none, all in this "
                        "process; with --address: as many as the cluster's CPUs allow)")
    r.add_argument("--address", default=None, metavar="ADDR",
                   help="auto (the Ray cluster this node belongs to) or ray://HOST:PORT; the input and OUTPUT.parts/ "
                        "must be at the same paths on every node")


def _run_video(args, sigs: _Signals) -> int:
    _print_warnings_briefly()
    if not os.path.isfile(args.input):
        return _fail(f"input video not found: {args.input}")
    mask_file = args.masks not in ("auto", "none")
    try:
        _check_files(args, ("style", "style_mask") + (("masks",) if mask_file else ()))
    except ValueError as e:
        return _fail(str(e))
    if args.method == "default":
        from .video import VIDEO_DEFAULT_REFUSED

        return _fail(VIDEO_DEFAULT_REFUSED)
    try:
        from .video import VideoInterrupted, VideoOptions, stylize_video
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        opts = dict(method=args.method, masks=args.masks, style_mask=args.style_mask, start=args.start, end=args.end,
                    max_output=args.max_output, keyframe_seconds=args.keyframe_seconds,
                    cut_threshold=args.cut_threshold, smoothing=args.smoothing, chunk_frames=args.chunk_frames,
                    crf=args.crf, auto_k=args.auto_k, seed=args.seed)
        VideoOptions(**opts).checked()
    except (ImportError, ValueError) as e:
        return _fail(str(e).splitlines()[0])
    t0 = time.perf_counter()
    try:
        r = stylize_video(args.input, args.style, args.output, progress=not args.quiet, workers=args.workers,
                          threads=args.threads, address=args.address, **opts)
    except VideoInterrupted as e:
        if e.frames:
            sys.stderr.write(f"\ndpst: interrupted; wrote the first {e.frames} of {e.total} frames to {args.output} "
                             "(rerun the same command to continue)\n")
        else:
            sys.stderr.write("\ndpst: interrupted before a chunk was finished; nothing written\n")
        return sigs.stopped()
    except KeyboardInterrupt:
        sys.stderr.write("\ndpst: interrupted; nothing written\n")
        return sigs.stopped()
    except (FileNotFoundError, ValueError, TypeError, ImportError, RuntimeError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if not args.quiet:
        t = r["timings"]
        resumed = f", {r['resumed_frames']} frames from an earlier run" if r["resumed_frames"] else ""
        sys.stderr.write(f"dpst: wrote {args.output} ({r['size'][0]}x{r['size'][1]}, {r['frames']} frames at "
                         f"{float(r['rate']):.3g} fps, {r['shots']} shot(s), {r['keyframes']} keyframes{resumed}"
                         + (f", on {r['workers']} Ray workers x {r['threads']} thread{'s' * (r['threads'] != 1)}"
                            if r["workers"] else "") + ") in "
                         f"{time.perf_counter() - t0:.1f}s (decode {t['decode']:.1f}s, analysis {t['analysis']:.1f}s, "
                         f"transport {t['transport']:.1f}s, smoothing {t['smoothing']:.1f}s, encode "
                         f"{t['encode']:.1f}s)\n")
    return 0


def _add_segmenter_arguments(t):
    g = t.add_argument_group("your own segmenter",
                             "Masks from your segmentation model instead of the co-segmentation: a Python function "
                             "that takes a (3, H, W) float tensor in 0..1 and returns an (H, W) integer class map "
                             "(numpy or torch), called on the content and on the style photo.")
    g.add_argument("--segmenter", default=None, metavar="MODULE:FUNCTION",
                   help="the function, as package.module:function (importable, or a module in the current "
                        "folder) or path/to/file.py:function")
    g.add_argument("--segmenter-mapping", default=None, metavar="JSON",
                   help='a JSON object {class id: group name or null} (inline, or a path to a .json file) that '
                        'merges classes into groups, e.g. \'{"21": "water", "26": "water", "60": "water"}\'; '
                        "null unlabels a class, unmapped classes are their own group; at most 9 groups")


def load_segmenter(spec: str):
    """The function named by ``spec``: 'package.module:function' (importable; the current folder is
    searched first, as ``python -m`` would) or 'path/to/file.py:function'. ValueError names the problem.
    Errors raised by the module's own code while it is imported are not caught: they are the user's."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--segmenter must be MODULE:FUNCTION or FILE.py:FUNCTION, got {spec!r}")
    if module_name.endswith(".py"):
        if not os.path.isfile(module_name):
            raise ValueError(f"--segmenter file not found: {module_name}")
        found = importlib.util.spec_from_file_location("_dpst_user_segmenter", module_name)
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            raise ValueError(f"--segmenter module {module_name!r} cannot be imported: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"--segmenter: {module_name} has no function {attr!r}")
    return fn


def load_mapping(text: str) -> dict:
    """--segmenter-mapping: a JSON object {class id: group or null}, inline or in a file, to {int: group}."""
    is_file = os.path.isfile(text)
    source = "file " + text if is_file else "value"
    try:
        if is_file:
            with open(text, encoding="utf-8") as f:
                raw = json.load(f)
        else:
            raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--segmenter-mapping {source} is not valid JSON ({e}): give an object "
                         f'{{"class id": "group", ...}} or the path of a .json file holding one') from None
    if not isinstance(raw, dict):
        raise ValueError(f"--segmenter-mapping must be a JSON object {{class id: group}}, got a {type(raw).__name__}")
    mapping = {}
    for key, group in raw.items():
        try:
            cls = int(key)
        except ValueError:
            raise ValueError(f"--segmenter-mapping keys must be integer class ids, got {key!r}") from None
        if group is not None and not isinstance(group, (str, int)):
            raise ValueError(f"--segmenter-mapping groups must be names (strings), integers or null, got "
                             f"{group!r} for class {cls}")
        mapping[cls] = group
    return mapping


def _segmenter_from_args(args):
    """(segmenter, mapping) from --segmenter/--segmenter-mapping: (None, None) when not given."""
    if args.segmenter is None:
        if args.segmenter_mapping is not None:
            raise ValueError("--segmenter-mapping needs --segmenter (the mapping is for that model's classes)")
        return None, None
    if args.auto_k is not None:
        raise ValueError("--auto-k is the number of automatic labels: with --segmenter the model's classes "
                         "(and --segmenter-mapping) decide the labels")
    mapping = None if args.segmenter_mapping is None else load_mapping(args.segmenter_mapping)
    return load_segmenter(args.segmenter), mapping


def mask_paths(output: str) -> tuple[str, str]:
    """Where automatic masks are saved for OUTPUT: OUT_content_mask.png and OUT_style_mask.png beside it."""
    root, _ = os.path.splitext(output)
    return root + "_content_mask.png", root + "_style_mask.png"


def _gib(text: str):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of GiB, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of GiB, got {text!r}")
    return v


def _add_output_arguments(t):
    from .options import RECIPES, SMOOTHING, TransferOptions

    opts = TransferOptions()
    g = t.add_argument_group("output resolution",
                             "The optimisation runs at --size; the result is carried to the content's own size "
                             "by local affine upsampling and the closed-form matting smoothing "
                             "(dpst_ext.engine.highres). "
                             "The memory this needs is checked before any work.")
    g.add_argument("--output-size", choices=["full", "working"], default=opts.output_size,
                   help="full: the content photo's own size (default); working: the --size result, as before")
    g.add_argument("--max-output", type=_positive_int, default=None, metavar="PX",
                   help="cap on the output's long side (the content is downscaled to it first)")
    g.add_argument("--smoothing", choices=SMOOTHING, default=None,
                   help="full-resolution matting smoothing: off, fast (CG to a relative residual of 1e-3) or "
                        "exact (1e-6) (by method: " + ", ".join(f"{m} {r['smoothing']}" for m, r in RECIPES.items())
                        + ")")
    g.add_argument("--max-memory", type=_gib, default=None, metavar="GIB",
                   help="memory the full-resolution step may use (default: what the OS reports available)")


def _fail(msg: str) -> int:
    sys.stderr.write(f"dpst: error: {msg}\n")
    return EXIT_BAD_INPUT


def _print_warnings_briefly():
    """Warnings as one 'dpst: warning: ...' line each on stderr (no file and line of the source)."""
    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(f"dpst: warning: {message}\n")

    warnings.showwarning = show


class _Signals:
    """SIGTERM handled as Ctrl-C (the best image is kept; exit status 143), and both held back while an
    output is being written, so that a write once begun completes. Active inside ``with``; a no-op off the
    main thread (Python delivers signals to the main thread only)."""

    def __init__(self):
        self.received = None       # the last signal that stopped or will stop the command
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._terminate)}
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _terminate(self, signum, frame):
        self.received = signal.SIGTERM
        raise KeyboardInterrupt

    def status(self) -> int:
        return EXIT_TERMINATED if self.received == signal.SIGTERM else EXIT_INTERRUPTED

    def stopped(self):
        """Record Ctrl-C (a KeyboardInterrupt that no SIGTERM raised); returns the exit status."""
        if self.received is None:
            self.received = signal.SIGINT
        return self.status()

    @contextlib.contextmanager
    def held(self):
        """Signals that arrive inside are recorded, not raised; ``self.received`` tells afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def record(signum, frame):
            self.received = signum

        old = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def _as_flags(message: str, flags: set[str]) -> str:
    """A TransferOptions message ('weights.photoreal must be ...', 'stage1_size must ...') in the command's
    words ('--photoreal-weight must be ...', '--stage1-size must ...')."""
    m = re.match(r"(weights\.)?(\w+)\b", message)
    if m:
        flag = f"--{m.group(2)}-weight" if m.group(1) else "--" + m.group(2).replace("_", "-")
        if flag in flags:
            return flag + message[m.end():]
    return message


def _check_files(args, names) -> None:
    """Every input file given is there and is a file (ValueError naming the first that is not)."""
    for name in names:
        path = getattr(args, name, None)
        label = name.replace("_", " ")
        if path is None:
            continue
        if os.path.isdir(path):
            raise ValueError(f"{label} {path} is a directory: give the path of a file")
        if not os.path.isfile(path):
            raise ValueError(f"{label} file not found: {path}")


def _check_outputs(args, inputs, outputs) -> None:
    """Every output can be written (image_io.output_target) and overwrites none of the inputs."""
    from .image_io import output_target

    given = [(n.replace("_", " "), getattr(args, n)) for n in inputs if getattr(args, n, None)]
    for label, path, fmt in outputs:
        target, _ = output_target(path, fmt, label)
        for what, src in given:
            if target.exists() and os.path.samefile(target, src):
                raise ValueError(f"{label} {path} would overwrite the {what}: choose another file name")


def _run_masks(args, sigs: _Signals) -> int:
    _print_warnings_briefly()
    inputs = ("content", "style", "vgg_weights")
    try:
        _check_files(args, inputs)
        cm, sm = mask_paths(args.output)
        _check_outputs(args, inputs, [("output", args.output, None), ("content mask output", cm, "png"),
                                      ("style mask output", sm, "png")])
    except ValueError as e:
        return _fail(str(e))
    import torch

    from .transfer import TransferOptions, auto_labels

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        segmenter, mapping = _segmenter_from_args(args)
        opts = TransferOptions(segmenter=segmenter, segmenter_mapping=mapping, auto_k=args.auto_k, seed=args.seed,
                               vgg_weights=args.vgg_weights, device=args.device)
        labels = auto_labels(args.content, args.style, opts)   # what a transfer would compute
    except KeyboardInterrupt:
        sys.stderr.write("\ndpst: interrupted; nothing written\n")
        return sigs.stopped()
    except (FileNotFoundError, ValueError, TypeError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    with sigs.held():
        _save_auto_masks(*labels, args)
    if sigs.received:
        sys.stderr.write("dpst: interrupted; the masks were written in full first\n")
        return sigs.status()
    if not args.quiet:
        sys.stderr.write(f"dpst: masks computed in {time.perf_counter() - t0:.1f}s\n")
    return 0


def _run_transfer(args, sigs: _Signals, flags: set[str]) -> int:
    # Heavy imports after argument parsing so --help and usage errors are instant.
    from .image_io import photo_exif, save_image
    from .engine.memory import InsufficientMemoryError, reuse_freed_memory
    from .progress import ProgressPrinter
    from .transfer import HighresProgress, TransferInterrupted, TransferOptions, run_transfer

    reuse_freed_memory()   # image-sized temporaries reuse the heap instead of fresh mmaps (engine/memory.py)
    _print_warnings_briefly()
    inputs = ("content", "style", "content_mask", "style_mask", "vgg_weights")
    try:
        _check_files(args, inputs)
        if args.auto_masks and (args.content_mask or args.style_mask):
            raise ValueError("--auto-masks computes the masks: do not also give --content-mask/--style-mask")
        if args.segmenter and (args.content_mask or args.style_mask or args.auto_masks is not None):
            raise ValueError("--segmenter computes the masks: do not also give --content-mask/--style-mask or "
                             "--auto-masks/--no-auto-masks")
        outputs = [("output", args.output, args.format)]
        if not (args.content_mask or args.style_mask) and args.auto_masks is not False:
            outputs += [("content mask output", mask_paths(args.output)[0], "png"),
                        ("style mask output", mask_paths(args.output)[1], "png")]
        if args.save_stage1:
            outputs.append(("--save-stage1", args.save_stage1, None))
        _check_outputs(args, inputs, outputs)
        segmenter, mapping = _segmenter_from_args(args)
        opts = options_from_args(args, TransferOptions(threads=args.threads))
        opts.segmenter, opts.segmenter_mapping = segmenter, mapping
        opts.resolved()            # every option check, before any work
    except ValueError as e:
        return _fail(_as_flags(str(e), flags))
    printer = ProgressPrinter(sys.stderr, args.quiet)
    exif = photo_exif(args.content)   # the content photo's camera, date, ... go with the output

    def callback(p):
        printer(p)
        if isinstance(p, HighresProgress):
            return
        if args.save_every and p.iteration % args.save_every == 0:
            save_image(p.preview if p.preview is not None else p.image(), args.output, args.format, exif)

    t0 = time.perf_counter()
    try:
        result = run_transfer(args.content, args.style, args.content_mask, args.style_mask, options=opts,
                              callback=callback)
    except TransferInterrupted as e:
        status = sigs.stopped()
        how = "terminated" if status == EXIT_TERMINATED else "interrupted"
        with sigs.held():
            _save_auto_masks(e.content_labels, e.style_labels, args)
            if e.image is None:
                sys.stderr.write(f"\ndpst: {how} before any image was computed; nothing written\n")
            elif e.stage == "highres":
                save_image(e.image, args.output, args.format, exif)
                sys.stderr.write(f"\ndpst: {how} during the full-size step (CG iteration {e.iteration}); wrote "
                                 f"the result upsampled without smoothing to {args.output}\n")
            else:
                save_image(e.image, args.output, args.format, exif)
                sys.stderr.write(f"\ndpst: {how} (stage {e.stage}, iteration {e.iteration}); "
                                 f"wrote the best image so far to {args.output}\n")
        return status
    except KeyboardInterrupt:
        status = sigs.stopped()
        sys.stderr.write("\ndpst: interrupted during setup; nothing written\n")
        return status
    except (FileNotFoundError, ValueError, TypeError, InsufficientMemoryError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    with sigs.held():   # a write once begun completes
        save_image(result.image, args.output, args.format, exif)
        _save_auto_masks(result.content_labels, result.style_labels, args)
        if args.save_stage1 and result.stage1 is not None:
            save_image(result.stage1, args.save_stage1)
    if sigs.received:
        sys.stderr.write(f"dpst: interrupted while writing; {args.output} was written in full first\n")
        return sigs.status()
    if not args.quiet:
        t = result.timings
        sys.stderr.write(f"dpst: wrote {args.output} ({result.image.shape[2]}x{result.image.shape[1]}) in "
                         f"{time.perf_counter() - t0:.1f}s (stage 1 {t.get('stage1', 0):.1f}s, stage 2 "
                         f"{t.get('stage2', 0):.1f}s, local affine {t.get('local_affine', 0):.1f}s" + _highres_summary(result) + ")\n")
    return 0


def _save_auto_masks(content_labels, style_labels, args):
    """Write the automatic masks (when there are any) beside the output, for the user to repaint."""
    if content_labels is None:
        return
    from .masks import save_masks

    cm, sm = save_masks(content_labels, style_labels, *mask_paths(args.output))
    if not args.quiet:
        n_labels = len(set(content_labels.unique().tolist()) - {-1})
        kind = "masks from --segmenter" if args.segmenter else "automatic masks"
        sys.stderr.write(f"dpst: {kind} ({n_labels} label{'' if n_labels == 1 else 's'}) written to {cm} and {sm}\n")


def _highres_summary(result) -> str:
    if not result.highres:
        return ""
    h = result.highres
    its = f", {h['smooth_iterations']} CG iterations" if "smooth_iterations" in h else ""
    return (f", full size from {result.working.shape[2]}x{result.working.shape[1]}: upsample "
            f"{h.get('upsample_seconds', 0):.1f}s, smoothing {h.get('smooth_seconds', 0):.1f}s{its}")


def _run_batch(args, sigs: _Signals) -> int:
    _print_warnings_briefly()
    if args.inputs and args.manifest:
        return _fail("give content photos or --manifest, not both")
    if not args.inputs and not args.manifest:
        return _fail("give content photos (folders, globs or files) with --style, or --manifest")
    from .options import TransferOptions

    try:
        _segmenter_from_args(args)   # checks --segmenter / --segmenter-mapping / --auto-k together
        mapping = None if args.segmenter_mapping is None else load_mapping(args.segmenter_mapping)
        from .batch import batch

        summary = batch(args.inputs or None, args.style, manifest=args.manifest, output_dir=args.output,
                        options=options_from_args(args, TransferOptions()), name=args.name, format=args.format,
                        workers=args.workers, threads=args.threads, address=args.address, summary=args.summary,
                        save_masks=args.save_masks, segmenter=args.segmenter, segmenter_mapping=mapping,
                        verbose=args.verbose, quiet=args.quiet)
    except (ImportError, ValueError, TypeError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if summary.interrupted:
        return sigs.stopped()
    return 0 if summary.ok else 1


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(_join_negative_values(parser, argv))
    show = warnings.showwarning
    try:
        with _Signals() as sigs:
            if args.command == "transfer":
                return _run_transfer(args, sigs, _option_strings(parser))
            if args.command == "masks":
                return _run_masks(args, sigs)
            if args.command == "batch":
                return _run_batch(args, sigs)
            if args.command == "video":
                return _run_video(args, sigs)
            return _fail(f"unknown command {args.command}")  # pragma: no cover - argparse rejects it first
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
