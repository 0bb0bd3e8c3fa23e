"""Peak memory of each op at a given size, measured in a fresh child process per op.

Linux only: the child resets its peak resident set (writing 5 to /proc/self/clear_refs) after the
inputs are ready, runs the op once (after a warm-up on a tiny image, so numba's compilation is not
counted), and reports VmHWM - VmRSS(before) as the op's peak extra memory, next to the bytes of what
it returns. tracemalloc cannot see torch's allocations; the kernel's counters see everything.

    python benchmarks/memory.py 4        # JSON lines, one per op
"""
import json
import os
import subprocess
import sys

OPS = ("ours_stats", "ours_matvec3", "ours_stencil", "ours_stencil_matvec3", "ours_csr", "pymatting_csr")


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _child(op, mp):
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")
    import numpy as np
    import torch

    torch.set_num_threads(2)
    from dpst_ext.engine import ops
    from dpst_ext.samples import photo_megapixels
    from pymatting.laplacian.cf_laplacian import cf_laplacian

    image = photo_megapixels(mp, dtype=torch.float32)
    n = image.shape[1] * image.shape[2]
    image_hwc = np.ascontiguousarray(image.double().permute(1, 2, 0).numpy())
    stats = ops.window_stats(image, 1e-7)
    v3 = torch.rand(3, *image.shape[1:])
    small = image[:, :16, :16].contiguous()
    if op == "ours_stats":
        run = lambda: (ops.window_stats(small, 1e-7), ops.window_stats(image, 1e-7))[1]  # noqa: E731
    elif op == "ours_matvec3":
        run = lambda: ops.laplacian_matvec(image, stats, v3)  # noqa: E731
    elif op == "ours_stencil":
        run = lambda: ops.laplacian_stencil(image, 1e-7)  # noqa: E731
    elif op == "ours_stencil_matvec3":
        stencil = ops.laplacian_stencil(image, 1e-7)
        run = lambda: ops.stencil_matvec(stencil, v3)  # noqa: E731
    elif op == "ours_csr":
        run = lambda: ops.laplacian_csr(image, stats)  # noqa: E731
    else:
        cf_laplacian(image_hwc[:16, :16].copy(), epsilon=1e-7, radius=1)  # numba compile
        run = lambda: cf_laplacian(image_hwc, epsilon=1e-7, radius=1)  # noqa: E731
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _status_kb("VmRSS")
    out = run()
    peak = _status_kb("VmHWM")
    if isinstance(out, tuple):
        out_bytes = sum(t.numel() * t.element_size() for t in out)
    elif isinstance(out, torch.Tensor):
        out_bytes = out.numel() * out.element_size()
    else:  # scipy CSR
        out_bytes = out.data.nbytes + out.indices.nbytes + out.indptr.nbytes
    print(json.dumps(dict(op=op, megapixels=mp, pixels=n, peak_extra_bytes=(peak - before) * 1024,
                          output_bytes=out_bytes)))


def measure(mp, ops_=OPS):
    """Run each op in its own child; returns a list of dicts."""
    rows = []
    for op in ops_:
        res = subprocess.run([sys.executable, __file__, "--child", op, str(mp)], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], float(sys.argv[3]))
    else:
        for row in measure(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0):
            print(json.dumps(row))
