"""Many photos in one look: ``dpst batch`` and ``dpst_ext.batch(...)``, on Ray.

    dpst batch photos/ --style look.jpg -o styled/ --method fast          # a folder (or globs, or files)
    dpst batch --manifest items.csv -o styled/                            # content, style, masks, output, options

1. Items: content photos with one style (a folder, globs or files), or a manifest (CSV or JSON Lines) with
   one row per item: content, style, optional content_mask / style_mask and output, and any option of
   ``dpst transfer`` for that item under its command-line name (``size``, ``iters``, ``max-output``, ...).
   Options given to the command apply to every item; a row's own options change only that item.
2. Every item is checked before Ray starts (files exist and open, output writable and not shared, options
   valid, memory fits): a bad item is reported at once with a one-line reason, the others go on.
3. A resume log in the output folder (``.dpst-batch-state.jsonl``) holds, per finished output, a key of its
   inputs (paths, sizes, modification times) and of the options that made it, and the output's size and
   modification time. A rerun skips items whose key and output still match, and redoes the rest (a changed
   option, input or output). Outputs are written atomically (a temporary file renamed), so an output is
   complete or absent; the log is appended after the output exists, a torn last line is ignored.
4. Ray runs the items: an embedded local Ray by default (``ray.init`` with this machine's cores), or a
   cluster by ``address``. Each worker is an actor (num_cpus = threads, num_gpus = 1 on CUDA, memory = the
   largest item's estimate) that builds VGG-19 once and serves many items; an item whose worker dies (a
   crash, the OOM killer) is retried on the restarted worker (max_task_retries), then reported as failed.
   Items go to whichever worker is free (ray.wait over the actor calls); Ray places, restarts and retries.

``workers=0`` runs the items one after another in this process, without Ray (for debugging).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import glob
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .options import TransferOptions
from .ray_workers import one_line, plan_workers, ray_session, require_ray, run_on_actors

__all__ = ["batch", "BatchSummary", "Item", "collect_items", "STATE_NAME", "SUMMARY_NAME"]

STATE_NAME = ".dpst-batch-state.jsonl"     # the resume log, in the output folder
SUMMARY_NAME = "dpst-batch-summary.json"   # the default summary path, in the output folder
# What a folder input picks up (HEIC/HEIF read through pillow-heif: image_io.heif_support).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif")
PATH_COLUMNS = ("content", "style", "content_mask", "style_mask", "output")
# Peak RSS of one worker process serving a 700 px photo with the default method (VGG-19, the automatic
# masks, 50 L-BFGS iterations at 384 px): 1.05 GiB measured 2026-12-03 (2-core Xeon, torch 2.13.0 CPU);
# scaled by the working pixels for other sizes. The full-size step has its own estimate (engine.memory).
OPTIMISE_BYTES, OPTIMISE_PIXELS = int(1.05 * 2**30), 384 * 256
FAST_BYTES = int(0.85 * 2**30)   # the same for --method fast (no optimisation): 0.84 GiB measured


@dataclass
class Item:
    """One photo to style. ``options`` are the item's (unresolved: the method's recipe fills the rest in the
    worker, as for dpst transfer); ``segmenter`` is a MODULE:FUNCTION spec each worker loads."""

    content: str
    style: str
    output: str
    content_mask: str | None = None
    style_mask: str | None = None
    options: TransferOptions = field(default_factory=TransferOptions)
    segmenter: str | None = None
    segmenter_mapping: dict | None = None
    save_masks: bool = False
    where: str = ""           # "line 3 of items.csv" or the content path, for messages
    key: str = ""             # the resume key (inputs and options); set by check_item
    memory: int = 0           # bytes the item needs at its peak; set by check_item

    def record(self, **extra) -> dict:
        return {"content": self.content, "style": self.style, "output": self.output, **extra}


@dataclass
class BatchSummary:
    """What a batch did: ``done``, ``skipped`` (already done with the same options) and ``failed`` (with a
    one-line ``reason`` each), as lists of {content, style, output, ...}."""

    total: int = 0
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0
    threads: int = 0
    address: str | None = None
    interrupted: bool = False
    summary_path: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["photos_per_minute"] = round(60 * len(self.done) / self.seconds, 2) if self.seconds > 0 else None
        return d

    def line(self) -> str:
        rate = f", {60 * len(self.done) / self.seconds:.1f} photos/min" if self.done and self.seconds > 0 else ""
        how = f" on {self.workers} worker{'s' * (self.workers != 1)} x {self.threads} thread" \
              f"{'s' * (self.threads != 1)}" if self.workers else " in this process"
        return (f"{len(self.done)} done, {len(self.skipped)} skipped (already done), {len(self.failed)} failed "
                f"of {self.total} in {self.seconds:.1f}s{rate}{how if self.done else ''}")


# ---- Items ---------------------------------------------------------------------------------------------

class _RowParser(argparse.ArgumentParser):
    """The transfer options of one manifest row: errors raise ValueError instead of exiting."""

    def error(self, message):
        raise ValueError(message)


@functools.lru_cache(maxsize=1)
def _row_parser() -> _RowParser:
    from .cli import add_transfer_options

    p = _RowParser(prog="row", add_help=False)
    add_transfer_options(p)
    # Only what a row gives: every default is SUPPRESS, so options_from_args changes nothing else.
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return p


def _switch(key, value) -> bool:
    v = value if isinstance(value, bool) else str(value).strip().lower()
    if v in (True, "true", "yes", "1", "on"):
        return True
    if v in (False, "false", "no", "0", "off"):
        return False
    raise ValueError(f"option {key!r} is a switch: give true or false, got {value!r}")


def _row_argv(row: dict, parser: argparse.ArgumentParser) -> list[str]:
    """A manifest row's options as command-line arguments: {"max-output": 800, "no-local-affine": true} (JSON
    Lines) or the same as CSV cells ("800", "yes"); empty cells are not given. A switch set to false gives
    its opposite where there is one (auto-masks: false is --no-auto-masks, local-affine: false --no-local-affine)."""
    flags = {s: a for a in parser._actions for s in a.option_strings}
    argv = []
    for key, value in row.items():
        if value is None or value == "":
            continue
        name = str(key).strip().lstrip("-").replace("_", "-")
        action = flags.get("--" + name)
        if action is not None and action.nargs != 0:     # an option with a value
            argv += ["--" + name, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
            continue
        opposite = name[3:] if name.startswith("no-") else "no-" + name
        if action is None and "--" + opposite not in flags:
            raise ValueError(f"unknown option {key!r} (options are dpst transfer's, e.g. method, size, iters)")
        chosen = "--" + (name if _switch(key, value) else opposite)
        if chosen in flags:
            argv.append(chosen)
    return argv


def _expand_inputs(inputs) -> list[str]:
    """Content photos from folders (their image files, sorted), globs and file paths, in order, once each."""
    found = []
    for spec in [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs):
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            names = sorted(n for n in os.listdir(spec) if n.lower().endswith(IMAGE_SUFFIXES)
                           and not n.startswith("."))
            if not names:
                raise ValueError(f"input folder {spec} has no photos ({', '.join(IMAGE_SUFFIXES)})")
            found += [os.path.join(spec, n) for n in names]
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec))
            if not matches:
                raise ValueError(f"input pattern {spec!r} matches no file")
            found += matches
        else:
            found.append(spec)    # a missing file is reported as a failed item
    return list(dict.fromkeys(found))


def _read_manifest(path: str) -> list[tuple[str, dict]]:
    """(where, row) per item of a CSV (with a header row) or JSON Lines manifest."""
    if not os.path.isfile(path):
        raise ValueError(f"manifest not found: {path}")
    rows = []
    name = os.path.basename(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        if path.lower().endswith(".csv"):
            reader = csv.DictReader(f)
            if not reader.fieldnames or "content" not in [c.strip() for c in reader.fieldnames]:
                raise ValueError(f"manifest {path}: the first row must name the columns, with at least content "
                                 f"and style (found {reader.fieldnames})")
            for row in reader:
                if None in row:
                    raise ValueError(f"manifest {path} line {reader.line_num}: more cells than columns")
                rows.append((f"line {reader.line_num} of {name}", {k.strip(): v.strip() if isinstance(v, str)
                                                                  else v for k, v in row.items()}))
        elif path.lower().endswith((".jsonl", ".ndjson", ".json")):
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"manifest {path} line {n} is not JSON: {e}") from None
                if not isinstance(row, dict):
                    raise ValueError(f"manifest {path} line {n} must be a JSON object, got {type(row).__name__}")
                rows.append((f"line {n} of {name}", row))
        else:
            raise ValueError(f"manifest must be .csv or .jsonl (JSON Lines), got {path}")
    if not rows:
        raise ValueError(f"manifest {path} has no items")
    return rows


def _output_name(template: str, content: str, style: str, index: int, fmt: str | None) -> str:
    stem = Path(content).stem
    try:
        name = template.format(stem=stem, style=Path(style).stem, index=index)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"name template {template!r} may use {{stem}}, {{style}} and {{index}} ({e})") from None
    suffix = ("." + fmt.lower().lstrip(".")) if fmt else (Path(content).suffix.lower() or ".png")
    return name + suffix


def collect_items(inputs=None, style=None, manifest=None, *, output_dir, options: TransferOptions | None = None,
                  name: str = "{stem}", format: str | None = None, segmenter: str | None = None,
                  segmenter_mapping: dict | None = None, save_masks: bool = False) -> tuple[list[Item], list[dict]]:
    """The items of a batch and the rows that could not become one (their failure records). Raises ValueError
    when the batch as a whole is wrong (no input, a manifest that cannot be read)."""
    from .cli import load_mapping, options_from_args

    base = options if options is not None else TransferOptions()
    if (inputs is None) == (manifest is None):
        raise ValueError("give content photos (a folder, globs or files) with a style, or a manifest, not both")
    items, failed = [], []

    def make(where, content, style_path, output, row_options=None, cmask=None, smask=None):
        opts, seg, mapping = base, segmenter, segmenter_mapping
        if row_options:
            ns = _row_parser().parse_args(_row_argv(row_options, _row_parser()))
            if "device" in vars(ns):
                raise ValueError("device is the workers': give it for the whole batch, not per item")
            opts = options_from_args(ns, base)
            seg = getattr(ns, "segmenter", seg)
            if getattr(ns, "segmenter_mapping", None) is not None:
                mapping = load_mapping(ns.segmenter_mapping)
        return Item(content, style_path, output, cmask, smask, opts, seg, mapping, save_masks, where)

    if manifest is not None:
        root = os.path.dirname(os.path.abspath(manifest))
        for index, (where, row) in enumerate(_read_manifest(os.fspath(manifest))):
            row = dict(row)
            nested = row.pop("options", None)     # JSON Lines may also nest them: {"options": {"size": 512}}
            if isinstance(nested, dict):
                row.update(nested)
            # Inputs relative to the manifest's folder, outputs to the output folder.
            paths = {k: (os.fspath(v) if v not in (None, "") else None) for k in PATH_COLUMNS
                     for v in [row.pop(k, None)]}
            for k in ("content", "style", "content_mask", "style_mask"):
                if paths[k]:
                    paths[k] = os.path.join(root, paths[k])
            content = paths["content"] or ""
            style_path = paths["style"] or (os.fspath(style) if style else "")
            try:
                if not content:
                    raise ValueError("no content photo (column content)")
                if not style_path:
                    raise ValueError("no style photo (column style, or --style for every row)")
                out = os.path.join(output_dir, paths["output"] or _output_name(name, content, style_path, index,
                                                                                 format))
                items.append(make(where, content, style_path, out, row, paths["content_mask"], paths["style_mask"]))
            except ValueError as e:
                failed.append({"content": content, "style": style_path, "output": None, "reason": f"{where}: {e}"})
    else:
        if style is None:
            raise ValueError("a folder or list of content photos needs --style (one style photo for all)")
        for index, content in enumerate(_expand_inputs(inputs)):
            out = os.path.join(output_dir, _output_name(name, content, os.fspath(style), index, format))
            items.append(make(content, content, os.fspath(style), out))
    return items, failed



# ---- Checks before any work ----------------------------------------------------------------------------

# Options that do not change the output image: left out of the resume key.
_NOT_IN_KEY = ("threads", "memory_budget", "local_affine_every", "segmenter", "segmenter_mapping")


def _image_size(path: str, what: str) -> tuple[int, int]:
    """(width, height) from the file's header: the file exists and Pillow can open it."""
    from .image_io import open_image_file

    if not os.path.isfile(path):
        raise ValueError(f"{what} not found: {path}")
    try:
        with open_image_file(path) as im:
            return im.size
    except Exception as e:  # Pillow raises several types for bad files
        raise ValueError(f"{what} {path} cannot be read as an image ({one_line(e)})") from None


def _identity(path: str | None):
    """What the resume key knows of an input file: its path, size and modification time."""
    if path is None:
        return None
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def item_memory(width: int, height: int, opts: TransferOptions) -> int:
    """Bytes one worker needs at its peak for a content photo of width x height with the resolved ``opts``:
    the optimisation (or the closed form) at the working size, measured and scaled by its pixels, or the
    full-size step's estimate (engine.memory) when larger."""
    from .engine.memory import estimate_highres_bytes

    long_side = max(width, height)
    out_side = min(long_side, opts.max_output or long_side)
    work_side = min(opts.size, out_side)
    if opts.output_size == "working":
        out_side = work_side
    work_px = width * height * (work_side / long_side) ** 2
    if sum(opts.iters) > 0 or opts.init != "transport":
        need = OPTIMISE_BYTES * max(1.0, work_px / OPTIMISE_PIXELS)
    else:
        need = FAST_BYTES * max(1.0, work_px / (700 * 467))
    if out_side > work_side:
        s = out_side / long_side
        need = max(need, estimate_highres_bytes(max(1, round(height * s)), max(1, round(width * s)),
                                                smoothing=opts.smoothing, working_pixels=int(work_px)))
    return int(need)


@functools.lru_cache(maxsize=None)
def _checked_segmenter(spec: str) -> None:
    """Whether --segmenter SPEC imports (ValueError names the problem); the workers load it again."""
    from .cli import load_segmenter

    load_segmenter(spec)


def check_item(item: Item) -> None:
    """Everything about one item that can be known before running it; sets item.key and item.memory.
    Raises ValueError naming the problem."""
    from . import __version__
    from .image_io import output_target

    width, height = _image_size(item.content, "content photo")
    _image_size(item.style, "style photo")
    for what, path in (("content mask", item.content_mask), ("style mask", item.style_mask)):
        if path is not None:
            _image_size(path, what)
    if (item.content_mask is None) != (item.style_mask is None):
        raise ValueError("give both content_mask and style_mask, or neither")
    try:
        opts = item.options.resolved()
    except TypeError as e:
        raise ValueError(str(e)) from None
    if item.content_mask is not None and (opts.auto_masks or item.segmenter):
        raise ValueError("auto-masks / segmenter compute the masks: do not also give content_mask/style_mask")
    if item.segmenter is not None:
        _checked_segmenter(item.segmenter)
    if opts.vgg_weights is not None:
        if not isinstance(opts.vgg_weights, (str, os.PathLike)):
            raise ValueError("vgg_weights must be a path in a batch (each worker loads it)")
        if not os.path.isfile(opts.vgg_weights):
            raise ValueError(f"vgg weights file not found: {opts.vgg_weights}")
    out = Path(item.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)      # the folder the user asked for
    except OSError as e:
        raise ValueError(f"output folder {out.parent} cannot be created ({e.strerror})") from None
    target, _ = output_target(out)   # format, writability, no directory or special file (image_io's rules)
    inputs = {os.path.abspath(p) for p in (item.content, item.style, item.content_mask, item.style_mask) if p}
    if os.path.abspath(target) in inputs:
        raise ValueError(f"output {out} is one of the item's inputs")
    seg = item.segmenter
    seg_file = seg.rpartition(":")[0] if seg else ""
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in _NOT_IN_KEY}
    ident = {"version": __version__, "options": options, "content": _identity(item.content),
             "style": _identity(item.style), "content_mask": _identity(item.content_mask),
             "style_mask": _identity(item.style_mask),
             "vgg_weights": _identity(os.fspath(opts.vgg_weights)) if opts.vgg_weights else None,
             "segmenter": [seg, _identity(seg_file) if seg_file.endswith(".py") else None, item.segmenter_mapping],
             "save_masks": item.save_masks}
    item.key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:32]
    item.memory = item_memory(width, height, opts)


# ---- Resume log ----------------------------------------------------------------------------------------

def _write_atomic(path: Path, text: str) -> None:
    from .image_io import atomic_output

    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class _State:
    """The resume log: one JSON line per finished output {output, key, size, mtime_ns}, the last one for an
    output counting. Appended (and synced) after the output is written; a torn line is skipped."""

    def __init__(self, folder: Path):
        self.path = folder / STATE_NAME
        self.records = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                        r = json.loads(line)
                        self.records[r["output"]] = r

    def _matches(self, r: dict) -> bool:
        try:
            st = os.stat(r["output"])
        except OSError:
            return False
        return st.st_size == r["size"] and st.st_mtime_ns == r["mtime_ns"] and all(map(os.path.isfile,
                                                                                   r.get("masks", ())))

    def complete(self, item: Item) -> bool:
        r = self.records.get(os.path.abspath(item.output))
        return r is not None and r["key"] == item.key and self._matches(r)

    def compact(self) -> None:
        """Rewrite the log with only the records whose output is still as it was written."""
        self.records = {k: r for k, r in self.records.items() if self._matches(r)}
        if self.path.exists() or self.records:
            _write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records.values()))

    def add(self, item: Item, masks=()) -> None:
        out = os.path.abspath(item.output)
        st = os.stat(out)
        r = {"output": out, "key": item.key, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "masks": [os.path.abspath(m) for m in masks]}
        self.records[out] = r
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _remove_stale_temporaries(output: str) -> None:
    """save_image's temporary files of ``output`` left by a process killed mid-write (SIGKILL, power loss)."""
    p = Path(output)
    for tmp in glob.glob(os.path.join(glob.escape(str(p.parent)), f".{glob.escape(p.name)}.*.tmp")):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ---- Workers -------------------------------------------------------------------------------------------

class _Worker:
    """Serves items one at a time: a Ray actor (one process each), or in this process with workers=0.
    VGG-19 and the segmenters are built once per worker and kept."""

    def __init__(self, threads: int | None, own_process: bool = True):
        import torch

        from .engine.memory import reuse_freed_memory

        if threads:
            torch.set_num_threads(threads)
        if own_process:
            reuse_freed_memory()   # process-wide, as the CLI does: a worker is a process of its own
        self._vggs, self._segmenters = {}, {}

    def _vgg(self, opts: TransferOptions):
        from .transfer import vgg_for

        key = (opts.style_layers, opts.content_layer, str(opts.vgg_weights), opts.device)
        if key not in self._vggs:
            self._vggs[key] = vgg_for(opts)
        return self._vggs[key]

    def run(self, item: Item) -> dict:
        """{"ok": True, "seconds", "size", "masks"} or {"ok": False, "reason"}: an item's error is its own."""
        from .masks import save_masks
        from .cli import load_segmenter, mask_paths
        from .image_io import photo_exif, save_image
        from .transfer import run_transfer

        t0 = time.perf_counter()
        try:
            opts = item.options
            if item.segmenter:
                if item.segmenter not in self._segmenters:
                    self._segmenters[item.segmenter] = load_segmenter(item.segmenter)
                opts = dataclasses.replace(opts, segmenter=self._segmenters[item.segmenter],
                                           segmenter_mapping=item.segmenter_mapping)
            opts = opts.resolved()
            result = run_transfer(item.content, item.style, item.content_mask, item.style_mask, options=opts,
                                  vgg=self._vgg(opts))
            save_image(result.image, item.output, exif=photo_exif(item.content))
            masks = []
            if item.save_masks and result.content_labels is not None:
                masks = [str(p) for p in save_masks(result.content_labels, result.style_labels,
                                                    *mask_paths(item.output))]
        except Exception as e:  # noqa: BLE001 - one item's failure, whatever it is, must not stop the others
            reason = one_line(e)
            if not isinstance(e, (ValueError, FileNotFoundError, MemoryError)):
                reason = f"{type(e).__name__}: {reason}"
            return {"ok": False, "reason": reason}
        return {"ok": True, "seconds": round(time.perf_counter() - t0, 3), "masks": masks,
                "size": [int(result.image.shape[2]), int(result.image.shape[1])], "pid": os.getpid()}


# ---- The batch -----------------------------------------------------------------------------------------

def batch(inputs=None, style=None, *, manifest=None, output_dir, options: TransferOptions | None = None,
          name: str = "{stem}", format: str | None = None, workers: int | None = None, threads: int | None = None,
          address: str | None = None, summary: str | None = None, save_masks: bool = False,
          segmenter: str | None = None, segmenter_mapping: dict | None = None, verbose: bool = False,
          quiet: bool = False, **changes) -> BatchSummary:
    """Style many photos; returns a BatchSummary (also written as JSON to ``summary``, default
    OUTPUT_DIR/dpst-batch-summary.json).

    ``inputs``: content photos (a folder, a glob, a path, or a list of them) with one ``style`` photo; or
    ``manifest``: a CSV or JSON Lines file (module docstring). Outputs go to ``output_dir`` as ``name``
    (a template of {stem}, {style}, {index}) with the extension ``format`` (default: the content's).
    Transfer options: ``options`` (TransferOptions) and/or its fields as keywords (method="fast", ...).
    ``workers`` x ``threads`` (default: chosen from the cores, or the cluster's CPUs); ``workers=0``: in
    this process, no Ray. ``address``: "auto" or "ray://HOST:PORT" for a Ray cluster (the inputs and the
    output folder at the same paths on every node). ``segmenter``: "MODULE:FUNCTION" or "file.py:FUNCTION".
    Rerunning skips items already done with the same inputs and options."""
    t0 = time.perf_counter()
    fields = {f.name for f in dataclasses.fields(TransferOptions)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r}; options are {sorted(fields)}")
    opts = dataclasses.replace(options if options is not None else TransferOptions(), **changes)
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (in this process) or more, got {workers}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if segmenter is not None and not isinstance(segmenter, str):
        raise TypeError("segmenter must be 'MODULE:FUNCTION' or 'file.py:FUNCTION' in a batch (each worker "
                        f"loads it), got {type(segmenter).__name__}")
    if workers != 0:
        require_ray("dpst batch", "batch")
    out_dir = Path(output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the output folder {out_dir}: {e.strerror}") from None
    summary_path = Path(summary) if summary else out_dir / SUMMARY_NAME
    items, failed = collect_items(inputs, style, manifest, output_dir=str(out_dir), options=opts, name=name,
                                  format=format, segmenter=segmenter, segmenter_mapping=segmenter_mapping,
                                  save_masks=save_masks)
    result = BatchSummary(total=len(items) + len(failed), address=address, summary_path=str(summary_path))
    report = _Report(result, quiet, verbose)
    for f in failed:
        report.fail(f)
    # Every item checked before any work: inputs open, options valid, outputs writable and each its own.
    from .engine.memory import GiB, available_bytes

    limit = available_bytes() if address is None and workers != 0 else None
    ready, owners = [], {}
    for item in items:
        try:
            check_item(item)
            owner = owners.setdefault(os.path.abspath(item.output), item.where)
            if owner != item.where:
                raise ValueError(f"output {item.output} is also {owner}'s: give each item its own output")
            if limit is not None and item.memory > limit:
                raise ValueError(f"needs about {item.memory / GiB:.1f} GiB, {limit / GiB:.1f} GiB available: cap "
                                 "the output size (max-output) or turn the full-size smoothing off")
            ready.append(item)
        except (ValueError, OSError) as e:
            report.fail(item.record(reason=f"{item.where}: {one_line(e)}"))
    report.state = _State(out_dir)
    report.state.compact()
    todo = []
    for item in ready:
        if report.state.complete(item):
            result.skipped.append(item.record())
        else:
            todo.append(item)
    if result.skipped:
        report.say(f"{len(result.skipped)} of {len(ready)} already done with the same inputs and options: skipped")
    try:
        for item in todo:
            _remove_stale_temporaries(item.output)
        if todo and workers == 0:
            worker = _Worker(threads, own_process=False)
            for item in todo:
                report.finished(item, worker.run(item))
        elif todo:
            _run_batch_on_ray(todo, opts.device, workers, threads, address, report)
    except KeyboardInterrupt:
        result.interrupted = True
        report.say("interrupted: the finished items are recorded; rerun the same command to resume")
    finally:
        report.close()
    result.seconds = round(time.perf_counter() - t0, 3)
    _write_atomic(summary_path, json.dumps(result.as_dict(), indent=1) + "\n")
    if not quiet:
        sys.stderr.write(f"dpst: {result.line()}; summary in {summary_path}\n")
        for f in result.failed:
            sys.stderr.write(f"  failed: {f['reason']}\n")
    return result


class _Report:
    """The summary as it fills, the resume log, and what a person sees: each failure at once, the bar, a
    line per finished item with -v."""

    def __init__(self, result: BatchSummary, quiet: bool, verbose: bool):
        self.result, self.quiet, self.verbose = result, quiet, verbose
        self.state: _State | None = None
        self.bar = None

    def say(self, line: str) -> None:
        if not self.quiet:
            (self.bar.write if self.bar is not None else lambda t: sys.stderr.write(t + "\n"))(f"dpst: {line}")

    def fail(self, record: dict) -> None:
        self.result.failed.append(record)
        self.say(f"failed: {record['reason']}")

    def start_bar(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="photo", desc="dpst batch", file=sys.stderr, disable=self.quiet,
                        dynamic_ncols=True)

    def finished(self, item: Item, r: dict) -> None:
        if r["ok"]:
            self.state.add(item, r.get("masks", ()))
            self.result.done.append(item.record(seconds=r["seconds"]))
            if self.verbose:
                self.say(f"done {item.output} ({r['size'][0]}x{r['size'][1]}) in {r['seconds']:.1f}s")
        else:
            self.fail(item.record(reason=f"{item.where}: {r['reason']}"))
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_batch_on_ray(todo: list[Item], device: str, workers: int | None, threads: int | None,
                      address: str | None, report: _Report) -> None:
    """Start (or join) Ray, size the workers to its resources, run ``todo`` on them, stop what was started."""
    from .engine.memory import GiB

    with ray_session(address, report.verbose) as ray:
        res = ray.cluster_resources()
        gpu = device.startswith("cuda") or (device == "auto" and res.get("GPU", 0) > 0)
        if gpu:
            workers = workers or max(1, int(res.get("GPU", 0)))
            threads = threads or max(1, int(res.get("CPU", 1)) // workers)
        else:
            workers, threads = plan_workers(len(todo), int(res.get("CPU", 1)), workers, threads)
        # Ray would wait for ever for a worker no node can hold: such items fail here.
        node_memory = max(n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive"))
        for item in [i for i in todo if i.memory > node_memory]:
            todo.remove(item)
            report.fail(item.record(reason=f"{item.where}: needs about {item.memory / GiB:.1f} GiB, the largest "
                                           f"Ray node offers {node_memory / GiB:.1f} GiB: cap the output size "
                                           "(max-output)"))
        if not todo:
            return
        memory = max(item.memory for item in todo)
        workers = max(1, min(workers, int(res.get("memory", memory) // memory)))
        report.result.workers, report.result.threads = workers, threads
        report.say(f"{len(todo)} to do on {workers} worker{'s' * (workers != 1)} x {threads} "
                   f"thread{'s' * (threads != 1)} ({'Ray at ' + address if address else 'local Ray'})")
        report.start_bar(len(todo))
        try:
            run_on_actors(_Worker, workers, todo, report.finished, args=(threads,), num_cpus=threads,
                          num_gpus=1 if gpu else 0, memory=memory)
        finally:
            report.close()
