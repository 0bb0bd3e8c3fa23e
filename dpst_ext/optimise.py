"""The L-BFGS driver of both stages: the reference's optimiser (history 100, learning rate 1, no line search,
no early stop), driven one iteration per ``step`` (its state persists between calls, so this is the same
optimiser as one long call) to report progress, keep the lowest-loss image and stop cleanly on Ctrl-C.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from .losses import DPSTObjective
from .options import Progress, TransferInterrupted, TransferOptions
from .vgg import deprocess

__all__ = ["Best", "optimise", "resize"]


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(img.shape[1:]) == tuple(size):
        return img
    return F.interpolate(img[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)


class Best:
    """Lowest-loss output of the current stage (Caffe space), so an interrupt can save it."""

    def __init__(self):
        self.loss, self.x, self.stage = math.inf, None, 0

    def offer(self, loss: float, x: torch.Tensor, stage: int):
        if stage != self.stage:  # a later stage's output is always preferred
            self.loss, self.stage = math.inf, stage
        if math.isfinite(loss) and loss <= self.loss:
            self.loss, self.x = loss, x.detach().clone()

    def image(self):
        return None if self.x is None else deprocess(self.x)[0].clamp(0, 1).float().cpu()


def optimise(objective: DPSTObjective, x0: torch.Tensor, iters: int, stage: int, opts: TransferOptions,
              best: Best, callback, on_iter=None) -> tuple[torch.Tensor, list[float]]:
    x = x0.detach().clone().requires_grad_(True)
    if iters <= 0:
        return x.detach(), []
    use_m = stage == 2
    # tolerance_grad/-change < 0: never stop early (the reference ran a fixed number of iterations).
    opt = torch.optim.LBFGS([x], lr=opts.lr, max_iter=1, max_eval=2, history_size=opts.history_size,
                            tolerance_grad=-1.0, tolerance_change=-1.0, line_search_fn=opts.line_search)
    losses, last = [], {}
    start = time.perf_counter()

    def closure():
        opt.zero_grad(set_to_none=False)
        terms = objective(x, use_photoreal=use_m)
        terms["total"].backward()
        loss = float(terms["total"].detach())
        if not math.isfinite(loss):
            raise FloatingPointError(f"stage {stage}: the loss became {loss} (terms: "
                                     f"{ {k: float(v.detach()) for k, v in terms.items()} })")
        best.offer(loss, x, stage)
        last.clear()
        last.update({k: float(v.detach()) for k, v in terms.items()})
        return terms["total"]

    it = 0
    try:
        for it in range(1, iters + 1):
            opt.step(closure)
            losses.append(last["total"])
            preview = on_iter(it, x) if on_iter is not None else None
            if callback is not None:
                callback(Progress(stage, it, iters, last["total"], dict(last), time.perf_counter() - start,
                                  lambda: deprocess(x.detach())[0].clamp(0, 1).float().cpu(), preview))
    except KeyboardInterrupt:
        raise TransferInterrupted(best.image(), stage, it) from None
    # The last step moved x after its evaluation; score the final point too.
    with torch.no_grad():
        final = float(objective(x, use_photoreal=use_m)["total"])
    best.offer(final, x, stage)
    return x.detach(), losses
