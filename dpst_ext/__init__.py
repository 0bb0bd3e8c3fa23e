"""dpst_ext: Deep Photo Style Transfer with a fast C++/CUDA matting-Laplacian engine.

Layers, each importing only the ones below it:

    dpst_ext.engine   the numerical core, importable alone: ``MattingLaplacian``
                      (dpst_ext/engine/laplacian.py) over the ops in dpst_ext/engine/ops.py, whose kernels
                      are csrc/cpu/laplacian_cpu.cpp (CPU) and csrc/cuda/ (CUDA), the per-window maths
                      csrc/window_math.h; smoothing, multigrid, upsampling, the memory plan, references
    dpst_ext.*        style transfer: image_io, vgg, masks, automask, losses, transfer
    dpst_ext.batch    many photos on Ray (the optional extra [batch])
    dpst_ext.cli      the ``dpst`` command (and dpst_ext.demo)

The names in ``__all__`` load their module on first use, so ``import dpst_ext`` (and ``dpst --help``)
imports neither torch nor the pipeline.
"""
import importlib
import importlib.machinery
import sys
import types

from .engine._lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {  # name -> (module, attribute or None for the module itself)
    "ops": ("dpst_ext.engine.ops", None),
    "MattingLaplacian": ("dpst_ext.engine.laplacian", "MattingLaplacian"),
    "as_image_tensor": ("dpst_ext.engine.laplacian", "as_image_tensor"),
    "transfer": ("dpst_ext.transfer", "transfer"),
    "run_transfer": ("dpst_ext.transfer", "run_transfer"),
    "batch": ("dpst_ext.batch", "batch"),
    "stylize_video": ("dpst_ext.video", "stylize_video"),      # needs the [video] extra (PyAV)
    "stylize_frames": ("dpst_ext.video", "stylize_frames"),
}
__all__ = list(_EXPORTS)

# Moved to dpst_ext.engine; the old paths (`import dpst_ext.ops`, `from dpst_ext.laplacian import ...`,
# `dpst_ext.smoothing`) stay for one release and go in the next. They give the engine's module itself,
# not a copy (_MovedModuleFinder below).
_MOVED = frozenset({"ops", "laplacian", "reference", "smoothing", "multigrid", "upsample", "memory",
                    "postprocess", "highres"})

__getattr__ = lazy_getattr(__name__, {**{m: (f"{__name__}.{m}", None) for m in _MOVED}, **_EXPORTS})


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``dpst_ext.transfer`` and ``dpst_ext.batch`` are functions, although the submodules dpst_ext.transfer
    and dpst_ext.batch have the same names: importing a submodule must not rebind the package's attribute."""

    def __setattr__(self, name, value):
        if name in ("transfer", "batch") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


class _MovedModuleFinder:
    """The old import paths: a meta-path finder and loader answering dpst_ext.NAME (NAME in _MOVED) with
    the module dpst_ext.engine.NAME, so both names are one module object."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in _MOVED:
            return importlib.machinery.ModuleSpec(fullname, cls)
        return None

    @staticmethod
    def create_module(spec):
        return None  # a placeholder module, replaced below

    @staticmethod
    def exec_module(module):
        # The import system returns what sys.modules holds after this call: the engine's module, whose
        # own __spec__ and __name__ stay dpst_ext.engine.NAME.
        moved = module.__name__.rpartition(".")[2]
        sys.modules[module.__name__] = importlib.import_module(f"{__name__}.engine.{moved}")


sys.meta_path[:] = [_MovedModuleFinder, *(f for f in sys.meta_path if getattr(f, "__module__", None) != __name__)]
