"""Quality of style transfer outputs on the paper's example pairs: two model-free metrics (issue 4).

    python benchmarks/quality.py [--data DIR] [--ours DIR] [--pairs 1,5,9]

* photorealism residual = (1/N) sum_c V_c(O)^T M_I V_c(O), O in 0..1, M_I the content's matting
  Laplacian (eps 1e-7). Lower: the output is closer to a locally affine recolouring of the content.
* style distance = mean over labels present in both images of the sliced Wasserstein-1 distance between
  the Lab colours of the output's pixels and the style's pixels with that label. Lower: more faithful.

Rows: the published final result shipped with each pair, a global colour transfer (Reinhard: Lab
mean/std matching) and, with --ours DIR, our outputs (DIR/outN.png).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from dpst_ext.engine import MattingLaplacian
from dpst_ext.image_io import load_image
from dpst_ext.masks import MaskPair, parse_mask

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dpst_examples"
PAIRS = tuple(range(1, 60, 4))


def lab(rgb: torch.Tensor) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb.permute(1, 2, 0).double().clamp(0, 1).numpy())


def photoreal_residual(content: torch.Tensor, output: torch.Tensor) -> float:
    L = MattingLaplacian(content.double(), eps=1e-7)
    return float(L.quad(output.double())) / (output.shape[1] * output.shape[2])


def sliced_w1(a: np.ndarray, b: np.ndarray, directions: int = 64, quantiles: int = 512, seed: int = 0) -> float:
    """Sliced Wasserstein-1 between point sets a (n, 3) and b (m, 3): mean over random unit directions of
    the 1-D W1 between the projections, computed on a common quantile grid."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(directions, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q = (np.arange(quantiles) + 0.5) / quantiles
    pa = np.quantile(a @ d.T, q, axis=0)
    pb = np.quantile(b @ d.T, q, axis=0)
    return float(np.abs(pa - pb).mean())


def style_distance(output, style, pair: MaskPair) -> float:
    lo, ls = lab(output).reshape(-1, 3), lab(style).reshape(-1, 3)
    dists = []
    for k in range(len(pair.names)):
        mo = pair.content[k].reshape(-1).numpy() > 0.5
        ms = pair.style[k].reshape(-1).numpy() > 0.5
        if mo.any() and ms.any():
            dists.append(sliced_w1(lo[mo], ls[ms]))
    return float(np.mean(dists))


def reinhard(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    from skimage.color import lab2rgb

    lc, ls = lab(content), lab(style)
    out = (lc - lc.mean((0, 1))) / (lc.std((0, 1)) + 1e-8) * ls.std((0, 1)) + ls.mean((0, 1))
    return torch.from_numpy(lab2rgb(out).transpose(2, 0, 1)).float()


def fit(img: torch.Tensor, hw) -> torch.Tensor:
    if tuple(img.shape[1:]) == tuple(hw):
        return img
    return torch.nn.functional.interpolate(img[None], size=tuple(hw), mode="bilinear", align_corners=False)[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--ours", type=Path, default=None, help="folder with our outputs outN.png")
    p.add_argument("--pairs", default=",".join(map(str, PAIRS)))
    p.add_argument("--json", type=Path, default=None, help="also write the per-pair metrics here")
    p.add_argument("--sheet", type=Path, default=None,
                   help="also write a contact sheet (content | style | published | ours) of --sheet-pairs")
    p.add_argument("--sheet-pairs", default="1,9,25,45")
    args = p.parse_args(argv)
    rows, sheet_rows = {}, []
    sheet_pairs = {int(x) for x in args.sheet_pairs.split(",")}
    for n in (int(x) for x in args.pairs.split(",")):
        d = args.data
        c = load_image(d / "input" / f"in{n}.png")
        s = load_image(d / "style" / f"tar{n}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pair = MaskPair.from_labels(parse_mask(d / "segmentation" / f"in{n}.png", tuple(c.shape[1:])),
                                        parse_mask(d / "segmentation" / f"tar{n}.png", tuple(s.shape[1:])), warn=False)
        outputs = {"published": fit(load_image(d / "final_results" / f"best{n}_t_1000.png"), c.shape[1:]),
                   "reinhard": reinhard(c, s)}
        if args.ours is not None and (args.ours / f"out{n}.png").is_file():
            outputs["ours"] = fit(load_image(args.ours / f"out{n}.png"), c.shape[1:])
        if args.sheet is not None and n in sheet_pairs and "ours" in outputs:
            from dpst_ext.demo import contact_sheet

            sheet_rows.append(contact_sheet([c, s, outputs["published"], outputs["ours"]],
                                            [f"pair {n}: content", "style", "published (reference release)", "ours"],
                                            height=200))
        for name, o in outputs.items():
            rows.setdefault(name, []).append((n, photoreal_residual(c, o), style_distance(o, s, pair)))
            print(f"pair {n:2d} {name:9s} photoreal residual {rows[name][-1][1]:.5f}  style distance {rows[name][-1][2]:.2f}",
                  flush=True)
    if sheet_rows:
        from PIL import Image

        from dpst_ext.image_io import save_image

        sheet = Image.new("RGB", (max(r.width for r in sheet_rows), sum(r.height + 4 for r in sheet_rows)), "white")
        y = 0
        for r in sheet_rows:
            sheet.paste(r, (0, y))
            y += r.height + 4
        save_image(sheet, args.sheet)
    if args.json is not None:
        args.json.write_text(json.dumps({name: [{"pair": n, "photoreal_residual": a, "style_distance": b}
                                                for n, a, b in r] for name, r in rows.items()}, indent=1))
    print("average over pairs:")
    for name, r in rows.items():
        a = np.array([x[1:] for x in r])
        print(f"  {name:9s} ({len(r)} pairs) photoreal residual {a[:, 0].mean():.5f}  style distance {a[:, 1].mean():.2f}")


if __name__ == "__main__":
    main()
