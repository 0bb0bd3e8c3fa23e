"""The layers import alone: dpst_ext.engine without the style-transfer application, `import dpst_ext` and
`dpst --help` without the pipeline; the old import paths (dpst_ext.ops, ...) are the engine's modules, and
no code of the project uses them.

The import checks run in a fresh interpreter (this one has imported everything by now), on the dpst_ext
this process imports.
"""
import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dpst_ext
import dpst_ext.engine

ROOT = str(Path(dpst_ext.__file__).resolve().parents[1])
APPLICATION = ["dpst_ext.vgg", "dpst_ext.automask", "dpst_ext.transfer", "dpst_ext.losses", "dpst_ext.masks",
               "dpst_ext.image_io", "dpst_ext.cli", "dpst_ext.demo"]
MOVED = ["ops", "laplacian", "reference", "smoothing", "multigrid", "upsample", "memory", "postprocess", "highres"]


def modules_after(code: str) -> set:
    """sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


def test_engine_imports_without_the_application():
    loaded = modules_after(
        "import torch\n"
        "import dpst_ext.engine as engine\n"
        "image = torch.rand(3, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))\n"
        "L = engine.MattingLaplacian(image)\n"
        "ones = torch.ones(12, 10, dtype=torch.float64)\n"
        "assert float((L @ ones).abs().max()) < 1e-9   # constants are in M's null space\n"
        "for name in engine.__all__:                    # every engine module and export\n"
        "    getattr(engine, name)\n")
    assert {"dpst_ext.engine.ops", "dpst_ext._C", "dpst_ext.engine.highres", "dpst_ext.engine.reference"} <= loaded
    assert [m for m in APPLICATION if m in loaded] == []
    assert [m for m in loaded if m.split(".")[0] in ("torchvision", "PIL")] == []


def test_import_dpst_ext_loads_nothing_until_used():
    loaded = modules_after("import dpst_ext")
    assert [m for m in APPLICATION + ["torch", "dpst_ext.engine.ops", "dpst_ext._C"] if m in loaded] == []

    loaded = modules_after("import dpst_ext\ndpst_ext.MattingLaplacian")
    assert "dpst_ext.engine.ops" in loaded
    assert [m for m in APPLICATION if m in loaded] == []


def test_dpst_help_does_not_load_the_pipeline():
    loaded = modules_after(
        "from dpst_ext.cli import build_parser, main\n"
        "build_parser().format_help()\n"
        "try:\n"
        "    main(['transfer', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n")
    pipeline = ["dpst_ext.transfer", "dpst_ext.vgg", "dpst_ext.automask", "dpst_ext.losses"]
    assert [m for m in pipeline if m in loaded] == []


def test_old_import_paths_are_the_engine_modules():
    for name in MOVED:
        old, new = importlib.import_module(f"dpst_ext.{name}"), importlib.import_module(f"dpst_ext.engine.{name}")
        assert old is new and getattr(dpst_ext, name) is new, name
        assert new.__name__ == new.__spec__.name == f"dpst_ext.engine.{name}"
    from dpst_ext.ops import smooth_local_affine
    assert smooth_local_affine is dpst_ext.engine.ops.smooth_local_affine

    # Old paths imported first, in a fresh interpreter: `import dpst_ext.NAME` binds the engine's module.
    modules_after("import sys\n" + "".join(
        f"import dpst_ext.{n}\n"
        f"assert dpst_ext.{n} is sys.modules['dpst_ext.engine.{n}'] is sys.modules['dpst_ext.{n}']\n" for n in MOVED))


def test_top_level_exports():
    importlib.import_module("dpst_ext.transfer")   # the submodule does not shadow the function
    transfer_module = sys.modules["dpst_ext.transfer"]
    assert dpst_ext.transfer is transfer_module.transfer and dpst_ext.run_transfer is transfer_module.run_transfer
    from dpst_ext import transfer
    assert transfer is transfer_module.transfer
    assert dpst_ext.ops is dpst_ext.engine.ops
    assert dpst_ext.MattingLaplacian is dpst_ext.engine.laplacian.MattingLaplacian
    assert dpst_ext.as_image_tensor is dpst_ext.engine.laplacian.as_image_tensor
    assert sorted(dpst_ext.__all__) == ["MattingLaplacian", "as_image_tensor", "batch", "ops", "run_transfer",
                                        "stylize_frames", "stylize_video", "transfer"]
    importlib.import_module("dpst_ext.batch")      # nor does dpst_ext.batch shadow batch()
    assert dpst_ext.batch is sys.modules["dpst_ext.batch"].batch
    assert set(dpst_ext.__all__) <= set(dir(dpst_ext))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        dpst_ext.nothing


def test_engine_exports():
    engine = dpst_ext.engine
    assert set(engine.__all__) <= set(dir(engine))
    for name in engine.__all__:
        value = getattr(engine, name)
        assert value is not None, name
    assert engine.MattingLaplacian is engine.laplacian.MattingLaplacian
    assert engine.smooth_local_affine is engine.ops.smooth_local_affine   # the compiled op, not postprocess's
    assert engine.smooth is engine.smoothing.smooth and engine.upscale_result is engine.highres.upscale_result
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        engine.nothing


def test_the_project_imports_the_engine_by_its_new_paths():
    """The old paths are for outside users only: dpst_ext/, tests/ and benchmarks/ import dpst_ext.engine.*
    (every import statement, also those inside functions)."""
    old_names = {f"dpst_ext.{name}" for name in MOVED}
    found = []
    for path in sorted(p for d in ("dpst_ext", "tests", "benchmarks") for p in Path(ROOT, d).rglob("*.py")):
        if path.name == "test_layers.py":
            continue
        package = ".".join(path.relative_to(ROOT).parent.parts)   # for relative imports
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                module = ".".join(p for p in (base, node.module) if p)
                names = [module] + [f"{module}.{alias.name}" for alias in node.names]   # `from . import ops`
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n in old_names]
    assert found == []
