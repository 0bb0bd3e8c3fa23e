"""The Deep Photo Style Transfer objective (DPST_SPEC.md), term by term.

    L = w_content * L_content(relu4_2) + w_style * sum_l beta_l * L_style+(l) + w_tv * L_tv + lambda * L_m

* L_content = mean((F_O - F_I)^2) at relu4_2.
* L_style+(l) = sum_c mean((G_c[O] - G_c[S])^2) * mean(M_c of the content at layer l), with masked Gram
  matrices G_c = (F*M_c)(F*M_c)^T / (C*h*w*mean(M_c)) and beta_l = 1/5 over relu1_1..relu5_1.
* L_tv = 0.5 * sum of squared horizontal and vertical differences of the image in Caffe space (0..255),
  whose gradient is the reference's TV module.
* L_m = sum_c V_c^T M_I V_c with V the output in RGB 0..1 and M_I the content's matting Laplacian
  (dpst_ext.MattingLaplacian, eps 1e-7). The optimisation variable lives in Caffe space (0..255), and
  autograd carries the 1/255 of V = (x + mean)/255 exactly as the reference's gradient did (/256 there).
"""
from __future__ import annotations

import torch

from .engine.laplacian import MattingLaplacian
from .masks import MaskPair, downsample_for_layers
from .options import CONTENT_LAYER, STYLE_LAYERS, LossWeights
from .vgg import VGG19Features, deprocess

__all__ = ["masked_gram", "mask_support", "masked_style_loss", "content_loss", "tv_loss", "LossWeights",
           "DPSTObjective", "STYLE_LAYERS", "CONTENT_LAYER"]



def mask_support(masks: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per mask of ``masks`` (K, h, w): the flat indices of its nonzero pixels and its values there.
    Computed once per objective (torch.nonzero waits for the device on CUDA) and reused every iteration."""
    m = masks.reshape(masks.shape[0], -1)
    out = []
    for mk in m:
        idx = torch.nonzero(mk).squeeze(1)
        out.append((idx, mk.index_select(0, idx)))
    return out


def masked_gram(features: torch.Tensor, masks: torch.Tensor, support=None) -> torch.Tensor:
    """Gram matrices per mask: (K, C, C) = (F*M_k)(F*M_k)^T / (C*h*w*mean(M_k)); 0 where a mask is empty.

    ``features`` (C, h, w), ``masks`` (K, h, w); ``support``: mask_support(masks), if already computed.
    Each product runs over the pixels where its mask is nonzero only: labels mostly tile the image, so K
    labels cost about what one does in time and memory, where (F*M_k) over all pixels would cost K times
    as much (an iteration with 6 labels took 2x).
    """
    c, h, w = features.shape
    f = features.reshape(c, h * w)
    m = masks.reshape(masks.shape[0], h * w)
    grams = []
    for idx, values in (mask_support(masks) if support is None else support):
        fk = f.index_select(1, idx) * values                         # (C, pixels of mask k)
        grams.append(fk @ fk.T)
    g = torch.stack(grams) if grams else features.new_zeros(0, c, c)
    area = m.mean(dim=1)
    norm = torch.where(area > 0, c * h * w * area, torch.ones_like(area))
    return g / norm.view(-1, 1, 1)


def masked_style_loss(out_features: torch.Tensor, content_masks: torch.Tensor, target_grams: torch.Tensor,
                      support=None) -> torch.Tensor:
    """sum_k mean((G_k[O] - G_k[S])^2) * mean(M_k of the content); ``target_grams`` (K, C, C);
    ``support``: mask_support(content_masks), if already computed."""
    g = masked_gram(out_features, content_masks, support)
    weights = content_masks.reshape(content_masks.shape[0], -1).mean(dim=1)
    return ((g - target_grams).square().mean(dim=(1, 2)) * weights).sum()


def content_loss(out_features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out_features - target).square().mean()


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """0.5 * sum of squared neighbour differences of x (N, 3, H, W) (the reference TV's energy)."""
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return 0.5 * (dx.square().sum() + dy.square().sum())


def _feature_sizes(names, h, w):
    """Output (h, w) of each layer for an h x w input (pooling halves, flooring as MaxPool2d(2, 2))."""
    sizes = {}
    for n in names:
        if n.startswith("pool"):
            h, w = h // 2, w // 2
        sizes[n] = (h, w)
    return sizes


class DPSTObjective:
    """Targets of one content/style pair at one resolution, and the loss of an output.

    ``content``, ``style``: (3, H, W) RGB 0..1 (float32, on the VGG's device). ``masks``: a MaskPair at
    the two images' sizes (MaskPair.single for no masks). ``__call__(x)`` takes the output in Caffe space
    (1, 3, H, W) and returns a dict of weighted terms plus "total"; the photorealism term is included
    when ``use_photoreal`` and weights.photoreal > 0.
    """

    def __init__(self, vgg: VGG19Features, content: torch.Tensor, style: torch.Tensor, masks: MaskPair,
                 weights: LossWeights | None = None, style_layers=STYLE_LAYERS, content_layer=CONTENT_LAYER,
                 style_layer_weights=None, laplacian_eps: float = 1e-7, laplacian_dtype=torch.float64):
        self.vgg = vgg
        self.weights = weights or LossWeights()
        self.style_layers = tuple(style_layers)
        self.content_layer = content_layer
        missing = [n for n in (*self.style_layers, content_layer) if n not in vgg.layers]
        if missing:
            raise ValueError(f"the VGG was built without layers {missing}")
        if style_layer_weights is None:
            style_layer_weights = [1.0 / len(self.style_layers)] * len(self.style_layers)
        if len(style_layer_weights) != len(self.style_layers):
            raise ValueError(f"style_layer_weights must have {len(self.style_layers)} entries, got {len(style_layer_weights)}")
        self.beta = dict(zip(self.style_layers, map(float, style_layer_weights)))
        if tuple(masks.content.shape[1:]) != tuple(content.shape[1:]):
            raise ValueError(f"content masks are {tuple(masks.content.shape[1:])}, content {tuple(content.shape[1:])}")
        if tuple(masks.style.shape[1:]) != tuple(style.shape[1:]):
            raise ValueError(f"style masks are {tuple(masks.style.shape[1:])}, style {tuple(style.shape[1:])}")
        self.content, self.style, self.masks = content, style, masks
        dev = content.device
        names = vgg.names
        c_masks = downsample_for_layers(masks.content.to(dev), names, _feature_sizes(names, *content.shape[1:]))
        s_masks = downsample_for_layers(masks.style.to(dev), names, _feature_sizes(names, *style.shape[1:]))
        self.content_masks = {n: c_masks[n] for n in self.style_layers}
        self._support = {n: mask_support(c_masks[n]) for n in self.style_layers}   # fixed for the whole run
        with torch.no_grad():
            fc = vgg(content[None])
            fs = vgg(style[None])
            self.content_target = fc[content_layer][0].detach()
            self.style_targets = {n: masked_gram(fs[n][0], s_masks[n]).detach() for n in self.style_layers}
        self._laplacian = None
        self.laplacian_eps = laplacian_eps
        self.laplacian_dtype = laplacian_dtype

    def retarget(self, image: torch.Tensor):
        """Make the content loss compare with ``image``'s features (RGB 0..1, the content's size) instead of
        the content's. The start of a recolouring method is the content in the style's colours: measured
        against the content itself, the content loss would pull the colours back."""
        if tuple(image.shape) != tuple(self.content.shape):
            raise ValueError(f"image must have the content's shape {tuple(self.content.shape)}, got {tuple(image.shape)}")
        with torch.no_grad():
            self.content_target = self.vgg(image[None].to(self.content.device))[self.content_layer][0].detach()

    @property
    def laplacian(self) -> MattingLaplacian:
        """The content's matting Laplacian, built on first use (stage 1 does not need it)."""
        if self._laplacian is None:
            self._laplacian = MattingLaplacian(self.content.to(self.laplacian_dtype), eps=self.laplacian_eps)
        return self._laplacian

    def photoreal(self, rgb: torch.Tensor) -> torch.Tensor:
        """The photorealism term before its weight: sum_c V_c^T M_I V_c (MattingLaplacian.quad) for an RGB 0..1
        image (3, H, W). dpst_ext.metrics.photoreal_residual is the same per pixel, as a quality measure."""
        return self.laplacian.quad(rgb.to(self.laplacian_dtype))

    def __call__(self, x: torch.Tensor, use_photoreal: bool = False) -> dict[str, torch.Tensor]:
        w = self.weights
        feats = self.vgg(x, caffe_input=True)
        terms = {"content": w.content * content_loss(feats[self.content_layer][0], self.content_target)}
        style = x.new_zeros(())
        for n in self.style_layers:
            style = style + self.beta[n] * masked_style_loss(feats[n][0], self.content_masks[n], self.style_targets[n],
                                                             self._support[n])
        terms["style"] = w.style * style
        terms["tv"] = w.tv * tv_loss(x)
        if use_photoreal and w.photoreal > 0:
            terms["photoreal"] = (w.photoreal * self.photoreal(deprocess(x)[0])).to(x.dtype)
        terms["total"] = sum(terms.values())
        return terms
