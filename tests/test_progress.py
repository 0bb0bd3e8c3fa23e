"""The progress lines a person sees (dpst_ext.progress)."""
import io

from dpst_ext.options import HighresProgress, Progress
from dpst_ext.progress import ProgressPrinter


def stage(it, total=10, elapsed=None):
    return Progress(2, it, total, 1.5, {}, elapsed if elapsed is not None else it * 0.5, lambda: None)


def test_log_lines_have_a_bar_rate_and_eta_and_stay_few():
    out = io.StringIO()
    p = ProgressPrinter(out)
    for it in range(1, 11):
        p(stage(it))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("stage 2 [##") and "1/10" in lines[0] and "2.00 it/s" in lines[0] and "ETA 4s" in lines[0]
    assert lines[-1].startswith("stage 2 [####################] 10/10") and "ETA 0s" in lines[-1]
    assert len(lines) == 2          # not a line per iteration in a log file (every 10 s at most)


def test_full_size_step_and_quiet():
    out = io.StringIO()
    p = ProgressPrinter(out)
    for step, it in (("start", 0), ("upsample", 0), ("smooth", 1), ("smooth", 2), ("done", 2)):
        p(HighresProgress(step, it, 1e-2, 1e-3, 1.0, (30, 40)))
    text = out.getvalue()
    assert "full size 40x30: local affine upsampling" in text and "CG iteration 1 residual 1.00e-02" in text
    assert "CG iteration 2" not in text and text.rstrip().endswith("done in 1.0s")
    quiet = io.StringIO()
    ProgressPrinter(quiet, quiet=True)(stage(1))
    assert quiet.getvalue() == ""
