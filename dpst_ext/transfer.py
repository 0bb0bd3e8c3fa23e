"""The style-transfer pipeline: options in, one photo out.

    >>> out = dpst_ext.transfer("content.png", "style.png")                          # the default method
    >>> out = dpst_ext.transfer("content.png", "style.png", content_mask="c_seg.png", style_mask="s_seg.png",
    ...                         method="reference")                                 # the paper's recipe

1. Options resolved and checked (dpst_ext.options: the method's recipe fills what the caller left None);
   images and masks loaded (automatic masks when none are given); the memory of the full-size step
   planned, refusing at once (InsufficientMemoryError) if it will not fit.
2. The start at the working size: noise (reference), the content, a Gaussian colour map ("colour") or the
   closed form ("transport": dpst_ext.transport, colour transport then the matting smoothing). With no
   iterations and the closed-form start this is the fast method, and step 3 is skipped.
3. Stage 1 (segmented neural style, no photorealism term) and stage 2 (the full objective, with
   lambda * V^T M V) by L-BFGS (dpst_ext.optimise); smooth local affine at the end when asked.
4. The result carried to the content's own size (engine.highres.upscale_result: local affine upsampling,
   then the matting smoothing if asked).
"""
from __future__ import annotations

import contextlib
import math
import time

from typing import Callable

import torch

from .automask import AUTO_LAYERS
from .engine.highres import SMOOTHING_TOL, upscale_result
from .engine.memory import MemoryPlan, plan_highres
from .engine.ops import smooth_local_affine
from .engine.postprocess import refine_posterization
from .image_io import load_image, resize_long_side
from .losses import DPSTObjective
from .masks import MaskPair, parse_mask
from .transport import closed_form
from .optimise import Best, optimise, resize
from .options import (AUTO_MASKS_DEFAULT, METHODS, MIN_SIDE, RECIPES, HighresProgress,  # noqa: F401
                      Progress, TransferInterrupted, TransferOptions, TransferResult, resolve_device)
from .vgg import VGG19Features, deprocess, preprocess

__all__ = ["transfer", "run_transfer", "vgg_for", "colour_transfer_init", "auto_labels",
           # defined in dpst_ext.options, importable from here as before
           "TransferOptions", "TransferResult", "TransferInterrupted", "Progress", "HighresProgress",
           "resolve_device", "METHODS", "RECIPES"]

@contextlib.contextmanager
def _labels_on_interrupt(labels):
    """Attach the automatic masks ``labels`` (content, style) or None to a TransferInterrupted."""
    try:
        yield
    except TransferInterrupted as e:
        if labels is not None:
            e.content_labels, e.style_labels = labels
        raise


def colour_transfer_init(content: torch.Tensor, style: torch.Tensor, masks: MaskPair) -> torch.Tensor:
    """The content recoloured label by label towards the style: a cheap starting point for stage 1.

    For each label, the affine colour map x -> A (x - mu_c) + mu_s that carries a Gaussian fit of the
    content's colours under that label onto the style's (the optimal-transport map between Gaussians:
    A = C^-1/2 (C^1/2 S C^1/2)^1/2 C^-1/2 with C, S the colour covariances). Pixels outside every
    label (orphans) use the map fitted on whole images. Labels blend by their mask weights, so the
    result is locally an affine recolouring of the content: photorealistic by construction, with the
    style's per-label colour statistics. (3, H, W) RGB 0..1 in, out (clamped).
    """
    def gauss(img, m):
        px = img.reshape(3, -1).double()
        wgt = m.reshape(-1).double()
        n = wgt.sum()
        mu = (px * wgt).sum(1) / n
        d = px - mu[:, None]
        return mu, (d * wgt) @ d.T / n + 1e-5 * torch.eye(3, dtype=torch.float64, device=px.device)

    def sqrtm(a, inverse=False):
        e, v = torch.linalg.eigh(a)
        e = e.clamp_min(1e-12)
        return (v * (e.rsqrt() if inverse else e.sqrt())) @ v.T

    def ot_map(mc, cc, ms, cs):
        r = sqrtm(cc)
        ri = sqrtm(cc, inverse=True)
        return ri @ sqrtm(r @ cs @ r) @ ri, mc, ms

    px = content.reshape(3, -1).double()
    cm, sm = masks.content.to(content.device), masks.style.to(style.device)
    whole = ot_map(*gauss(content, torch.ones_like(content[0])), *gauss(style, torch.ones_like(style[0])))
    maps = [ot_map(*gauss(content, cm[k]), *gauss(style, sm[k])) if float(cm[k].sum()) > 9 and float(sm[k].sum()) > 9
            else whole for k in range(cm.shape[0])]
    weights = torch.cat([cm.reshape(cm.shape[0], -1).double(),
                         (1 - cm.sum(0)).clamp_min(0).reshape(1, -1).double()])      # last: no label
    out = torch.zeros_like(px)
    for (a, mc, ms), wk in zip([*maps, whole], weights):
        out += wk * (a @ (px - mc[:, None]) + ms[:, None])
    return (out / weights.sum(0).clamp_min(1e-12)).reshape(content.shape).clamp(0, 1).to(content.dtype)


def _prepare_masks(content_mask, style_mask, content_hw, style_hw, opts: TransferOptions) -> MaskPair:
    if content_mask is None and style_mask is None:
        return MaskPair.single(content_hw, style_hw)
    if content_mask is None or style_mask is None:
        raise ValueError("give both content_mask and style_mask, or neither")
    cl = parse_mask(content_mask, content_hw, opts.mask_mode, opts.mask_threshold, name="content mask")
    sl = parse_mask(style_mask, style_hw, opts.mask_mode, opts.mask_threshold, name="style mask")
    return MaskPair.from_labels(cl, sl, orphans=opts.orphans)


def _check_side(name: str, full: torch.Tensor, working: torch.Tensor | None = None) -> None:
    """ValueError unless the photo's short side is at least MIN_SIDE px at the working size."""
    h, w = (working if working is not None else full).shape[1:]
    if min(h, w) >= MIN_SIDE:
        return
    size = f"{full.shape[2]}x{full.shape[1]} px"
    if working is not None and working.shape[1:] != full.shape[1:]:
        size += f", {w}x{h} at the working size"
    raise ValueError(f"{name} photo is {size}: its short side must be at least {MIN_SIDE} px (VGG-19 pools "
                     "4 times); use a larger photo, --size or --max-output")


def _auto_wanted(content_mask, style_mask, opts: TransferOptions) -> bool:
    if content_mask is not None or style_mask is not None:
        if opts.auto_masks or opts.segmenter is not None:
            raise ValueError("auto_masks / segmenter compute the masks: do not also give content_mask/style_mask")
        return False
    if opts.segmenter is not None:
        return True
    return AUTO_MASKS_DEFAULT if opts.auto_masks is None else bool(opts.auto_masks)


def auto_labels(content, style, opts: TransferOptions, vgg=None):
    """The label pair (palette indices) a transfer computes when no masks are given: from the user's
    segmenter (opts.segmenter, opts.segmenter_mapping) or by co-segmentation (opts.auto_k, opts.seed, with
    ``vgg`` or a VGG built from opts.vgg_weights on opts.device). ``dpst masks`` calls this too, so the
    masks it writes are the ones a transfer would use."""
    from .automask import auto_masks
    from .masks import segmenter_masks

    content, style = load_image(content, "content"), load_image(style, "style")
    for name, image in (("content", content), ("style", style)):
        _check_side(name, image)
    if opts.segmenter is not None:
        return segmenter_masks(content, style, opts.segmenter, opts.segmenter_mapping)
    if vgg is None:
        vgg = VGG19Features(AUTO_LAYERS, weights=opts.vgg_weights).to(resolve_device(opts.device))
    return auto_masks(content, style, k=opts.auto_k, seed=opts.seed, vgg=vgg)


def vgg_for(opts: TransferOptions, device=None) -> VGG19Features:
    """The VGG-19 a transfer with ``opts`` uses (its style, content and automatic-mask layers, opts.vgg_weights),
    on ``device`` (default: opts.device). run_transfer builds it, or takes one built once for many photos."""
    layers = tuple(dict.fromkeys((*opts.style_layers, opts.content_layer, *AUTO_LAYERS)))
    device = resolve_device(opts.device) if device is None else device
    return VGG19Features(layers, weights=opts.vgg_weights).to(device)


def run_transfer(content, style, content_mask=None, style_mask=None, options: TransferOptions | None = None,
                 callback: Callable[[Progress], None] | None = None, vgg: VGG19Features | None = None,
                 **kwargs) -> TransferResult:
    """The full method; returns a TransferResult. Options as TransferOptions fields (or ``options=``).
    ``vgg``: vgg_for(options), when the caller keeps one for many transfers (dpst_ext.batch's workers).

    ``callback`` receives a Progress after each optimisation iteration and, when the output is upscaled,
    a HighresProgress for each step of the full-size stage (check the type, or pass output_size="working").

    Raises TransferInterrupted (a KeyboardInterrupt) with the best image so far on Ctrl-C, and
    dpst_ext.engine.memory.InsufficientMemoryError before any optimisation when the full-size output will
    not fit.
    """
    # A checked copy: the caller's options are not changed by kwargs, the recipe or the size cap below.
    opts = (options if options is not None else TransferOptions()).resolved(**kwargs)
    n1, n2 = opts.iters
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    device = resolve_device(opts.device)
    timings = {}
    t0 = time.perf_counter()

    content_full = load_image(content, "content")
    style_full = load_image(style, "style")
    masks_full = _prepare_masks(content_mask, style_mask, tuple(content_full.shape[1:]),
                                tuple(style_full.shape[1:]), opts)
    content_full, content_img, plan = _plan_output(content_full, opts, device)
    style_img = resize_long_side(style_full, opts.size)
    _check_side("content", content_full, content_img)
    _check_side("style", style_full, style_img)
    optimising = n1 + n2 > 0 or opts.init != "transport"
    auto = _auto_wanted(content_mask, style_mask, opts)
    if not (optimising or (auto and opts.segmenter is None)):   # the closed form alone needs no VGG
        vgg = None
    elif vgg is None:
        vgg = vgg_for(opts, device)
    timings["setup"] = time.perf_counter() - t0
    labels = None
    if auto:
        t = time.perf_counter()
        labels = auto_labels(content_full, style_full, opts, vgg)
        masks_full = MaskPair.from_labels(*labels, orphans=opts.orphans)
        timings["auto_masks"] = time.perf_counter() - t

    def objective_at(long_side):
        c = resize_long_side(content_full, long_side) if long_side != opts.size else content_img
        s = resize_long_side(style_full, long_side) if long_side != opts.size else style_img
        m = masks_full.resized(tuple(c.shape[1:]), tuple(s.shape[1:]))
        return DPSTObjective(vgg, c.to(device), s.to(device), m, opts.weights, opts.style_layers,
                             opts.content_layer, laplacian_eps=opts.laplacian_eps)

    gen = torch.Generator().manual_seed(int(opts.seed))
    best = Best()
    result = TransferResult(content_img, None, None, orphans=dict(masks_full.orphans))
    if labels is not None:
        result.content_labels, result.style_labels = labels

    def start_at(c, s, m):
        t = time.perf_counter()
        try:
            return closed_form(c, s, m.resized(tuple(c.shape[1:]), tuple(s.shape[1:])), seed=opts.seed)
        except KeyboardInterrupt:
            raise TransferInterrupted(None, 1, 0) from None
        finally:
            timings["transport"] = time.perf_counter() - t

    if not optimising:   # the fast method: the closed form at the working size, then the full-size step
        with _labels_on_interrupt(labels):
            result.working = result.image = result.raw = start_at(content_img, style_img, masks_full).float().cpu()
            result.timings = timings
            if plan is not None:
                del style_full, style_img
                result.image = _upscale(content_full.to(device), content_img.to(device), result.working.to(device),
                                        opts, plan, callback, result)
        return result

    with _labels_on_interrupt(labels):  # Ctrl-C keeps the automatic masks as well as the image
        # Stage 1: segmented neural style from near-constant noise (optionally at a coarser size).
        t = time.perf_counter()
        s1_size = opts.stage1_size if opts.stage1_size else opts.size
        obj1 = objective_at(s1_size)
        h1, w1 = obj1.content.shape[1:]
        x0 = (torch.randn((1, 3, h1, w1), generator=gen) * 1e-4).to(device)
        if opts.init == "content":  # far fewer iterations needed; the reference started from noise
            x0 = x0 + preprocess(obj1.content[None])
        start = None
        if opts.init in ("colour", "transport"):
            start = (colour_transfer_init(obj1.content, obj1.style, obj1.masks) if opts.init == "colour" else
                     start_at(obj1.content.cpu(), obj1.style.cpu(), obj1.masks).float().to(device))
            x0 = x0 + preprocess(start[None])
            if opts.content_target == "start":
                obj1.retarget(start)
        x1, result.losses["stage1"] = optimise(obj1, x0, n1, 1, opts, best, callback)
        result.stage1 = deprocess(x1)[0].clamp(0, 1).float().cpu()
        timings["stage1"] = time.perf_counter() - t

        # Stage 2: the full objective from stage 1's output.
        t = time.perf_counter()
        obj2 = obj1 if s1_size == opts.size else objective_at(opts.size)
        h, w = obj2.content.shape[1:]
        if (h1, w1) != (h, w):
            x1 = preprocess(resize(deprocess(x1)[0].clamp(0, 1), (h, w))[None])
            if start is not None and opts.content_target == "start":
                obj2.retarget(resize(start, (h, w)))
        content_dev = obj2.content

        def local_affine(x):
            rgb = deprocess(x.detach())[0].clamp(0, 1)
            # The compiled op (csrc/cpu/affine_cpu.cpp, csrc/cuda/affine_kernels.cuh);
            # dpst_ext/engine/postprocess.py is its readable definition. float32 agrees with it to ~1e-6.
            return smooth_local_affine(content_dev.float(), rgb.float(), opts.local_affine_radius, opts.local_affine_edge,
                                       opts.local_affine_ridge).clamp(0, 1).cpu()

        def on_iter(it, x):
            if opts.local_affine and opts.local_affine_every and it % opts.local_affine_every == 0 and it < n2:
                return local_affine(x)
            return None

        if n2 > 0:
            obj2.laplacian  # build the Laplacian before timing iterations
            x2, result.losses["stage2"] = optimise(obj2, x1, n2, 2, opts, best, callback, on_iter)
        else:
            x2 = x1
        timings["stage2"] = time.perf_counter() - t
        result.raw = deprocess(x2)[0].clamp(0, 1).float().cpu()
        t = time.perf_counter()
        try:
            result.image = local_affine(x2) if opts.local_affine else result.raw
            if opts.refine_posterization:
                result.image = refine_posterization(content_dev.float().cpu(), result.image).clamp(0, 1)
        except KeyboardInterrupt:
            raise TransferInterrupted(result.raw, 2, n2) from None
        timings["local_affine"] = time.perf_counter() - t
        result.working = result.image
        result.timings = timings
        if plan is not None:
            # Free the optimisation's memory (VGG, objectives, full-size style) before the full-size step.
            del vgg, obj1, obj2, best, x1, x2, style_full, style_img
            result.image = _upscale(content_full.to(device), content_img.to(device), result.working.to(device),
                                    opts, plan, callback, result)
        return result


# ---- Output resolution (dpst_ext.engine.highres) ------------------------------------------------------

def _plan_output(content_full: torch.Tensor, opts: TransferOptions, device):
    """(content at the output size, content at the working size, memory plan or None when the output is the
    working-size image). Sets opts.size to the working long side actually used: with a full-size output it
    never exceeds the output's (optimising above the output size is wasted work). Raises
    InsufficientMemoryError before any optimisation when the full-size step will not fit."""
    if opts.output_size == "working":
        return content_full, resize_long_side(content_full, opts.size), None
    if opts.max_output is not None and max(content_full.shape[1:]) > opts.max_output:
        content_full = resize_long_side(content_full, opts.max_output)
    full_side = max(content_full.shape[1:])
    if opts.size is None or opts.size > full_side:
        opts.size = full_side
    if opts.stage1_size is not None and opts.stage1_size >= opts.size:
        opts.stage1_size = None            # a small photo: stage 1 runs at the (capped) working size
    content_img = resize_long_side(content_full, opts.size)
    (h, w), (hs, ws) = content_full.shape[1:], content_img.shape[1:]
    if (h, w) == (hs, ws):
        return content_full, content_img, None
    explicit = opts.memory_budget is not None
    plan = plan_highres(h, w, device=device, available=opts.memory_budget, safety=1.0 if explicit else 0.9,
                        smoothing=opts.smoothing, working_pixels=hs * ws)
    return content_full, content_img, plan


def _upscale(content_full, content_small, working, opts: TransferOptions, plan: MemoryPlan, callback,
             result: TransferResult) -> torch.Tensor:
    """The working-size result at the output size (highres.upscale_result); Ctrl-C raises TransferInterrupted
    with the upsampling without smoothing (or, if the upsampling itself was interrupted, bicubic)."""
    from .engine.highres import HighresInterrupted

    tol = SMOOTHING_TOL.get(opts.smoothing)
    shape = tuple(content_full.shape[1:])
    start = time.perf_counter()

    def report(step, info):
        if callback is None or step == "plan":
            return
        it, res = (info[0], max(info[1])) if step == "smooth" else (0, math.nan)
        callback(HighresProgress(step, it, res, tol, time.perf_counter() - start, shape))

    rep = {}
    try:
        report("start", None)
        out = upscale_result(content_full, content_small, working, smoothing=opts.smoothing, plan=plan,
                             callback=report, report=rep)
    except KeyboardInterrupt as e:
        # HighresInterrupted carries the upsampling once it is done; before that, bicubic (instant).
        image = e.image if isinstance(e, HighresInterrupted) and e.image is not None else resize(working, shape)
        raise TransferInterrupted(image.float().cpu(), "highres", getattr(e, "iteration", 0)) from None
    result.highres = rep
    result.timings.update(upsample=rep.get("upsample_seconds", 0.0), smoothing=rep.get("smooth_seconds", 0.0),
                          highres=time.perf_counter() - start)
    return out.cpu()


def transfer(content, style, content_mask=None, style_mask=None, *, return_tensor: bool = False, callback=None,
             **options):
    """Deep Photo Style Transfer of ``style`` onto ``content``; returns a PIL image (or a (3, H, W) tensor).

    Images and masks may be paths, PIL images, numpy arrays or tensors. Options: see TransferOptions
    (size, iters, weights, seed, device, stage1_size, smooth, output_size, max_output, smoothing, ...).
    The output has the content's own size unless output_size="working" (or max_output caps it).
    """
    res = run_transfer(content, style, content_mask, style_mask, callback=callback, **options)
    return res.image if return_tensor else res.pil()
