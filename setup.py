"""Build of dpst_ext's C++/CUDA extension.

    pip install --no-build-isolation -e .      (what `make` runs; see README)

--no-build-isolation builds against the torch already installed in the environment instead of
downloading a second copy into an isolated build environment.

Extensions:
  dpst_ext._C    the engine ops (csrc/dpst.cpp, csrc/cpu/*.cpp), plus csrc/cuda/*.cu when a CUDA
                 toolkit and a CUDA build of torch are both present.
  dpst_ext._emu  the CUDA kernels compiled as plain C++ under DPST_EMULATE_CUDA (csrc/emu/*.cpp), so
                 tests run the exact kernel bodies on the CPU. Skipped when csrc/emu has no sources.

Environment:
  DPST_NO_NATIVE=1        do not compile for the build machine's CPU (-march=native)
  DPST_FORCE_CUDA=0/1     force the CUDA build off/on (default: on when torch and nvcc support it)
  TORCH_CUDA_ARCH_LIST    GPU architectures (default "7.5;8.0;8.6;9.0+PTX")
"""
import glob
import os
import sys

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def want_cuda():
    forced = os.environ.get("DPST_FORCE_CUDA")
    if forced is not None:
        return forced == "1"
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


# -fno-math-errno: we never read errno, and it lets sqrt vectorise (window_stats, 2x at 4 MP).
cxx_flags = ["-O3", "-std=c++20", "-fno-math-errno"]
if os.environ.get("DPST_NO_NATIVE") != "1":
    cxx_flags.append("-march=native")

# at::parallel_for (ATen/Parallel-inl.h) is a header template: compiled without OpenMP it runs its body
# on the calling thread alone, whatever torch.set_num_threads says. With -fopenmp it runs on torch's own
# OpenMP pool (libgomp.so.1 is torch's, already loaded when the extension is imported).
link_flags = []
if sys.platform.startswith("linux"):
    cxx_flags.append("-fopenmp")
    link_flags.append("-fopenmp")

sources = rel("csrc/dpst.cpp") + rel("csrc/cpu/*.cpp")
ext_kwargs = dict(extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags,
                  include_dirs=[os.path.join(ROOT, "csrc")])
if want_cuda():
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "7.5;8.0;8.6;9.0+PTX")
    ext_kwargs["extra_compile_args"]["nvcc"] = ["-O3", "-std=c++20", "-lineinfo"]
    ext_kwargs["define_macros"] = [("DPST_WITH_CUDA", "1")]
    ext_modules = [cpp_extension.CUDAExtension("dpst_ext._C", sources + rel("csrc/cuda/*.cu"), **ext_kwargs)]
else:
    print("dpst_ext: building the CPU ops only (no CUDA toolkit or CPU-only torch); "
          "CUDA kernels are available after installing a CUDA build of torch with nvcc present.",
          file=sys.stderr)
    ext_modules = [cpp_extension.CppExtension("dpst_ext._C", sources, **ext_kwargs)]

emu_sources = rel("csrc/emu/*.cpp")
if emu_sources:
    ext_modules.append(cpp_extension.CppExtension(
        "dpst_ext._emu", emu_sources,
        extra_compile_args={"cxx": ["-O2", "-std=c++20", "-DDPST_EMULATE_CUDA"]},
        include_dirs=[os.path.join(ROOT, "csrc")]))

setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
