"""Video: a clip in a photo's look, without flicker (``dpst video``).

    >>> dpst_ext.stylize_video("clip.mp4", "style.jpg", "out.mp4")            # file in, file out
    >>> for frame in dpst_ext.video.stylize_frames(my_frames, "style.jpg", fps=25):
    ...     show(frame)                                                      # any iterable of frames

Only the fast method's colour transport is used, and it is made stable over time by construction:

1. **Shots.** Consecutive frames whose colour histograms (8^3 RGB bins, at ``analysis_size``) differ by
   more than ``cut_threshold`` in total variation start a new shot; nothing is shared across a cut.
2. **Labels** (``masks="auto"``): the first frame of each shot is co-segmented with the style
   (dpst_ext.transfer.auto_labels), and a colour model of those labels is kept for the whole shot: each
   label's share of every cell of a 33^3 grid of the RGB cube (counts blurred by 1.5 cells; cells no
   pixel reached take their nearest reached cell's shares). Every frame's labels are looked up from its
   colours, so a colour belongs to the same labels in every frame of a shot. A mask file
   (``masks=PATH`` with ``style_mask``) labels every frame the same way; ``masks="none"`` (the default)
   uses one label.
3. **Light.** Each frame's change of light from the previous one (a gain per RGB channel: exposure and
   white balance) is measured on the part of the scene both show, aligned by their global motion
   (light_change), and chained through the shot, so every frame's colours can be brought to any other
   frame's light. A pan that brings new things into view changes what the frame shows, not its light.
4. **Colour maps on keyframes.** Keyframes are every ``keyframe_seconds`` of a shot, plus its last frame.
   Each keyframe's maps (per label sliced optimal transport, dpst_ext.transport.fit_label_maps, as in the
   fast method for photos) are fitted on the colours pooled from the frames around it (``window``
   intervals either side, one by default, within the shot) brought to the keyframe's light, with the same
   random rotations for every keyframe, and tabulated as 33^3 lookup tables. With automatic labels the
   per-label tables are blended by the colour model into one table.
   **Between keyframes** each frame looks up its two keyframes' tables at its colours brought to their
   light, and blends the two linearly: the look follows the light exactly, changes with what the shot
   shows only as fast as the pooled colours do, and never jumps from one frame to the next.
5. **Each frame** goes through its table(s) at full size (one lookup per pixel). The matting-Laplacian
   smoothing of the photo method (``smoothing="fast"``, warm-started from the previous frame's solution)
   is optional and off by default: it costs tens of seconds per 720p frame and is not needed for
   stability (docs/video.md has the measurements).

``method="default"`` (the photo method's VGG refinement of every frame) is refused: see VIDEO_DEFAULT_REFUSED.

Files (``stylize_video``): decoding and encoding use PyAV (``pip install "dpst_ext[video]"``). A first
pass reads the clip at ``analysis_size`` and fits the plan (shots, labels, keyframe tables, each frame's
timestamp); the second renders chunks of ``chunk_frames`` frames with ``render_chunk`` (a plain function
of the chunk's frames, the shared tables and the options) and encodes each chunk as a segment file in
``OUT.parts/`` with a state file of the options: in this process, or with ``workers``/``address`` on Ray
workers, each seeking to its chunk's frames (the tables put in Ray's object store once). A rerun with
the same input, style and options renders only the chunks whose segment is missing. The output keeps the input's frame rate (constant,
at the stream's average rate), size (even dimensions, as H.264 needs) and audio (re-encoded as AAC), is
H.264 (libx264, CRF ``crf``; MPEG-4 Part 2 if PyAV's FFmpeg lacks libx264) and is written atomically.
Ctrl-C writes what is done (the finished chunks from the first on) as a playable OUT and raises
VideoInterrupted; the rerun continues.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import hdr
from .engine.highres import SMOOTHING_TOL
from .image_io import atomic_output, load_image, resize_long_side
from .options import RECIPES
from .transport import apply_label_luts, apply_lut, fit_label_maps

__all__ = ["VideoOptions", "VideoInterrupted", "stylize_video", "stylize_frames", "render_chunk", "Planner",
           "write_video", "parts_dir", "colour_label_model",
           "flicker", "global_shift", "global_motion", "VIDEO_DEFAULT_REFUSED", "MASK_MODES"]

LUT_SIZE = 33
LIGHT_SIZE = 128          # long side of the frames the light's change is measured on (light_change)
LIGHT_STEP_LIMITS = (0.8, 1.25)  # a frame-to-frame change of light beyond these gains is clamped (light_change)
MASK_MODES = ("auto", "none")
OUTPUT_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Why method "default" is not offered for video (measured 2026-12-03, benchmarks/video.py, docs/video.md).
VIDEO_DEFAULT_REFUSED = ("method 'default' (the VGG refinement of every frame) is not offered for video: it took 52 s "
                         "per 256x144 frame on a CPU (about 20 min per second of video) and its frames changed more "
                         "from one to the next than the fast method's (docs/video.md); use method 'fast'")


@dataclass
class VideoOptions:
    method: str = "fast"              # only "fast" (VIDEO_DEFAULT_REFUSED)
    masks: object = "none"            # "none", "auto", or a content mask (path, image) for every frame
                                      # (default "none": closer to the style and steadier than "auto" on the
                                      # measured clips, docs/video.md)
    style_mask: object = None         # the style's mask, needed with a content mask
    keyframe_seconds: float = 1.0     # colour maps are fitted this often within a shot and interpolated between
    window: float = 1.0               # a keyframe's map pools the frames this many intervals either side
    cut_threshold: float = 0.4        # histogram total-variation distance between frames that starts a new shot
    analysis_size: int = 512          # long side of the frames the plan is fitted on (cuts, labels, colours)
    style_size: int = RECIPES["fast"]["size"]   # long side of the style's colours (as the fast photo method)
    samples: int = 16384              # colours per label and keyframe for the sliced transport
    smoothing: str = "off"            # "off" or "fast": the matting smoothing of every frame (slow)
    max_output: int | None = None     # cap on the output's long side
    seed: int = 0
    auto_k: int | None = None         # number of automatic labels (None: up to automask.K_MAX, merged)
    chunk_frames: int = 48            # frames per chunk (a segment file; the unit of resuming)
    crf: int = 18                     # H.264 quality (lower is better; 18 is visually lossless for most clips)
    start: float | None = None        # seconds: the part of a file to process
    end: float | None = None

    def checked(self) -> "VideoOptions":
        o = dataclasses.replace(self)
        if o.method == "default":
            raise ValueError(VIDEO_DEFAULT_REFUSED)
        if o.method != "fast":
            raise ValueError(f"method must be 'fast' for video, got {o.method!r}")
        if isinstance(o.masks, str) and o.masks in MASK_MODES:
            if o.style_mask is not None:
                raise ValueError(f"style_mask goes with a content mask file; masks is {o.masks!r}")
        elif o.masks is None:
            raise ValueError("masks must be 'auto', 'none' or a content mask file")
        elif o.style_mask is None:
            raise ValueError("masks is a content mask: give style_mask (--style-mask) too, the style's labels")
        if not 0 <= o.window <= 8:
            raise ValueError(f"window must be 0..8 keyframe intervals, got {o.window}")
        if not o.keyframe_seconds > 0:
            raise ValueError(f"keyframe_seconds must be > 0, got {o.keyframe_seconds}")
        if not 0 < o.cut_threshold <= 1:
            raise ValueError(f"cut_threshold must be in (0, 1] (a total-variation distance), got {o.cut_threshold}")
        if o.analysis_size < 32 or o.style_size < 32:
            raise ValueError(f"analysis_size and style_size must be at least 32 px, got {o.analysis_size}, "
                             f"{o.style_size}")
        if o.samples < 256:
            raise ValueError(f"samples must be at least 256, got {o.samples}")
        if o.smoothing not in ("off", "fast"):
            raise ValueError(f"smoothing must be 'off' or 'fast' for video, got {o.smoothing!r}")
        if o.max_output is not None and o.max_output < 16:
            raise ValueError(f"max_output must be at least 16 px, got {o.max_output}")
        if o.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {o.chunk_frames}")
        if not 0 <= o.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {o.crf}")
        for name in ("start", "end"):
            v = getattr(o, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a time in seconds >= 0, got {v}")
        if o.end is not None and o.end <= (o.start or 0):
            raise ValueError(f"end ({o.end} s) must be after start ({o.start or 0} s)")
        return o


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during stylize_video: ``frames`` frames were written to ``path`` (0: nothing written);
    ``total`` frames in the clip. Rerunning the same call continues."""

    def __init__(self, path, frames: int, total: int):
        super().__init__(f"interrupted after {frames} of {total} frames")
        self.path, self.frames, self.total = path, frames, total


# ---- frames ---------------------------------------------------------------------------------------

def _as_uint8(frame, index: int) -> np.ndarray:
    """An (H, W, 3) uint8 array from a user's frame: (H, W, 3) uint8 or float 0..1 numpy, or a tensor
    (3, H, W) / (H, W, 3) (uint8, or float 0..1)."""
    if isinstance(frame, torch.Tensor):
        t = frame.detach().cpu()
        if t.dim() == 3 and t.shape[0] == 3 and t.shape[2] != 3:
            t = t.permute(1, 2, 0)
        frame = t.numpy()
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame {index} must be a numpy array or torch tensor, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame {index} must be (H, W, 3) RGB (or a (3, H, W) tensor), got shape {frame.shape}")
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        if not np.isfinite(frame).all():
            raise ValueError(f"frame {index} contains NaN or infinite values")
        return np.ascontiguousarray(np.clip(np.round(frame * 255), 0, 255).astype(np.uint8))
    raise ValueError(f"frame {index} must be uint8 or float 0..1, got dtype {frame.dtype}")


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1).to(torch.float32) / 255.0


def _thumb(frame: np.ndarray, size: int) -> torch.Tensor:
    t = _to_tensor(frame)
    return resize_long_side(t, size) if max(t.shape[1:]) > size else t


def _histogram(thumb: torch.Tensor) -> torch.Tensor:
    """Joint 8^3 RGB histogram, normalised to sum 1."""
    q = (thumb.clamp(0, 1) * 7.999).long()
    idx = (q[0] * 64 + q[1] * 8 + q[2]).reshape(-1)
    return torch.bincount(idx, minlength=512).to(torch.float64) / idx.numel()


def _pixels(img: torch.Tensor) -> torch.Tensor:
    return img.reshape(3, -1).T.to(torch.float64)


# ---- label models ---------------------------------------------------------------------------------

def _blur3(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (K, S, S, S) over the last three axes (zero padding)."""
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=t.dtype)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    out = t[:, None]
    for shape, pad in (((1, 1, -1, 1, 1), (0, 0, 0, 0, r, r)), ((1, 1, 1, -1, 1), (0, 0, r, r, 0, 0)),
                       ((1, 1, 1, 1, -1), (r, r, 0, 0, 0, 0))):
        out = F.conv3d(F.pad(out, pad), k.reshape(shape))
    return out[:, 0]


def colour_label_model(image: torch.Tensor, labels: torch.Tensor, k: int, sigma: float = 1.5) -> torch.Tensor:
    """Each label's share of every cell of a LUT_SIZE^3 grid of the RGB cube, (k, B, G, R) float32 (the
    layout of dpst_ext.transport.apply_lut): pixels of ``image`` (3, H, W) with ``labels`` (H, W) in 0..k-1
    (others ignored) counted per cell, blurred by ``sigma`` cells; cells no count reached take the shares
    of their nearest reached cell."""
    from scipy.ndimage import distance_transform_edt

    s = LUT_SIZE
    q = (image.clamp(0, 1) * (s - 1)).round().long().reshape(3, -1)
    flat = q[2] * s * s + q[1] * s + q[0]                            # cell [b, g, r]
    lab = labels.reshape(-1)
    keep = (lab >= 0) & (lab < k)
    counts = torch.zeros(k, s ** 3, dtype=torch.float64)
    counts.index_put_((lab[keep], flat[keep]), torch.ones(int(keep.sum()), dtype=torch.float64), accumulate=True)
    blurred = _blur3(counts.reshape(k, s, s, s), sigma)
    total = blurred.sum(0)
    reached = (total > 1e-3 * float(total.max())).numpy() if float(total.max()) > 0 else np.ones((s, s, s), bool)
    shares = blurred / total.clamp_min(1e-300)
    if not reached.all():
        _, nearest = distance_transform_edt(~reached, return_indices=True)
        shares = shares[:, nearest[0], nearest[1], nearest[2]]
    return shares.to(torch.float32).contiguous()


class _Labels:
    """What labels a frame's pixels: kind "none" (one label), "file" (the same masks on every frame:
    ``content`` (K, H, W) and ``style`` (K, Hs, Ws) MaskPair tensors) or "auto" (per shot: a colour model
    (K, S, S, S) and the style's masks)."""

    def __init__(self, kind: str, style_masks: torch.Tensor, content_masks: torch.Tensor | None = None,
                 model: torch.Tensor | None = None):
        self.kind, self.style_masks, self.content_masks, self.model = kind, style_masks, content_masks, model

    def weights(self, pixels: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Label weights (K, N) of a frame's pixels (N, 3) (N = H * W of shape ``hw``)."""
        if self.kind == "none":
            return pixels.new_zeros(0, len(pixels), dtype=torch.float64)
        if self.kind == "auto":
            return apply_lut(self.model, pixels).T.to(torch.float64)
        m = self.content_masks
        if tuple(m.shape[1:]) != tuple(hw):
            m = F.interpolate(m[None], size=tuple(hw), mode="nearest-exact")[0]
        return m.reshape(m.shape[0], -1).to(torch.float64)


# ---- the plan: shots, keyframes and their tables ---------------------------------------------------

class Planner:
    """Fits the colour tables of a clip frame by frame (module docstring, steps 1-4).

    ``observe(frame)`` for each frame in order, ``finish()`` at the end; ``frame_maps(i)`` is
    (a, b, s, shot, gain_a, gain_b) once frame i's two keyframes are fitted (render_chunk uses them),
    else None. ``tables[k]``: (R + 1, 3, S, S, S) float32, R the spatial labels of a mask file (0 for
    "auto" and "none", whose tables are one colour map each)."""

    def __init__(self, style, options: VideoOptions, fps: float, progress=None):
        self.o = options.checked()
        self.fps = float(fps)
        if not self.fps > 0 or not math.isfinite(self.fps):
            raise ValueError(f"fps must be a positive frame rate, got {fps}")
        self.interval = max(1, round(self.o.keyframe_seconds * self.fps))
        self.reach = max(0, round(self.o.window * self.interval))   # frames either side of a keyframe pooled
        self.style = load_image(style, "style")
        if max(self.style.shape[1:]) > self.o.style_size:
            self.style = resize_long_side(self.style, self.o.style_size)
        self.style_px = _pixels(self.style)
        self.file_masks = None
        if not (isinstance(self.o.masks, str) and self.o.masks in MASK_MODES):
            self.file_masks = _file_masks(self.o.masks, self.o.style_mask, tuple(self.style.shape[1:]))
        self.shots: list[dict] = []          # {"start", "end" (None while open), "labels": _Labels}
        self.shot_of: list[int] = []
        self.samples: dict[int, torch.Tensor] = {}   # frame -> (n, 3) float32 colours
        # frame -> (3,) float64 gains: gain * colour is the colour under the light of the frame's shot's first
        # frame (light_change, chained from frame to frame)
        self.light: dict[int, torch.Tensor] = {}
        # the previous frame at LIGHT_SIZE, and its light (its self.light entry may be gone: forget_before)
        self._small, self._last_light = None, None
        self.tables: dict[int, torch.Tensor] = {}
        self.fitted: set[int] = set()        # keyframes fitted (their tables may be forgotten since)
        self.size = None                     # (H, W) of the frames
        self._hist = None
        self._vgg = None
        self.cut_distances: list[float] = []  # distance of each frame to the previous one (0 for the first)

    # -- input
    def observe(self, frame: np.ndarray) -> None:
        i = len(self.shot_of)
        if self.size is None:
            self.size = frame.shape[:2]
        elif frame.shape[:2] != self.size:
            raise ValueError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]} px but the clip's frames are "
                             f"{self.size[1]}x{self.size[0]}: all frames must have one size")
        thumb = _thumb(frame, self.o.analysis_size)
        hist = _histogram(thumb)
        dist = 0.0 if self._hist is None else 0.5 * float((hist - self._hist).abs().sum())
        self._hist = hist
        self.cut_distances.append(dist)
        small = _thumb(frame, LIGHT_SIZE)
        if i == 0 or dist > self.o.cut_threshold:
            if self.shots:
                self.shots[-1]["end"] = i - 1
            self.shots.append({"start": i, "end": None, "labels": self._labels_for(thumb)})
            self.light[i] = torch.ones(3, dtype=torch.float64)
        else:       # frame i's colours -> the shot's first frame's light, through the previous frame's
            self.light[i] = self._last_light * light_change(self._small, small)
        self._small, self._last_light = small, self.light[i]
        self.shot_of.append(len(self.shots) - 1)
        gen = self._sample_generator(i)
        px = _pixels(thumb)
        per_frame = min(len(px), max(1024, math.ceil(4 * self.o.samples / (2 * self.reach + 1))))
        self.samples[i] = px[torch.randperm(len(px), generator=gen)[:per_frame]].to(torch.float32)
        self._fit_ready()

    def _sample_generator(self, i: int) -> torch.Generator:
        """Frame i's pixel draw, seeded by its place in its shot: a shot's maps depend on its frames alone."""
        return torch.Generator().manual_seed(int(self.o.seed) * 1000003 + i - self.shots[self.shot_of[i]]["start"])

    def finish(self) -> None:
        if self.shots and self.shots[-1]["end"] is None:
            self.shots[-1]["end"] = len(self.shot_of) - 1
        self._fit_ready()

    @property
    def frames(self) -> int:
        return len(self.shot_of)

    # -- labels
    def _labels_for(self, thumb: torch.Tensor) -> _Labels:
        if self.file_masks is not None:
            cm, sm = self.file_masks
            return _Labels("file", sm, content_masks=cm)
        if self.o.masks == "none":
            return _Labels("none", self.style_px.new_zeros(0, len(self.style_px)))
        from .automask import AUTO_LAYERS
        from .transfer import TransferOptions, auto_labels
        from .vgg import VGG19Features

        if self._vgg is None:
            self._vgg = VGG19Features(AUTO_LAYERS)
        cl, sl = auto_labels(thumb, self.style, TransferOptions(auto_k=self.o.auto_k, seed=self.o.seed),
                             vgg=self._vgg)
        ids = sorted((set(cl.unique().tolist()) & set(sl.unique().tolist())) - {-1})
        if len(ids) <= 1:
            return _Labels("none", self.style_px.new_zeros(0, len(self.style_px)))
        remap = torch.full((int(max(cl.max(), sl.max())) + 2,), -1, dtype=torch.int64)
        remap[torch.tensor(ids) + 1] = torch.arange(len(ids))
        cl, sl = remap[cl + 1], remap[sl + 1]
        model = colour_label_model(thumb, cl, len(ids))
        sm = torch.stack([(sl == k) for k in range(len(ids))]).reshape(len(ids), -1).to(torch.float64)
        return _Labels("auto", sm, model=model)

    # -- keyframes
    def keyframes(self, shot: dict) -> list[int]:
        """The keyframes of a shot known so far (its end only once it is known)."""
        s, e = shot["start"], shot["end"]
        last = e if e is not None else len(self.shot_of) - 1
        keys = list(range(s, last + 1, self.interval))
        if e is not None and keys[-1] != e:
            keys.append(e)
        return keys

    def _window(self, shot: dict, k: int) -> tuple[int, int] | None:
        """Frames whose colours fit keyframe k: within ``window`` intervals, inside the shot; None until seen."""
        lo = max(shot["start"], k - self.reach)
        hi = k + self.reach
        if shot["end"] is not None:
            hi = min(hi, shot["end"])
        elif hi > len(self.shot_of) - 1:
            return None
        return lo, hi

    def _fit_ready(self) -> None:
        for shot in self.shots[-2:]:
            for k in self.keyframes(shot):
                if k in self.fitted:
                    continue
                w = self._window(shot, k)
                if w is not None:
                    self.tables[k] = self._fit(shot, *w, k)
                    self.fitted.add(k)
        # colours no unfitted keyframe's window can need
        pending = [k for shot in self.shots[-1:] for k in self.keyframes(shot) if k not in self.fitted]
        first_needed = min(pending + [len(self.shot_of)]) - self.reach - 1
        for i in [i for i in self.samples if i < first_needed]:
            del self.samples[i]

    def _fit(self, shot: dict, lo: int, hi: int, k: int) -> torch.Tensor:
        """Keyframe k's tables, fitted on the colours of frames lo..hi brought to frame k's light."""
        labels: _Labels = shot["labels"]
        cp = torch.cat([(self.samples[i].to(torch.float64) * (self.light[i] / self.light[k])).clamp_(0.0, 1.0)
                        for i in range(lo, hi + 1)])
        if labels.kind == "file":
            cm = torch.cat([self._file_sample_weights(i) for i in range(lo, hi + 1)], 1)
        else:
            cm = labels.weights(cp, (len(cp), 1))
        sm = labels.style_masks
        maps, use = fit_label_maps(cp, self.style_px, cm, sm, samples=self.o.samples, seed=self.o.seed)
        tables = maps.lut(LUT_SIZE)
        if labels.kind == "auto":       # one table: the labels' tables blended by the colour model
            rows = tables[torch.tensor(use[1:])]                       # (K, 3, S, S, S)
            return (labels.model[:, None] * rows).sum(0)[None].contiguous()
        return tables[torch.tensor(use)].contiguous()                   # (R + 1, 3, S, S, S)

    def _file_sample_weights(self, i: int) -> torch.Tensor:
        """The mask's weights at frame i's sampled pixels: the samples are drawn as in observe()."""
        cm = self.file_masks[0]
        h, w = self.size
        th, tw = _thumb_size(h, w, self.o.analysis_size)
        m = F.interpolate(cm[None], size=(th, tw), mode="nearest-exact")[0].reshape(cm.shape[0], -1)
        idx = torch.randperm(th * tw, generator=self._sample_generator(i))[:len(self.samples[i])]
        return m[:, idx].to(torch.float64)

    # -- output
    def frame_maps(self, i: int):
        """(a, b, s, shot index, gain_a, gain_b) for frame i once its keyframes' tables are fitted, else None:
        its tables are lerp(tables[a], tables[b], s), each looked up at the frame's colours times gain_a
        (gain_b), which bring them to keyframe a's (b's) light (3 floats each)."""
        if i >= len(self.shot_of):
            return None
        si = self.shot_of[i]
        shot = self.shots[si]
        a = shot["start"] + (i - shot["start"]) // self.interval * self.interval
        if a == i:
            b = a
            if a not in self.tables:
                return None
        else:
            b = a + self.interval
            if shot["end"] is not None:
                b = min(b, shot["end"])
            elif b > len(self.shot_of) - 1:
                return None
            if a not in self.tables or b not in self.tables:
                return None
        s = 0.0 if a == b else (i - a) / (b - a)
        gain = [tuple((self.light[i] / self.light[k]).tolist()) for k in (a, b)]
        return a, b, s, si, gain[0], gain[1]

    def forget_before(self, i: int) -> None:
        """Drop the tables no frame from i on needs (a stream keeps memory bounded)."""
        keep = self.frame_maps(i)
        if keep is None:
            return
        for k in [k for k in self.tables if k < keep[0]]:
            del self.tables[k]
        first = min([keep[0]] + list(self.samples))      # a keyframe still to fit needs its frames' light
        for k in [k for k in self.light if k < first]:
            del self.light[k]


def _thumb_size(h: int, w: int, size: int) -> tuple[int, int]:
    if max(h, w) <= size:
        return h, w
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _file_masks(content_mask, style_mask, style_hw) -> tuple[torch.Tensor, torch.Tensor]:
    """(content masks (K, H, W) at the mask's own size, style masks (K, Hs * Ws)) from mask images."""
    from .masks import MaskPair, parse_mask, resize_labels

    cl = parse_mask(content_mask, None, name="content mask")
    sl = resize_labels(parse_mask(style_mask, None, name="style mask"), style_hw)
    pair = MaskPair.from_labels(cl, sl)
    return pair.content, pair.style.reshape(pair.style.shape[0], -1).to(torch.float64)


def _check_mask_aspect(masks: torch.Tensor, hw) -> None:
    mh, mw = masks.shape[1:]
    h, w = hw
    if abs(mw / mh - w / h) > 0.01 * (w / h):
        raise ValueError(f"content mask is {mw}x{mh} px but the frames are {w}x{h} px: a mask must have the "
                         f"frames' aspect ratio (it is resized to them)")


# ---- rendering (the unit of work a scheduler distributes) -----------------------------------------

@functools.lru_cache(maxsize=2)
def _cube_grid(n: int) -> torch.Tensor:
    """The (n^3, 3) RGB colours of an n^3 table's nodes, in the tables' (B, G, R) layout (R fastest)."""
    axis = torch.linspace(0, 1, n)
    b, g, r = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([r, g, b], -1).reshape(-1, 3)


def _relit(tables: torch.Tensor, gain) -> torch.Tensor:
    """(R + 1, 3, S, S, S) tables looked up at their grid's colours times ``gain`` (3 floats; clamped to the
    cube): the tables of a frame whose light differs from their keyframe's by that gain. None or 1: as is."""
    if gain is None or all(g == 1.0 for g in gain):
        return tables
    n = tables.shape[-1]
    grid = (_cube_grid(n) * torch.tensor(gain, dtype=torch.float32)).clamp_(0, 1)
    return torch.stack([apply_lut(t, grid).T.reshape(3, n, n, n) for t in tables])


def render_chunk(frames: list, maps: list, tables: dict, content_masks: torch.Tensor | None,
                 options: VideoOptions, timings: dict | None = None, warm_start=None, callback=None):
    """Stylise a chunk of frames with the clip's shared tables: a plain function, so chunks can run in any
    process. ``frames``: (H, W, 3) uint8 arrays; ``maps[j]`` = (a, b, s, shot, gain_a, gain_b) for frame j
    (Planner.frame_maps; without the gains, the tables are looked up at the frame's own colours);
    ``tables``: keyframe -> (R + 1, 3, S, S, S) (at least those the chunk uses);
    ``content_masks``: (R, H, W) for a mask file, else None. With smoothing, each frame's solution
    warm-starts the next frame's in the same shot; ``warm_start`` is the previous chunk's last (shot,
    solution) or None. Returns (the (H, W, 3) uint8 frames, the last (shot, solution) or None); adds
    seconds per step to ``timings`` ("transport", "smoothing"); ``callback()`` after each frame."""
    out, prev = [], warm_start
    t = timings if timings is not None else {}
    cm = None
    for frame, (a, b, s, shot, *gains) in zip(frames, maps):
        t0 = time.perf_counter()
        h, w = frame.shape[:2]
        if content_masks is not None and (cm is None or cm.shape[1] != h * w):
            m = content_masks if tuple(content_masks.shape[1:]) == (h, w) else \
                F.interpolate(content_masks[None], size=(h, w), mode="nearest-exact")[0]
            cm = m.reshape(m.shape[0], -1).to(torch.float64)
        ga, gb = gains if gains else (None, None)
        luts = _relit(tables[a], ga)
        if s != 0:
            luts = torch.lerp(luts, _relit(tables[b], gb), float(s))
        px = torch.from_numpy(frame).reshape(-1, 3).to(torch.float32) / 255.0
        if cm is None:
            y = apply_lut(luts[0], px)
        else:
            y = apply_label_luts(list(luts), px, cm, min_weight=1e-6).to(torch.float32)
        y = y.T.reshape(3, h, w).clamp_(0, 1)
        t1 = time.perf_counter()
        t["transport"] = t.get("transport", 0.0) + t1 - t0
        if options.smoothing == "fast":
            from .engine.smoothing import smooth

            x0 = prev[1] if prev is not None and prev[0] == shot and prev[1].shape == y.shape else y
            res = smooth(px.T.reshape(3, h, w), y, beta=0.9999, tol=SMOOTHING_TOL["fast"], normalize="interior",
                         x0=x0, laplacian_dtype=torch.float32, preconditioner="none")
            y = res.solution.to(torch.float32).clamp_(0, 1)
            prev = (shot, y)
            t["smoothing"] = t.get("smoothing", 0.0) + time.perf_counter() - t1
            t["smoothing_iterations"] = t.get("smoothing_iterations", 0) + res.iterations
        out.append((y * 255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy())
        if callback is not None:
            callback()
    return out, prev


def stylize_frames(frames: Iterable, style, fps: float = 30.0, **options) -> Iterator[np.ndarray]:
    """Stylise any iterable of frames ((H, W, 3) uint8 or float 0..1 arrays, (3, H, W) or (H, W, 3)
    tensors), yielding (H, W, 3) uint8 arrays in order. ``fps`` sets the keyframe spacing
    (options.keyframe_seconds); options as VideoOptions fields (masks, style_mask, max_output, ...).
    Frames are yielded once the keyframe after them is fitted: at most about 1 + ``window`` keyframe
    intervals of frames (2 by default) are held in memory."""
    opts = VideoOptions(**options).checked()
    planner = Planner(style, opts, fps)
    pending: deque = deque()
    cm, warm = None, [None]

    def ready(final=False):
        nonlocal cm
        while pending:
            i, frame = pending[0]
            m = planner.frame_maps(i)
            if m is None:
                if final:
                    raise RuntimeError(f"frame {i} has no colour maps after the end of the clip")  # pragma: no cover
                return
            pending.popleft()
            if planner.file_masks is not None and cm is None:
                _check_mask_aspect(planner.file_masks[0], frame.shape[:2])
                cm = planner.file_masks[0]
            frames, warm[0] = render_chunk([frame], [m], planner.tables, cm, opts, warm_start=warm[0])
            yield frames[0]
            planner.forget_before(i + 1)

    for i, f in enumerate(frames):
        frame = _as_uint8(f, i)
        if opts.max_output is not None and max(frame.shape[:2]) > opts.max_output:
            frame = _resize_frame(frame, opts.max_output)
        planner.observe(frame)
        pending.append((i, frame))
        yield from ready()
    planner.finish()
    yield from ready(final=True)


def _resize_frame(frame: np.ndarray, long_side: int) -> np.ndarray:
    t = resize_long_side(_to_tensor(frame), long_side)
    return (t * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


# ---- files ------------------------------------------------------------------------------------------

def _av():
    try:
        import av
    except ImportError:
        raise ImportError('video needs PyAV: pip install "dpst_ext[video]" (or pip install av tqdm)') from None
    return av


def _output_stream(container, codec: str, rate):
    """A video stream of ``container`` tagged BT.709 (matrix, primaries, transfer) with limited-range YUV:
    HD video's standard, and what players assume of an untagged HD stream. Its frames come from
    _output_frame, which converts with that matrix."""
    from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc, Colorspace
    s = container.add_stream(codec, rate=rate)
    cc = s.codec_context
    cc.colorspace, cc.color_range = Colorspace.ITU709, ColorRange.MPEG
    cc.color_primaries, cc.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
    return s


def _output_frame(frame: np.ndarray):
    """An (H, W, 3) uint8 RGB frame as the encoder's yuv420p, converted with the BT.709 matrix to limited range
    (_output_stream's tags). Left to the encoder, rgb24 would be converted with swscale's default BT.601
    matrix and the stream left untagged, so players, reading BT.709 for HD, would shift its colours."""
    return _av().VideoFrame.from_ndarray(frame, format="rgb24").reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")


def _video_codec() -> str:
    av = _av()
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - any failure means: not available
        return "mpeg4"


def _probe(path) -> dict:
    """The input's video stream facts, or ValueError (one line) if it is not a readable video."""
    av = _av()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input video not found: {path}")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise ValueError(f"input {path} holds no video stream")
            vs = c.streams.video[0]
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            if not rate or float(rate) <= 0:
                raise ValueError(f"input video {path} has no frame rate")
            first = next(c.decode(video=0), None)
            if first is None:
                raise ValueError(f"input video {path} holds no decodable frame")
            duration = float(c.duration / 1e6) if c.duration else None
            return {"width": first.width, "height": first.height, "rate": Fraction(rate),
                    "frames": vs.frames or None, "duration": duration, "audio": bool(c.streams.audio),
                    "colour": (int(first.color_trc), int(first.color_primaries))}
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(f"input {path} is not a readable video ({str(e).splitlines()[0]})") from None


def _output_size(w: int, h: int, max_output: int | None) -> tuple[int, int]:
    """(W, H) of the output: the input's, capped on the long side, rounded down to even numbers."""
    if max_output is not None and max(w, h) > max_output:
        s = max_output / max(w, h)
        w, h = round(w * s), round(h * s)
    return max(2, w - w % 2), max(2, h - h % 2)


def _decode(path, size: tuple[int, int], start: float | None, end: float | None, wanted=None):
    """(H, W, 3) uint8 frames of the file's first video stream with start <= time < end, at ``size`` (W, H);
    frames whose index i (from start) has ``wanted(i)`` false are decoded but not converted (yielded as
    None). Yields (frame, seconds of decoding and conversion, the frame's pts)."""
    av = _av()
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        rate = float(vs.average_rate or vs.guessed_rate)
        n = -1
        t0 = None
        tic = time.perf_counter()
        for i, frame in enumerate(c.decode(vs)):
            t = frame.time if frame.time is not None else i / rate
            if t0 is None:
                t0 = t
            t -= t0               # seconds from the first frame
            if start is not None and t < start - 0.5 / rate:
                continue
            if end is not None and t >= end - 0.5 / rate:
                break
            n += 1
            if wanted is not None and not wanted(n):
                yield None, 0.0, frame.pts
                tic = time.perf_counter()
                continue
            yield _rgb(frame, size), time.perf_counter() - tic, frame.pts       # decoding and conversion
            tic = time.perf_counter()


def _rgb(frame, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB at ``size`` (area resampling). YUV goes through the matrix and
    range its stream is tagged with (PyAV follows the tags); an untagged stream through BT.709 when taller
    than 576 lines and BT.601 otherwise (the rule of Microsoft's DXVA2 for an unknown matrix), so that
    the output (written as BT.709, _output_frame) looks like the input did, not like swscale's BT.601
    default would make it. HDR (PQ, HLG) and BT.2020 frames are brought to SDR BT.709 (dpst_ext.hdr; an
    untagged matrix is then BT.2020's)."""
    untagged = int(frame.colorspace) == 2               # AVCOL_SPC_UNSPECIFIED
    transfer, primaries = int(frame.color_trc), int(frame.color_primaries)
    if hdr.needs_conversion(transfer, primaries):         # HDR or BT.2020: read in 16 bits, brought to SDR BT.709
        rgb16 = frame.to_ndarray(width=size[0], height=size[1], format="rgb48le", interpolation="AREA",
                                 src_colorspace="BT2020" if untagged else None)
        return hdr.to_sdr(rgb16, transfer, primaries)
    matrix = ("ITU709" if frame.height > 576 else "ITU601") if untagged else None
    return frame.to_ndarray(width=size[0], height=size[1], format="rgb24", interpolation="AREA",
                            src_colorspace=matrix)


def _input_ended(path, got: int, wanted: int) -> ValueError:
    """The error for an input that ends before a frame its first pass counted (truncated or replaced since)."""
    return ValueError(f"input {path} ended after {got} of its {wanted} frames")


def _decode_range(path, size: tuple[int, int], start: float | None, end: float | None, lo: int, hi: int,
                  pts: list | None):
    """Frames lo..hi-1 of _decode(path, size, start, end), yielded as (frame, seconds). With their ``pts``
    (recorded by pass 1) the file is sought to the first (the keyframe before it) and frames are matched
    by pts; without, or if the seek lands past the first, decoded from the start."""
    av = _av()
    if pts is not None and None not in pts:
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            c.seek(int(pts[0]), stream=vs)
            j, tic = 0, time.perf_counter()
            for frame in c.decode(vs):
                if frame.pts is None or frame.pts < pts[j]:
                    continue
                if frame.pts != pts[j]:
                    if j == 0:
                        break                    # the seek went past: decode from the start below
                    raise ValueError(f"input {path} changed since it was read: no frame at pts {pts[j]}")
                yield _rgb(frame, size), time.perf_counter() - tic
                tic = time.perf_counter()
                j += 1
                if j == len(pts):
                    return
            if j:
                raise _input_ended(path, lo + j, hi)
    j = lo
    for frame, dt, _ in _decode(path, size, start, end, wanted=lambda i: lo <= i < hi):
        if frame is not None:
            yield frame, dt
            j += 1
            if j == hi:
                return
    raise _input_ended(path, j, hi)


def _write_segment(path: str, frames: list, rate: Fraction, size: tuple[int, int], crf: int) -> None:
    """One chunk's frames ((H, W, 3) uint8) as an MP4 file of their own, written atomically (a reader, or a
    rerun, sees the whole segment or none)."""
    av = _av()
    codec = _video_codec()
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format="mp4") as c:
        s = _output_stream(c, codec, rate)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.time_base = 1 / rate
        if codec == "libx264":
            # No B-frames: every packet's dts = pts, so segments join without timestamp overlaps. One thread:
            # x264's automatic threads now and then encoded the same frames differently (7 of 400 encodes of
            # a 4-frame chunk in two Ray workers, 2026-12-03); at 720p it measured no slower than them. One
            # thread is not always the same either: with more busy processes than cores, 35 of 26483 encodes of
            # the same 5 frames gave another stream (crf 18; at crf 0, lossless, none did; 2026-12-07). So a
            # chunk's frames are the same wherever it is made (render_chunk), its segment nearly always.
            s.options = {"crf": str(crf), "preset": "fast", "x264-params": "bframes=0", "threads": "1"}
        else:
            s.bit_rate = int(size[0] * size[1] * float(rate) * 0.25)
            s.codec_context.max_b_frames = 0
        for i, frame in enumerate(frames):
            vf = _output_frame(frame)
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _render_segment(frames: list, maps: list, tables: dict, content_masks, options: VideoOptions, segment: str,
                    rate: Fraction, size: tuple[int, int], timings: dict, warm_start=None, callback=None):
    """A chunk's decoded frames rendered (render_chunk) and written as its segment file; returns the warm
    start for the next chunk. The same in this process and in a Ray worker."""
    styled, warm = render_chunk(frames, maps, tables, content_masks, options, timings, warm_start=warm_start,
                                callback=callback)
    t = time.perf_counter()
    _write_segment(segment, styled, rate, size, options.crf)
    timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - t
    return warm


class _ChunkWorker:
    """A Ray actor (one process) rendering chunks of one clip: each job decodes its frame range (seeking
    to it), renders it with the shared tables (fetched from Ray's object store) and writes its segment."""

    def __init__(self, threads: int, path: str, size, rate: Fraction, options: VideoOptions, content_masks):
        torch.set_num_threads(threads)
        self.path, self.size, self.rate, self.o, self.content_masks = path, size, rate, options, content_masks

    def run(self, job: dict) -> dict:
        """{"ok": True, "timings"} once the segment is written, or {"ok": False, "reason"}."""
        import ray

        from .ray_workers import one_line

        timings = {"decode": 0.0, "transport": 0.0, "smoothing": 0.0, "encode": 0.0}
        try:
            tables = dict(zip(job["keys"], ray.get(job["tables"])))
            frames = []
            for frame, dt in _decode_range(self.path, self.size, self.o.start, self.o.end, job["lo"], job["hi"],
                                           job["pts"]):
                timings["decode"] += dt
                frames.append(frame)
            _render_segment(frames, job["maps"], tables, self.content_masks, self.o, job["segment"], self.rate,
                            self.size, timings)
        except Exception as e:  # noqa: BLE001 - reported by the driver in one line
            return {"ok": False, "reason": one_line(e)}
        return {"ok": True, "timings": timings}


def _assemble(out: str, segments: list[tuple[str, int]], rate: Fraction, source, audio_start: float,
              frames: int) -> None:
    """Join the segments (path, first frame) into ``out`` (stream copy of the video) with the source's
    audio from ``audio_start`` for the frames' duration (re-encoded as AAC), atomically."""
    av = _av()
    ext = os.path.splitext(out)[1].lower()
    with atomic_output(out) as tmp, av.open(str(tmp), "w", format=OUTPUT_FORMATS[ext]) as oc:
        with av.open(segments[0][0]) as first:
            vs = oc.add_stream_from_template(first.streams.video[0])
        duration = frames / rate
        astream = None
        src = av.open(str(source)) if source is not None else None
        try:
            if src is not None and src.streams.audio:
                ain = src.streams.audio[0]
                astream = oc.add_stream("aac", rate=ain.rate or 48000)
                astream.layout = ain.layout.name if ain.layout else "stereo"
                astream.bit_rate = 192000
            for path, first_frame in segments:
                with av.open(path) as seg:
                    sv = seg.streams.video[0]
                    offset = round(Fraction(first_frame) / rate / sv.time_base)
                    for pkt in seg.demux(sv):
                        if pkt.dts is None:
                            continue
                        pkt.pts += offset
                        pkt.dts += offset
                        pkt.stream = vs
                        oc.mux(pkt)
            if astream is not None:
                _copy_audio(src, astream, oc, audio_start, float(duration))
        finally:
            if src is not None:
                src.close()


def _copy_audio(src, astream, oc, start: float, duration: float) -> None:
    """The source's first audio stream from ``start`` seconds (counted, as the video frames are, from the
    video stream's start) for ``duration`` seconds, encoded to ``astream``."""
    vs = src.streams.video[0]
    t0 = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
    n = 0
    for f in src.decode(src.streams.audio[0]):
        t = (f.time if f.time is not None else 0.0) - t0
        if t + f.samples / f.sample_rate <= start:
            continue
        if t >= start + duration:
            break
        f.pts = n
        f.time_base = Fraction(1, f.sample_rate)
        n += f.samples
        for p in astream.encode(f):
            oc.mux(p)
    for p in astream.encode(None):
        oc.mux(p)


def write_video(path, frames: Iterable, fps=30, crf: int = 18, audio: np.ndarray | None = None,
                sample_rate: int = 44100) -> str:
    """Encode frames ((H, W, 3) uint8 arrays or anything stylize_frames takes) as H.264 (.mp4, .mov, .mkv),
    atomically; ``audio``: optional (channels, samples) float32 in -1..1 (1 or 2 channels), encoded as AAC.
    For the output of stylize_frames, or to make test clips."""
    av = _av()
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"path must end in {', '.join(OUTPUT_FORMATS)}, got {os.path.basename(str(path))!r}")
    rate = Fraction(fps).limit_denominator(1001)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("frames is empty: a video needs at least one frame")
    first = _as_uint8(first, 0)
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format=OUTPUT_FORMATS[ext]) as c:
        vs = _output_stream(c, _video_codec(), rate)
        vs.width, vs.height = first.shape[1] - first.shape[1] % 2, first.shape[0] - first.shape[0] % 2
        vs.pix_fmt = "yuv420p"
        if vs.codec_context.name == "libx264":
            vs.options = {"crf": str(crf), "preset": "fast"}
        a = None
        if audio is not None:       # every stream before the first packet
            audio = np.ascontiguousarray(np.atleast_2d(audio), dtype=np.float32)
            a = c.add_stream("aac", rate=sample_rate)
            a.layout = "mono" if audio.shape[0] == 1 else "stereo"
        for i, f in enumerate(itertools.chain([first], frames)):
            vf = _output_frame(_as_uint8(f, i))
            vf.pts = i
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            for s0 in range(0, audio.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(audio[:, s0:s0 + 1024], format="fltp", layout=a.layout.name)
                af.sample_rate, af.pts = sample_rate, s0
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return str(path)


def _file_id(path) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _digest(obj) -> str:
    h = hashlib.sha1()
    if isinstance(obj, (str, os.PathLike)) and os.path.isfile(obj):
        with open(obj, "rb") as f:
            h.update(f.read())
    elif isinstance(obj, torch.Tensor):
        h.update(obj.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(np.ascontiguousarray(obj).tobytes())
    else:
        h.update(repr(obj).encode())
    return h.hexdigest()


def parts_dir(out) -> str:
    """Where stylize_video keeps the finished chunks and its state for a rerun: OUT.parts/ beside OUT."""
    return str(out) + ".parts"


def stylize_video(path, style, out, progress: bool = True, workers: int | None = None, threads: int | None = None,
                  address: str | None = None, **options) -> dict:
    """Stylise the video file ``path`` in the look of ``style`` into ``out`` (.mp4, .mov or .mkv); returns a
    summary (frames, fps, size, shots, keyframes, seconds per step). Options as VideoOptions fields.
    Resumable: finished chunks and the plan stay in OUT.parts/ until the output is complete, and a rerun
    with the same input, style and options renders only the chunks not yet finished. Ctrl-C writes the
    frames done so far (the finished chunks from the first on) to ``out`` and raises VideoInterrupted.

    ``workers`` > 1 or an ``address`` renders the chunks on Ray (``pip install "dpst_ext[video,batch]"``):
    ``workers`` actors of ``threads`` threads each (default: as many as the cores, or the cluster's CPUs,
    allow), on an embedded local Ray or the cluster at ``address`` ("auto", "ray://HOST:PORT"; the input and
    OUT.parts/ at the same paths on every node). The plan (pass 1) is made here; each worker decodes its
    chunk's frames, renders them and writes the chunk's segment. Otherwise (the default) all in this
    process, with torch's threads."""
    opts = VideoOptions(**options).checked()
    for name, v in (("workers", workers), ("threads", threads)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
    on_ray = address is not None or (workers or 1) > 1
    if on_ray:
        from .ray_workers import cores, plan_workers, require_ray

        require_ray("dpst video with workers", "video,batch")
        if address is None:
            plan_workers(1, cores(), workers, threads)      # workers x threads must fit this machine's cores
    ext = os.path.splitext(str(out))[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"output must end in {', '.join(OUTPUT_FORMATS)}, got {os.path.basename(str(out))!r}")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ValueError(f"output folder does not exist: {folder}")
    info = _probe(path)
    if hdr.needs_conversion(*info["colour"]):
        warnings.warn(f"{os.path.basename(str(path))} is {hdr.describe(*info['colour'])}: brought to SDR BT.709 "
                      "with its highlights compressed; the output is SDR BT.709", stacklevel=2)
    if opts.start is not None and info["duration"] is not None and opts.start >= info["duration"]:
        raise ValueError(f"start ({opts.start} s) must be before the end of the input ({info['duration']:.2f} s)")
    style_img = load_image(style, "style")
    size = _output_size(info["width"], info["height"], opts.max_output)
    rate = info["rate"]
    timings = {"decode": 0.0, "analysis": 0.0, "transport": 0.0, "smoothing": 0.0, "encode": 0.0, "assemble": 0.0}
    bar = _bar_factory(progress)

    state = {"version": 2, "input": _file_id(path), "style": _digest(style_img),
             "masks": _digest(opts.masks) if not isinstance(opts.masks, str) or opts.masks not in MASK_MODES
             else opts.masks, "style_mask": None if opts.style_mask is None else _digest(opts.style_mask),
             "options": {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("masks", "style_mask")},
             "size": list(size), "rate": str(rate), "codec": _video_codec()}
    pdir = parts_dir(out)
    plan_path, state_path = os.path.join(pdir, "plan.pt"), os.path.join(pdir, "state.json")
    plan = None
    if os.path.isdir(pdir):
        try:
            with open(state_path, encoding="utf-8") as f:
                old = json.load(f)
            if old == state and os.path.isfile(plan_path):
                plan = torch.load(plan_path, weights_only=False)
        except (OSError, ValueError, RuntimeError):
            plan = None
        if plan is None:
            shutil.rmtree(pdir)
    os.makedirs(pdir, exist_ok=True)

    if plan is None:          # pass 1: the plan (nothing is kept if it fails)
        try:
            plan = _make_plan(path, style_img, opts, info, size, state, pdir, bar, timings)
        except BaseException:
            shutil.rmtree(pdir, ignore_errors=True)
            raise
    n = len(plan["maps"])
    chunks = [(c, min(c + opts.chunk_frames, n)) for c in range(0, n, opts.chunk_frames)]
    seg_path = lambda c: os.path.join(pdir, f"segment_{c:06d}.mp4")  # noqa: E731
    # The resume state: a chunk is done when its segment file exists (each is written atomically, in any
    # order); a rerun renders the others.
    todo = [c for c in range(len(chunks)) if not os.path.isfile(seg_path(c))]
    done_frames = n - sum(chunks[c][1] - chunks[c][0] for c in todo)
    run = _RenderRun(path, plan, chunks, todo, seg_path, opts, size, rate, timings)
    t_start = time.perf_counter()
    try:
        if todo:
            with bar(total=n, initial=done_frames, desc="rendering", unit="frame") as pb:
                if on_ray:
                    run.on_ray(workers, threads, address, pb)
                else:
                    run.in_process(pb)
    except KeyboardInterrupt:
        # What is done, as a playable file: the finished chunks from the first up to the first missing one.
        prefix = next((c for c in range(len(chunks)) if not os.path.isfile(seg_path(c))), len(chunks))
        written = chunks[prefix - 1][1] if prefix else 0
        if prefix:
            _assemble(str(out), [(seg_path(c), chunks[c][0]) for c in range(prefix)], rate,
                      path if info["audio"] else None, opts.start or 0.0, written)
        raise VideoInterrupted(out if prefix else None, written, n) from None
    render_seconds = time.perf_counter() - t_start
    t = time.perf_counter()
    _assemble(str(out), [(seg_path(c), chunks[c][0]) for c in range(len(chunks))], rate,
              path if info["audio"] else None, opts.start or 0.0, n)
    timings["assemble"] = time.perf_counter() - t
    shutil.rmtree(pdir)
    return {"frames": n, "rate": rate, "size": size, "shots": len(plan["shots"]), "keyframes": len(plan["tables"]),
            "chunks": len(chunks), "resumed_chunks": len(chunks) - len(todo), "resumed_frames": done_frames,
            "render_seconds": render_seconds, "timings": timings, "codec": state["codec"],
            "workers": run.workers, "threads": run.threads}


class _RenderRun:
    """Pass 2 of stylize_video: the chunks ``todo`` rendered into their segment files, in this process or on
    Ray; ``timings`` gathers the seconds per step (summed over the workers on Ray)."""

    def __init__(self, path, plan: dict, chunks: list, todo: list, seg_path, opts: VideoOptions, size, rate,
                 timings: dict):
        self.path, self.plan, self.chunks, self.todo, self.seg_path = path, plan, chunks, todo, seg_path
        self.o, self.size, self.rate, self.timings = opts, size, rate, timings
        self.workers, self.threads = 0, torch.get_num_threads()

    def _tables(self, lo: int, hi: int) -> list:
        return sorted({k for m in self.plan["maps"][lo:hi] for k in m[:2]})

    def in_process(self, pb) -> None:
        """Decoding the clip once, in order (the finished chunks' frames are skipped unconverted); the
        smoothing's warm start crosses from a chunk to the next."""
        todo, per = set(self.todo), self.o.chunk_frames
        frames_iter = _decode(self.path, self.size, self.o.start, self.o.end, wanted=lambda i: i // per in todo)
        pos, warm = 0, None
        try:
            for c in self.todo:
                lo, hi = self.chunks[c]
                if lo != pos:
                    warm = None
                frames = []
                for i in range(pos, hi):
                    item = next(frames_iter, None)
                    if item is None:
                        raise _input_ended(self.path, i, len(self.plan["maps"]))
                    if i >= lo:
                        self.timings["decode"] += item[1]
                        frames.append(item[0])
                pos = hi
                maps = self.plan["maps"][lo:hi]
                tables = {k: self.plan["tables"][k] for k in self._tables(lo, hi)}
                warm = _render_segment(frames, maps, tables, self.plan["content_masks"], self.o, self.seg_path(c),
                                       self.rate, self.size, self.timings, warm_start=warm,
                                       callback=lambda: pb.update(1))
        finally:
            frames_iter.close()

    def on_ray(self, workers: int | None, threads: int | None, address: str | None, pb) -> None:
        """One job per chunk on Ray worker actors (_ChunkWorker); the keyframe tables and the masks are put
        in the object store once. The smoothing starts cold in each chunk."""
        from .ray_workers import plan_workers, ray_session, run_on_actors

        with ray_session(address) as ray:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers, self.threads = plan_workers(len(self.todo), cpus, workers, threads)
            refs = {k: ray.put(t) for k, t in self.plan["tables"].items()}
            masks = None if self.plan["content_masks"] is None else ray.put(self.plan["content_masks"])
            pts = self.plan.get("pts")
            jobs = []
            for c in self.todo:
                lo, hi = self.chunks[c]
                keys = self._tables(lo, hi)
                jobs.append({"chunk": c, "lo": lo, "hi": hi, "maps": self.plan["maps"][lo:hi], "keys": keys,
                             "tables": [refs[k] for k in keys], "pts": None if pts is None else pts[lo:hi],
                             "segment": self.seg_path(c)})

            def finished(job: dict, r: dict) -> None:
                if not r["ok"]:
                    raise RuntimeError(f"chunk {job['chunk']} (frames {job['lo']}-{job['hi'] - 1}) failed: "
                                       f"{r['reason']}; the finished chunks are kept: rerun to continue")
                for k, v in r["timings"].items():
                    self.timings[k] = self.timings.get(k, 0.0) + v
                pb.update(job["hi"] - job["lo"])

            run_on_actors(_ChunkWorker, self.workers, jobs, finished,
                          args=(self.threads, str(self.path), self.size, self.rate, self.o, masks),
                          num_cpus=self.threads)


def _make_plan(path, style_img, opts: VideoOptions, info: dict, size, state: dict, pdir: str, bar, timings) -> dict:
    """Pass 1 of stylize_video: read the clip at the analysis size and fit its plan (saved in ``pdir``)."""
    rate = info["rate"]
    plan_path, state_path = os.path.join(pdir, "plan.pt"), os.path.join(pdir, "state.json")
    planner = Planner(style_img, opts, float(rate))
    if planner.file_masks is not None:
        _check_mask_aspect(planner.file_masks[0], (size[1], size[0]))
    total = info["frames"] or (round(info["duration"] * float(rate)) if info["duration"] else None)
    frame_pts = []             # each frame's timestamp: a chunk's worker seeks to its first
    with bar(total=total, desc="analysing", unit="frame") as pb:
        try:
            for frame, dt, pts in _decode(path, _thumb_size(size[1], size[0], opts.analysis_size)[::-1],
                                          opts.start, opts.end):
                timings["decode"] += dt
                frame_pts.append(pts)
                t = time.perf_counter()
                planner.observe(frame)
                timings["analysis"] += time.perf_counter() - t
                pb.update(1)
        except KeyboardInterrupt:
            raise VideoInterrupted(None, 0, planner.frames) from None
        except _av().error.FFmpegError as e:
            raise ValueError(f"input {path} could not be decoded after {planner.frames} frames "
                             f"({str(e).splitlines()[0]})") from None
    if planner.frames == 0:
        raise ValueError(f"input {path} holds no frame from start {opts.start or 0} s"
                         + ("" if opts.end is None else f" to end {opts.end} s"))
    planner.finish()
    plan = {"maps": [planner.frame_maps(i) for i in range(planner.frames)], "tables": planner.tables,
            "content_masks": None if planner.file_masks is None else planner.file_masks[0],
            "shots": [(s["start"], s["end"]) for s in planner.shots], "cut_distances": planner.cut_distances,
            "pts": frame_pts}
    with atomic_output(plan_path) as tmp:
        torch.save(plan, tmp)
    with atomic_output(state_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)

    return plan


def _bar_factory(enabled: bool):
    """tqdm bars over frames (rate and ETA) on stderr, or silent stand-ins."""
    if enabled:
        try:
            from tqdm import tqdm

            return lambda **kw: tqdm(file=sys.stderr, dynamic_ncols=True, **kw)
        except ImportError:
            pass

    class _Quiet:
        def __init__(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            pass

    return _Quiet


# ---- measures --------------------------------------------------------------------------------------

def global_shift(a: np.ndarray, b: np.ndarray, max_shift: int = 64) -> tuple[int, int]:
    """The integer shift (dy, dx) that best aligns frame b onto frame a (b[y, x] ~ a[y + dy, x + dx]), by
    phase correlation of their grey levels."""
    ga = a.astype(np.float64).mean(2)
    gb = b.astype(np.float64).mean(2)
    window = np.outer(np.hanning(ga.shape[0]), np.hanning(ga.shape[1]))    # no wrap-around edges
    fa, fb = np.fft.fft2((ga - ga.mean()) * window), np.fft.fft2((gb - gb.mean()) * window)
    r = fa * np.conj(fb)
    corr = np.fft.ifft2(r / np.maximum(np.abs(r), 1e-12)).real
    h, w = corr.shape
    dy, dx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = dy - h if dy > h // 2 else dy
    dx = dx - w if dx > w // 2 else dx
    if abs(dy) > max_shift or abs(dx) > max_shift:
        return 0, 0
    return int(dy), int(dx)


def _grey_pyramid(frame: np.ndarray, min_side: int = 24) -> list[np.ndarray]:
    """Grey levels (0..255, float64) of a frame, then halved by 2x2 means while the short side stays at
    least ``min_side``: finest first. A halving maps centred coordinates u to u / 2 exactly."""
    g = frame.astype(np.float64).mean(2) if frame.ndim == 3 else frame.astype(np.float64)
    levels = [g]
    while min(g.shape) // 2 >= min_side:
        h, w = g.shape[0] // 2 * 2, g.shape[1] // 2 * 2
        g = g[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        levels.append(g)
    return levels


def _similarity_matrix(p: float, q: float, tx: float, ty: float, shape) -> np.ndarray:
    """The 2x3 matrix M of pixel coordinates (x = column, y = row) of the warp c + [[p, -q], [q, p]] (u - c)
    + (tx, ty), c the frame's centre."""
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    a = np.array([[p, -q], [q, p]])
    t = np.array([cx, cy]) + np.array([tx, ty]) - a @ np.array([cx, cy])
    return np.concatenate([a, t[:, None]], 1)


def global_motion(a: np.ndarray, b: np.ndarray, max_shift: int = 64, iterations: int = 30) -> np.ndarray:
    """The similarity (scale, rotation, shift) that best maps frame b onto frame a: a 2x3 matrix M with
    b[y, x] ~ a at M @ (x, y, 1) (x the column, y the row). Fitted by Gauss-Newton on the grey levels
    (least squares over the overlap, with a gain and an offset of a's brightness so that a change of light
    does not pass for motion), coarse to fine on 2x2-mean pyramids, from the phase-correlation shift
    (global_shift). For measuring flicker after global motion: a pan, a zoom, a roll."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    dy, dx = global_shift(a, b, max_shift)
    pa, pb = _grey_pyramid(a), _grey_pyramid(b)
    n = len(pa)
    p, q, tx, ty = 1.0, 0.0, dx / 2 ** (n - 1), dy / 2 ** (n - 1)
    for level in range(n - 1, -1, -1):
        ga, gb = gaussian_filter(pa[level], 1.0), gaussian_filter(pb[level], 1.0)
        h, w = gb.shape
        gy, gx = np.gradient(ga)
        uy, ux = np.mgrid[0:h, 0:w].astype(np.float64)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        uy, ux = (uy - cy).ravel(), (ux - cx).ravel()
        target = gb.ravel()
        gain, offset = 1.0, 0.0
        for _ in range(iterations):
            wx, wy = cx + p * ux - q * uy + tx, cy + q * ux + p * uy + ty
            inside = (wx >= 0) & (wx <= w - 1) & (wy >= 0) & (wy <= h - 1)
            if inside.sum() < 0.25 * h * w:      # under a quarter of the frame overlaps: no estimate
                return _similarity_matrix(1.0, 0.0, float(dx), float(dy), b.shape)
            coords = np.stack([wy[inside], wx[inside]])
            va = map_coordinates(ga, coords, order=1)
            ix, iy = map_coordinates(gx, coords, order=1), map_coordinates(gy, coords, order=1)
            x_, y_ = ux[inside], uy[inside]
            jac = np.stack([gain * (ix * x_ + iy * y_), gain * (iy * x_ - ix * y_), gain * ix, gain * iy,
                            va, np.ones_like(va)], 1)
            r = gain * va + offset - target[inside]
            norm = np.sqrt((jac ** 2).sum(0)) + 1e-12     # normal equations of the column-scaled system
            js = jac / norm
            step = np.linalg.solve(js.T @ js + 1e-12 * np.eye(6), -(js.T @ r)) / norm
            p, q, tx, ty = p + step[0], q + step[1], tx + step[2], ty + step[3]
            gain, offset = gain + step[4], offset + step[5]
            # the largest displacement the step made, at the frame's corners
            if abs(step[2]) + abs(step[3]) + (abs(step[0]) + abs(step[1])) * (cx + cy) < 1e-3:
                break
        if level > 0:
            tx, ty = 2 * tx, 2 * ty
    return _similarity_matrix(p, q, tx, ty, b.shape)


def light_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How the light changed from frame a to frame b ((3, h, w), 0..1): per channel the gain with a ~ gain * b
    over the part of the scene both show, a first aligned onto b by their global motion (global_motion). So
    a change of framing (a pan revealing new things) does not count, only a change of the colour of the same
    things: exposure and white balance. The ratio of the channel's sums over the pixels clipped in neither
    frame (a ratio of sums, unlike a fitted slope, is not biased towards 1 by the frames' noise), again over
    the 80 % of them it fits best (a moving object is not the light); clamped to LIGHT_STEP_LIMITS; 1 where
    the overlap is too small or too dark to tell."""
    gain = torch.ones(3, dtype=torch.float64)
    an, bn = a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy()
    aw, bw = _overlap(an, bn, global_motion(an * 255, bn * 255))
    if len(bw) < 0.25 * bn.shape[0] * bn.shape[1]:
        return gain
    ok = ((aw > 2 / 255) & (aw < 253 / 255) & (bw > 2 / 255) & (bw < 253 / 255)).all(1)
    lo, hi = LIGHT_STEP_LIMITS
    for c in range(3):
        av, bv = aw[ok, c], bw[ok, c]
        if len(av) < 64 or bv.sum() < 0.02 * len(bv):
            continue
        g = av.sum() / bv.sum()
        res = np.abs(av - g * bv)
        keep = res <= np.quantile(res, 0.8)
        gain[c] = float(np.clip(av[keep].sum() / bv[keep].sum(), lo, hi))
    return gain


def _overlap(a: np.ndarray, b: np.ndarray, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame a warped onto frame b by ``motion`` (global_motion; bilinear) and b itself, at the pixels of b
    whose place in a lies inside a: two (n, C) float64 arrays."""
    from scipy.ndimage import map_coordinates

    h, w = b.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    wx = motion[0, 0] * x + motion[0, 1] * y + motion[0, 2]
    wy = motion[1, 0] * x + motion[1, 1] * y + motion[1, 2]
    eps = 1e-9
    inside = (wx >= -eps) & (wx <= a.shape[1] - 1 + eps) & (wy >= -eps) & (wy <= a.shape[0] - 1 + eps)
    coords = np.stack([wy[inside], wx[inside]])
    aw = np.stack([map_coordinates(a[..., c].astype(np.float64), coords, order=1, mode="nearest")
                   for c in range(a.shape[2])], 1)
    return aw, b[inside].astype(np.float64)


def _aligned_diff(a: np.ndarray, b: np.ndarray, motion: np.ndarray | None) -> float:
    """Mean absolute difference of frame b and frame a, a first warped onto b by ``motion`` (global_motion;
    bilinear), over the pixels of b whose place in a lies inside a; None: no warp, every pixel."""
    if motion is None:
        return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())
    aw, bw = _overlap(a, b, motion)
    return float(np.abs(aw - bw).mean())


def flicker(inputs: list, outputs: list, motion: bool = False, cuts: Iterable[int] = ()) -> dict:
    """Mean absolute frame-to-frame change (0..255 units) of the input and of the output frames ((H, W, 3)
    uint8), skipping the changes across ``cuts`` (indices of a shot's first frame). motion=True first
    warps each previous frame, of the input and of the output alike, by the global motion estimated on
    the INPUT pair (global_motion: scale, rotation and shift) and counts the pixels both frames show, so
    that a pan's or a zoom's own change is not counted. Returns {"input", "output", "excess": output -
    input, "ratio": output / input}."""
    skip = set(cuts)
    din, dout = [], []
    for i in range(1, len(inputs)):
        if i in skip:
            continue
        m = global_motion(inputs[i - 1], inputs[i]) if motion else None
        din.append(_aligned_diff(inputs[i - 1], inputs[i], m))
        dout.append(_aligned_diff(outputs[i - 1], outputs[i], m))
    i_, o_ = float(np.mean(din)) if din else 0.0, float(np.mean(dout)) if dout else 0.0
    return {"input": i_, "output": o_, "excess": o_ - i_, "ratio": o_ / i_ if i_ > 0 else math.nan}
