"""What a person sees of a long transfer: one line per phase with a bar, the rate and the ETA, rewritten in
place on a terminal and printed every 10 s otherwise (a log file stays short). Used by the command line and
the demo as the run_transfer callback."""
from __future__ import annotations

import sys
import time

from .options import HighresProgress

__all__ = ["ProgressPrinter"]


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


class ProgressPrinter:
    """Callback for run_transfer: Progress (optimisation iterations) and HighresProgress (full-size step)."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.last_print = 0.0

    def __call__(self, p):
        if self.quiet:
            return
        if isinstance(p, HighresProgress):
            self._emit(*self._highres(p))
            return
        rate = p.iteration / p.elapsed if p.elapsed > 0 else 0.0
        eta = (p.total - p.iteration) / rate if rate > 0 else float("nan")
        self._emit(f"stage {p.stage} {_bar(p.iteration, p.total)} {p.iteration}/{p.total} loss {p.loss:.4g} "
                   f"{rate:.2f} it/s ETA {eta:.0f}s", p.iteration == p.total, p.iteration == 1)

    @staticmethod
    def _highres(p):
        size = f"{p.shape[1]}x{p.shape[0]}"
        if p.step == "start":
            return f"full size {size}: local affine upsampling ...", True, True
        if p.step == "upsample":
            return (f"full size {size}: upsampled in {p.elapsed:.1f}s" + ("" if p.tol is None else ", smoothing ..."),
                    True, True)
        if p.step == "smooth":
            return (f"full size {size}: smoothing CG iteration {p.iteration} residual {p.residual:.2e} "
                    f"(target {p.tol:.0e}) {p.elapsed:.0f}s"), False, p.iteration == 1
        return f"full size {size}: done in {p.elapsed:.1f}s", True, True

    def _emit(self, line: str, final: bool, first: bool):
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + line.ljust(78) + ("\n" if final else ""))
            self.stream.flush()
        elif final or first or now - self.last_print >= 10:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_print = now
