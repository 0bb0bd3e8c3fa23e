"""Region correspondence from VGG-19 features instead of layout: two labellings to set against the
automatic masks (dpst_ext.automask, which pairs regions by VGG features AND position), on the example pairs.

    python benchmarks/correspondence.py masks VARIANT OUT_DIR [--pairs 1,5,9]   # OUT_DIR/contentN.png, styleN.png
    python benchmarks/correspondence.py displacement [--pairs ...]              # how far matches lie from layout
    python benchmarks/correspondence.py accuracy [--pairs ...]                  # matches that pair like labels
    python benchmarks/quality.py run NAME --method fast --masks OUT_DIR         # then score as usual

Both variants match grid cells by their nearest neighbours in VGG-19 feature space: relu4_1 and relu5_1
on the automatic masks' grid (1/4 of a 256 px working size), each layer L2-normalised, the photo's mean
feature removed (what differs inside a photo, not the photo's overall look) and normalised again; the
similarity is the cosine, as in Deep Image Analogy's coarsest level (Liao et al. 2017).

* ``matched``: the automatic masks' joint k-means, with the shared position block replaced by positions
  carried across by the matches. A content cell's point holds its own position (content frame) and where
  its 4 best matches lie in the style (style frame); a style cell's, where its matches lie in the content
  and its own position. Nothing assumes the two photos share a layout.
* ``segment-match``: each photo segmented alone (k-means on VGG, colour and position of weight 1, 6 labels, labels
  under 3% merged), then every segment linked to the other photo's segment that most of its cells' best
  matches fall in; linked segments form the shared labels; then the automatic masks' merging (small,
  alike in colour in both photos) and edge-aware boundaries.

``displacement`` prints, per pair, the mean distance (in photo widths/heights, 0..1) between a cell's own
position and the mean position of its 4 best matches in the other photo, and the same for random matches:
a correspondence that carries information about where regions lie lands well below the random value.

``accuracy`` asks the question the labels need answered: how often a cell's best match in the other photo
carries the same hand-painted label (both directions, cells with a label), for the layout (the cell at
the same place in the other frame), single cells matched by cosine, 5x5 patches of cells (each cell's
features reduced to 32 principal components shared by both photos, concatenated over the patch, as
PatchMatch compares patches rather than pixels) and those patches with a position penalty (cosine minus
0.5 x the distance in frame units). Means per half: the tuning pairs of benchmarks/quality.py and the others.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from dpst_ext.automask import (AUTO_LAYERS, DEFAULT_WEIGHTS, MATCH_TOPK, _grid_features, _joint_points,
                               _match_features as match_features, _merge_alike, _merge_small, _order_and_refine,
                               joint_kmeans)
from dpst_ext.masks import save_masks
from dpst_ext.samples import EXAMPLE_PAIRS, example_pair
from dpst_ext.vgg import VGG19Features

def matched_masks(content, style, vgg, seed=0, k_max=8, min_area=0.03, merge_delta=20.0):
    bc, gc, wc = _grid_features(content, vgg, 256)
    bs, gs, ws = _grid_features(style, vgg, 256)
    nc = gc[0] * gc[1]
    sim = match_features(bc) @ match_features(bs).T
    pc, ps = bc["position"], bs["position"]
    c_in_s = ps[sim.topk(MATCH_TOPK, dim=1).indices].mean(1)            # where a content cell's matches lie
    s_in_c = pc[sim.T.topk(MATCH_TOPK, dim=1).indices].mean(1)
    bc = dict(bc, position=torch.cat([pc, c_in_s], 1))              # (content frame, style frame)
    bs = dict(bs, position=torch.cat([s_in_c, ps], 1))
    x, photo_dims = _joint_points(bc, bs, DEFAULT_WEIGHTS, 16)
    labels = joint_kmeans(x, k_max, nc, photo_dims, seed=seed)[0]
    labels = _merge_small(labels, x, nc, min_area)
    labels = _merge_alike(labels, torch.cat([bc["lab"], bs["lab"]]).double(), nc, merge_delta)
    return _order_and_refine(labels, bc["position"][:, 1], nc, (gc, gs), (content, style), (wc, ws), 8, 1e-2)


def _segment(blocks: dict, k: int, seed: int, min_area: float) -> torch.Tensor:
    """One photo's own k-means labels (VGG, colour and position, all of weight 1)."""
    x, _ = _joint_points(blocks, {n: t[:0] for n, t in blocks.items()}, dict.fromkeys(DEFAULT_WEIGHTS, 1.0), 16)
    labels = joint_kmeans(x, k, None, 0, seed=seed)[0]
    while True:                                                     # merge segments under min_area
        ids, counts = torch.unique(labels, return_counts=True)
        j = int(counts.argmin())
        if len(ids) <= 1 or counts[j] >= min_area * len(labels):
            return torch.unique(labels, return_inverse=True)[1]
        centres = torch.stack([x[labels == i].mean(0) for i in ids])
        d = (centres - centres[j]).pow(2).sum(1)
        d[j] = float("inf")
        labels[labels == ids[j]] = ids[int(d.argmin())]


def segment_match_masks(content, style, vgg, seed=0, k=6, min_area=0.03, merge_delta=20.0):
    bc, gc, wc = _grid_features(content, vgg, 256)
    bs, gs, ws = _grid_features(style, vgg, 256)
    nc = gc[0] * gc[1]
    lc, ls = _segment(bc, k, seed, min_area), _segment(bs, k, seed, min_area)
    kc, ks = int(lc.max()) + 1, int(ls.max()) + 1
    sim = match_features(bc) @ match_features(bs).T
    # share of each segment's cells whose best match lies in each segment of the other photo
    c_to_s = torch.stack([F.one_hot(ls[sim[lc == i].argmax(1)], ks).double().mean(0) for i in range(kc)])
    s_to_c = torch.stack([F.one_hot(lc[sim.T[ls == j].argmax(1)], kc).double().mean(0) for j in range(ks)])
    parent = list(range(kc + ks))                                   # union-find over the links

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a
    for a, b in [(i, kc + int(c_to_s[i].argmax())) for i in range(kc)] + \
                [(int(s_to_c[j].argmax()), kc + j) for j in range(ks)]:
        parent[root(a)] = root(b)
    roots = torch.tensor([root(i) for i in range(kc + ks)])
    labels = torch.unique(torch.cat([roots[:kc][lc], roots[kc:][ls]]), return_inverse=True)[1]
    x = torch.cat([match_features(bc), match_features(bs)])
    labels = _merge_small(labels, x, nc, min_area)
    labels = _merge_alike(labels, torch.cat([bc["lab"], bs["lab"]]).double(), nc, merge_delta)
    return _order_and_refine(labels, bc["position"][:, 1], nc, (gc, gs), (content, style), (wc, ws), 8, 1e-2)


VARIANTS = {"matched": matched_masks, "segment-match": segment_match_masks}


def displacement(content, style, vgg) -> tuple[float, float]:
    bc, _, _ = _grid_features(content, vgg, 256)
    bs, _, _ = _grid_features(style, vgg, 256)
    sim = match_features(bc) @ match_features(bs).T
    pc, ps = bc["position"].double(), bs["position"].double()
    d = (ps[sim.topk(MATCH_TOPK, dim=1).indices].mean(1) - pc).norm(dim=1).mean()
    g = torch.Generator().manual_seed(0)
    r = (ps[torch.randint(len(ps), (len(pc), MATCH_TOPK), generator=g)].mean(1) - pc).norm(dim=1).mean()
    return float(d), float(r)


def _patches(f: torch.Tensor, grid: tuple[int, int], r: int) -> torch.Tensor:
    """(N, D) cell features -> (N, D (2r+1)^2) unit vectors of the (2r+1)^2 cells around each cell."""
    t = F.pad(f.T.reshape(1, -1, *grid), (r, r, r, r), mode="replicate")
    return F.normalize(F.unfold(t, 2 * r + 1)[0].T, dim=1)


ACCURACY = ("layout", "cells", "patches", "patches+position")


def label_accuracy(pair, vgg, dims: int = 32, r: int = 2, position: float = 0.5) -> dict[str, float]:
    bc, gc, _ = _grid_features(pair.content, vgg, 256)
    bs, gs, _ = _grid_features(pair.style, vgg, 256)
    lab = [F.interpolate(t[None, None].float(), size=g, mode="nearest").flatten().long()
           for t, g in ((pair.content_labels, gc), (pair.style_labels, gs))]
    fc, fs = match_features(bc), match_features(bs)
    both = torch.cat([fc, fs])
    _, vecs = torch.linalg.eigh((both - both.mean(0)).T @ (both - both.mean(0)))
    pc, ps = (F.normalize((f - both.mean(0)) @ vecs[:, -dims:], dim=1) for f in (fc, fs))
    pc, ps = _patches(pc, gc, r), _patches(ps, gs, r)
    dist = torch.cdist(bc["position"].double(), bs["position"].double())
    scores = {"layout": -dist, "cells": fc @ fs.T, "patches": pc @ ps.T,
              "patches+position": pc @ ps.T - position * dist}
    out = {}
    for name, sc in scores.items():
        hits = [(lab[1][sc.argmax(1)] == lab[0])[lab[0] >= 0], (lab[0][sc.argmax(0)] == lab[1])[lab[1] >= 0]]
        out[name] = float(torch.cat(hits).double().mean())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pairs = dict(type=lambda t: [int(x) for x in t.split(",")], default=list(EXAMPLE_PAIRS))
    m = sub.add_parser("masks")
    m.add_argument("variant", choices=sorted(VARIANTS))
    m.add_argument("out")
    m.add_argument("--pairs", **pairs)
    d = sub.add_parser("displacement")
    d.add_argument("--pairs", **pairs)
    a = sub.add_parser("accuracy")
    a.add_argument("--pairs", **pairs)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    vgg = VGG19Features(AUTO_LAYERS)
    if args.command == "accuracy":
        from quality import TUNING
        rows = {}
        print("| pair | " + " | ".join(ACCURACY) + " |\n|---|" + "---|" * len(ACCURACY))
        for n in args.pairs:
            rows[n] = label_accuracy(example_pair(n), vgg)
            print(f"| {n} | " + " | ".join(f"{rows[n][k]:.2f}" for k in ACCURACY) + " |", flush=True)
        halves = (("tuning", [n for n in rows if n in TUNING]), ("held out", [n for n in rows if n not in TUNING]))
        for half, ns in halves:
            if ns:
                print(f"| mean, {half} ({len(ns)}) | " + " | ".join(f"{sum(rows[n][k] for n in ns) / len(ns):.3f}"
                                                          for k in ACCURACY) + " |")
        return 0
    for n in args.pairs:
        pair = example_pair(n)
        if args.command == "displacement":
            d, r = displacement(pair.content, pair.style, vgg)
            print(f"pair {n:2d}: matches lie {d:.3f} from the same position (random matches: {r:.3f})", flush=True)
            continue
        cl, sl = VARIANTS[args.variant](pair.content, pair.style, vgg)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_masks(cl, sl, out / f"content{n}.png", out / f"style{n}.png")
        print(f"pair {n:2d}: {int(cl.max()) + 1} labels", flush=True)


if __name__ == "__main__":
    sys.exit(main())
