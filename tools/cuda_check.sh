#!/usr/bin/env bash
# Compile checks of the CUDA kernels on a machine without a GPU (`make cuda-check`; see issue 3).
#
#   tools/cuda_check.sh [kernels|extension|all]        (default: all)
#
# kernels    nvcc -c -Xptxas -v of every kernel (tools/cuda_kernels_instantiate.cu instantiates them
#            for float/double, int32/int64) for sm_75, sm_80, sm_86 and sm_90: prints registers,
#            static shared memory, stack, spills per kernel and arch, and fails on any spill, stack
#            frame or local memory; then the dynamic shared memory per kernel at the GPU block shapes.
# extension  builds dpst_ext against a CUDA build of torch in its own venv (a copy of the source tree,
#            so the working tree's CPU build is untouched), imports it, checks that every dpst op has a
#            CUDA kernel registered, and lists the SASS/PTX architectures inside _C.so (cuobjdump from
#            the PyPI package nvidia-cuda-cuobjdump).
#
# Environment: CUDA_HOME (default /usr/local/cuda; the `nvcc` on PATH may be a wrapper script, from which
# torch would guess a wrong CUDA_HOME), DPST_CUDA_VENV (default build/venv-cudatorch), CUDA_TORCH_SPEC
# (default torch==2.14.1, which matches nvcc 13.0), TORCH_CUDA_ARCH_LIST (default 7.5;8.0;8.6;9.0+PTX).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-7.5;8.0;8.6;9.0+PTX}"
NVCC="$CUDA_HOME/bin/nvcc"
ARCHS="75 80 86 90"
OUT="$ROOT/build/cuda_check"
mkdir -p "$OUT"
what="${1:-all}"

check_kernels() {
  local t0=$SECONDS
  "$NVCC" --version | tail -1
  for arch in $ARCHS; do
    "$NVCC" -c -std=c++20 -O3 -I csrc -arch="sm_$arch" -Xptxas -v ${DPST_NVCC_FLAGS:-} \
      tools/cuda_kernels_instantiate.cu -o "$OUT/kernels_sm_$arch.o" 2> "$OUT/ptxas_sm_$arch.log"
  done
  python3 - "$OUT" $ARCHS <<'EOF'
import re, subprocess, sys
out, archs = sys.argv[1], sys.argv[2:]
bad = []
print(f"{'kernel':58s} {'arch':6s} {'regs':>4s} {'smem':>5s} {'stack':>5s} {'spill st/ld':>11s}")
for arch in archs:
    text = open(f"{out}/ptxas_sm_{arch}.log").read()
    # One block per entry function: "Compiling entry function '<mangled>' for 'sm_XX'" then its figures.
    for name, body in re.findall(r"Compiling entry function '(\S+)' for 'sm_\d+'(.*?)(?=Compiling entry function|\Z)", text, re.S):
        num = lambda pat: int(m.group(1)) if (m := re.search(pat, body)) else 0
        regs, smem = num(r"Used (\d+) registers"), num(r"(\d+) bytes smem")
        stack, st, ld = num(r"(\d+) bytes stack frame"), num(r"(\d+) bytes spill stores"), num(r"(\d+) bytes spill loads")
        lmem = num(r"(\d+) bytes lmem")
        pretty = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip()
        pretty = re.sub(r"\(.*", "", pretty.replace("dpst::cuda::", ""))
        print(f"{pretty:58s} sm_{arch:3s} {regs:4d} {smem:5d} {stack:5d} {st:5d}/{ld:<5d}")
        if st or ld or stack or lmem:
            bad.append(f"{pretty} sm_{arch}: stack {stack} B, spill stores {st} B, loads {ld} B, lmem {lmem} B")
    if "lmem" in text and re.search(r"[1-9]\d* bytes lmem", text):
        bad.append(f"sm_{arch}: local memory in use")
# Every __global__ kernel of csrc/ must have been compiled (tools/cuda_kernels_instantiate.cu instantiates
# the templates): a kernel missing from the instantiation file would escape these checks.
import glob
defined = {k for path in glob.glob("csrc/cuda/*.cu*") for k in re.findall(r"__global__\s+void\s+(\w+)", open(path).read())}
demangled = (subprocess.run(["c++filt", n], capture_output=True, text=True).stdout for n in
             re.findall(r"Compiling entry function '(\S+)'", open(f"{out}/ptxas_sm_{archs[0]}.log").read()))
compiled = {re.sub(r"^void |[<(].*", "", d.strip().replace("dpst::cuda::", "")) for d in demangled}
if defined - compiled:
    bad.append(f"kernels not instantiated in tools/cuda_kernels_instantiate.cu: {sorted(defined - compiled)}")
if bad:
    print("FAIL: register spills, local memory or kernels not compiled:\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"all {len(defined)} kernels compiled; no spills, no stack frames, no local memory on",
      ", ".join("sm_" + a for a in archs))
EOF
  # Dynamic shared memory depends on the block shape, so ptxas cannot report it: the kernels' own
  # layout functions compute it (built as plain C++ through the emulation header).
  ${CXX:-g++} -std=c++20 -O1 -DDPST_EMULATE_CUDA -I csrc -pthread tests/native/kernels_check.cpp \
    -o "$OUT/kernels_check"
  "$OUT/kernels_check" --shared
  echo "kernels: $((SECONDS - t0)) s"
}

check_extension() {
  local t0=$SECONDS
  local venv="${DPST_CUDA_VENV:-$ROOT/build/venv-cudatorch}"  # under build/: ignored by git, not copied
  local py="$venv/bin/python"
  if [ ! -x "$py" ]; then python3 -m venv "$venv"; fi
  "$py" -m pip install --quiet "${CUDA_TORCH_SPEC:-torch==2.14.1}" numpy ninja pybind11 "setuptools>=64" \
    wheel nvidia-cuda-cuobjdump
  echo "venv ready: $((SECONDS - t0)) s"
  local t1=$SECONDS
  local src="$OUT/src"
  rm -rf "$src" && mkdir -p "$src"
  git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$src"
  (cd "$src" && MAX_JOBS="${MAX_JOBS:-2}" DPST_NO_NATIVE=1 "$py" -m pip install --quiet \
    --no-build-isolation . > "$OUT/extension_build.log" 2>&1) \
    || { tail -40 "$OUT/extension_build.log"; echo "FAIL: CUDA build of the extension"; exit 1; }
  echo "extension built: $((SECONDS - t1)) s"
  (cd "$OUT" && "$py" - <<'EOF'
import os, subprocess, sys
import torch
import dpst_ext
from dpst_ext import _C

print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), dpst_ext from {os.path.dirname(dpst_ext.__file__)}")
# Every op of the contract (csrc/dpst.cpp), read from the dispatcher rather than listed by hand.
ops = sorted(name.split("::")[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("dpst::"))
missing = [f"{op}:{key}" for op in ops for key in ("CPU", "CUDA")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"dpst::{op}", key)]
if missing:
    sys.exit(f"FAIL: no kernel registered for {missing}")
print("CPU and CUDA kernels registered for dpst::" + ", dpst::".join(ops))

import glob, sysconfig
found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "**", "bin", "cuobjdump"), recursive=True)
if not found:
    sys.exit("FAIL: cuobjdump not found (pip package nvidia-cuda-cuobjdump)")
cuobjdump = found[0]
so = _C.__file__
elf = subprocess.run([cuobjdump, "--list-elf", so], capture_output=True, text=True, check=True).stdout
ptx = subprocess.run([cuobjdump, "--list-ptx", so], capture_output=True, text=True, check=True).stdout
sass = sorted({w.split(".")[-2] for w in elf.split() if w.endswith(".cubin")})
ptxs = sorted({w.split(".")[-2] for w in ptx.split() if w.endswith(".ptx")})
print(f"{os.path.basename(so)}: SASS {' '.join(sass)}; PTX {' '.join(ptxs)}")
want = ["sm_75", "sm_80", "sm_86", "sm_90"]
if [a for a in want if a not in sass]:
    sys.exit(f"FAIL: SASS missing for {[a for a in want if a not in sass]}")
EOF
  )
  echo "extension: $((SECONDS - t0)) s"
}

case "$what" in
  kernels) check_kernels ;;
  extension) check_extension ;;
  all) check_kernels; check_extension ;;
  *) echo "usage: $0 [kernels|extension|all]"; exit 2 ;;
esac
