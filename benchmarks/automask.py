"""Automatic masks on the paper's example pairs: agreement with the hand-painted masks, K, time,
and (``--transfer``) style transfer with hand masks, auto masks and no masks.

    OMP_NUM_THREADS=1 python benchmarks/automask.py [--pairs 1,5,9] [--out runs/automask.json]
    OMP_NUM_THREADS=1 nohup python benchmarks/automask.py --transfer --out R.json > log 2>&1 &
    python benchmarks/automask.py --report R.json [R2.json ...]      # Markdown tables from result files

* Agreement with the hand masks (dpst_ext.metrics.mask_agreement): mean IoU after the best one-to-one
  matching (over max(K_auto, K_hand) labels, so over-segmenting costs), purity (pixels inside their
  auto label's majority hand label) and consistency (auto labels meaning the same hand label in both
  photos). "one label" is the IoU of a single label covering everything.
* Proxy (``--proxy``, seconds per pair, no optimisation): the content recoloured label by label towards
  the style, scored by the style distance below (hand masks); "recovered" as in the transfer section.
  ``--proxy init`` recolours with dpst_ext.transfer.colour_transfer_init, the very start of
  a ``--init colour`` transfer, at the transfer's ``--size``: on the 15 pairs its style distances track
  the colour-start transfer's (192 px, 100 + 60 iterations; r = 0.95 over the 45 hand/auto/none runs),
  but differences of a few hundredths in "recovered" are below its resolution.
  ``--proxy lab`` (the first proxy) matches per-label Lab mean and std at 256 px.
  The claims rest on the transfer section.
* Transfer (small configuration: size 256, init content, iters 150,100, 1 thread, output at the working
  size; the recorded runs used --size 192 --iters 100,60, with --init content and --init colour):
  photorealism residual and style distance of benchmarks/quality.py; the style distance is always
  evaluated with the HAND masks (its definition) at the output's size. Results are written after every
  run, with the configuration. ``--photoreal-weight`` runs the transfer at another lambda (to compare
  labellings at equal photorealism).

The measurements of 2026-11-25 to 2026-11-30 are in docs/experiments/2026-11-automatic-masks.md, their
result files in docs/experiments/runs-2026-11.tar.xz (``--report`` reprints them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import lab  # noqa: E402

from dpst_ext.automask import AUTO_LAYERS, auto_masks  # noqa: E402
from dpst_ext.masks import labels_to_image, save_masks  # noqa: E402
from dpst_ext.metrics import mask_agreement as agreement  # noqa: E402
from dpst_ext.image_io import resize_long_side  # noqa: E402
from dpst_ext.metrics import colour_style_distance as style_distance, photoreal_residual  # noqa: E402
from dpst_ext.options import LossWeights  # noqa: E402
from dpst_ext.masks import MaskPair, parse_mask, resize_labels  # noqa: E402
from dpst_ext.samples import EXAMPLE_PAIRS as PAIRS, EXAMPLES as DEFAULT_DATA, example_pair  # noqa: E402
from dpst_ext.vgg import VGG19Features  # noqa: E402


def hand_labels(data: Path, n: int):
    p = example_pair(n, data)
    return p.content, p.style, p.content_labels, p.style_labels


def load_state(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_state(path: Path, state: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def masks_section(data, pairs, vgg, state, out, repeats=3, **auto_kwargs):
    rows = state.setdefault("masks", {})
    for n in pairs:
        c, s, hc, hs = hand_labels(data, n)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            ac, as_, info = auto_masks(c, s, vgg=vgg, return_info=True, **auto_kwargs)
            times.append(time.perf_counter() - t)
        agree = agreement(ac, as_, hc, hs)
        with tempfile.TemporaryDirectory() as tmp:  # the written masks read back as the same labels
            pc, ps = save_masks(ac, as_, Path(tmp) / "c.png", Path(tmp) / "s.png")
            round_trip = bool(torch.equal(parse_mask(pc, tuple(ac.shape)), ac) and
                              torch.equal(parse_mask(ps, tuple(as_.shape)), as_))
        one = agreement(torch.zeros_like(ac), torch.zeros_like(as_), hc, hs)["iou"]
        k_hand = len(set(torch.unique(hc[hc >= 0]).tolist()) | set(torch.unique(hs[hs >= 0]).tolist()))
        rows[str(n)] = {**agree, "iou_one_label": one, "k": info["k"], "k_hand": k_hand,
                        "clustered": info["clustered"], "after_small": info["after_small"],
                        "time_s": float(np.median(times)),
                        "round_trip": round_trip, "unlabelled_px": int((ac < 0).sum() + (as_ < 0).sum()),
                        "load": os.getloadavg()[0]}
        print(f"pair {n:2d}: mean IoU {agree['iou']:.3f} (one label {one:.3f}) purity {agree['purity']:.3f} "
              f"consistent {agree['consistent']:.3f} K {info['k']} (hand {k_hand}) "
              f"{np.median(times):.2f}s round trip {round_trip}", flush=True)
        write_state(out, state)


def _label_recolour(content, style, lc, ls):
    """Per-label Lab mean/std matching of ``content`` to ``style`` (labels at the images' sizes; content
    pixels whose label is -1 or absent from the style are matched to the whole style)."""
    from skimage.color import lab2rgb

    a, b = lab(content), lab(style)
    out = a.copy()
    lc, ls = lc.numpy(), ls.numpy()
    for k in np.unique(lc):
        src = a[lc == k]
        tgt = b[ls == k] if k >= 0 and (ls == k).sum() > 10 else b.reshape(-1, 3)
        out[lc == k] = (src - src.mean(0)) / (src.std(0) + 1e-6) * tgt.std(0) + tgt.mean(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-gamut Lab values are clipped
        return torch.from_numpy(lab2rgb(out).transpose(2, 0, 1)).float()


def recovered(style, pairs) -> float | None:
    """The share of the hand masks' style-distance gain over one label that the auto masks reach, summed
    over ``pairs``: sum(none - auto) / sum(none - hand); ``style(n, mode)`` gives pair n's distance in a
    mode. None when the hand masks gain nothing (e.g. only single-label pairs)."""
    den = sum(style(n, "none") - style(n, "hand") for n in pairs)
    return sum(style(n, "none") - style(n, "auto") for n in pairs) / den if abs(den) > 1e-9 else None


def multi_label(style, pairs) -> list:
    """The pairs with more than one hand label: there hand and one label differ. On the others the hand
    masks are one label, so only the auto masks' gain or loss enters the sums."""
    return [n for n in pairs if abs(style(n, "none") - style(n, "hand")) > 1e-9]


def _init_recolour(content, style, lc, ls):
    """The ``init="colour"`` start of a transfer under a labelling (dpst_ext.transfer.colour_transfer_init)."""
    from dpst_ext.transfer import colour_transfer_init

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return colour_transfer_init(content, style, MaskPair.from_labels(lc, ls, warn=False))


def proxy_section(data, pairs, vgg, state, out, kind="lab", size=256, **auto_kwargs):
    rows = state.setdefault("proxy", {})
    recolour = {"lab": _label_recolour, "init": _init_recolour}[kind]
    for n in pairs:
        c, s, hc, hs = hand_labels(data, n)
        cs, ss = resize_long_side(c, size), resize_long_side(s, size)
        hcs, hss = resize_labels(hc, tuple(cs.shape[1:])), resize_labels(hs, tuple(ss.shape[1:]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric = MaskPair.from_labels(hcs, hss, warn=False)
        ac, as_ = auto_masks(c, s, vgg=vgg, **auto_kwargs)
        score = {name: style_distance(recolour(cs, ss, lc, ls), ss, metric) for name, (lc, ls) in {
            "hand": (hcs, hss), "none": (torch.zeros_like(hcs), torch.zeros_like(hss)),
            "auto": (resize_labels(ac, tuple(cs.shape[1:])), resize_labels(as_, tuple(ss.shape[1:])))}.items()}
        rows[str(n)] = {**score, "k": int(ac.max()) + 1}
        print(f"pair {n:2d} proxy style distance: hand {score['hand']:.2f} auto {score['auto']:.2f} "
              f"none {score['none']:.2f}", flush=True)
        write_state(out, state)
    style = lambda n, mode: rows[str(n)][mode]  # noqa: E731
    for subset, what in ((pairs, "pairs"), (multi_label(style, pairs), "pairs with more than one hand label")):
        r = recovered(style, subset)
        if r is not None:
            print(f"proxy: auto masks recover {r:.3f} of the hand masks' gain over {len(subset)} {what}")


def transfer_section(data, pairs, state, out, size, iters, save_dir, modes=("hand", "auto", "none"), init="content",
                     photoreal_weight=None):
    from dpst_ext.transfer import run_transfer

    rows = state.setdefault("transfer", {})
    for n in pairs:
        c, s, hc, hs = hand_labels(data, n)
        for mode in modes:
            key = f"{n}/{mode}"
            if key in rows:
                continue
            kw = {}
            if mode == "hand":
                kw = {"content_mask": labels_to_image(hc), "style_mask": labels_to_image(hs)}
            # Output at the working size: the metrics compare it with the content at that size.
            opts = dict(size=size, iters=iters, init=init, threads=1, local_affine_every=0,
                        auto_masks=(mode == "auto"), output_size="working")
            if photoreal_weight is not None:
                opts["weights"] = {"photoreal": photoreal_weight}
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = run_transfer(c, s, **kw, **opts)
            total = time.perf_counter() - t
            o = res.image
            oh, ow = o.shape[1:]
            c_small = resize_long_side(c, size)
            s_small = resize_long_side(s, size)
            # The metric's labelling: hand masks at the output's (and the style's working) size.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pair = MaskPair.from_labels(resize_labels(hc, (oh, ow)), resize_labels(hs, tuple(s_small.shape[1:])),
                                            warn=False)
            rows[key] = {"photoreal": photoreal_residual(c_small, o), "style": style_distance(o, s_small, pair),
                         "time_s": total, "timings": res.timings,
                         # labels in use (-1, unlabelled pixels, is not one; some result files of
                         # 2026-11-29 counted it)
                         "k": len(set(res.content_labels.unique().tolist()) - {-1})
                         if res.content_labels is not None else None}
            if save_dir is not None:
                save_dir.mkdir(parents=True, exist_ok=True)
                res.pil().save(save_dir / f"out{n}_{mode}.png")
            r = rows[key]
            print(f"pair {n:2d} {mode:4s}: photoreal {r['photoreal']:.5f} style {r['style']:.2f} "
                  f"time {total:.1f}s (auto masks {res.timings.get('auto_masks', 0):.2f}s)", flush=True)
            write_state(out, state)


def report(paths: list[Path]) -> str:
    """Markdown tables from one or more result files (the transfer runs may be split over processes)."""
    masks, runs, machines, configs = {}, {}, [], set()
    for path in paths:
        st = load_state(path)
        masks.update(st.get("masks", {}))
        runs.update(st.get("transfer", {}))
        if "machine" in st:
            machines.append(st["machine"])
        if st.get("transfer"):
            c = st.get("config", {})
            configs.add(f"size {c.get('size', '?')}, iterations {','.join(map(str, c.get('iters', ['?'])))}, "
                        f"init {c.get('init', '?')}, photorealism weight {c.get('photoreal_weight', LossWeights().photoreal):g}")
    lines = []
    if masks:
        lines += ["| pair | mean IoU auto | mean IoU one label | purity | consistent | K auto | K hand | "
                  "auto-mask time (s) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n in sorted(masks, key=int):
            m = masks[n]
            lines.append(f"| {n} | {m['iou']:.3f} | {m['iou_one_label']:.3f} | {m['purity']:.3f} | "
                         f"{m['consistent']:.3f} | {m['k']} | {m['k_hand']} | {m['time_s']:.2f} |")
        a = list(masks.values())
        mean = {q: np.mean([m[q] for m in a]) for q in ("iou", "iou_one_label", "purity", "consistent", "k", "k_hand")}
        lines.append(f"| mean | {mean['iou']:.3f} | {mean['iou_one_label']:.3f} | {mean['purity']:.3f} | "
                     f"{mean['consistent']:.3f} | {mean['k']:.1f} | {mean['k_hand']:.1f} | "
                     f"{np.median([m['time_s'] for m in a]):.2f} (median) |")
        lines.append("")
    pairs = sorted({k.split("/")[0] for k in runs}, key=int)
    full = [n for n in pairs if all(f"{n}/{m}" in runs for m in ("hand", "auto", "none"))]
    if full:
        lines += ["| pair | photoreal hand | auto | none | style dist. hand | auto | none | recovered | run time (s) | "
                  "auto-mask time (s) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        style = lambda n, mode: runs[f"{n}/{mode}"]["style"]  # noqa: E731
        fmt = lambda r: "n/a" if r is None else f"{r:.2f}"  # noqa: E731
        for n in full:
            h, a, o = (runs[f"{n}/{m}"] for m in ("hand", "auto", "none"))
            rec = fmt(recovered(style, [n]))
            lines.append(f"| {n} | {h['photoreal']:.5f} | {a['photoreal']:.5f} | {o['photoreal']:.5f} | "
                         f"{h['style']:.2f} | {a['style']:.2f} | {o['style']:.2f} | {rec} | {a['time_s']:.0f} | "
                         f"{a['timings'].get('auto_masks', 0):.2f} |")
        mean = {m: {q: np.mean([runs[f"{n}/{m}"][q] for n in full]) for q in ("photoreal", "style", "time_s")}
                for m in ("hand", "auto", "none")}
        am = np.mean([runs[f"{n}/auto"]["timings"].get("auto_masks", 0) for n in full])
        lines.append(f"| mean ({len(full)}) | {mean['hand']['photoreal']:.5f} | {mean['auto']['photoreal']:.5f} | "
                     f"{mean['none']['photoreal']:.5f} | {mean['hand']['style']:.2f} | {mean['auto']['style']:.2f} | "
                     f"{mean['none']['style']:.2f} | {fmt(recovered(style, full))} | "
                     f"{mean['auto']['time_s']:.0f} | {am:.2f} |")
        lines.append("")
        lines.append(f"recovered = (style none - style auto) / (style none - style hand) per pair; the mean row: the "
                     f"ratio of the summed improvements. Auto-mask time / run time = {am / mean['auto']['time_s']:.1%}.")
        multi = multi_label(style, full)
        if 0 < len(multi) < len(full):
            ph, pa = (np.mean([runs[f"{n}/{m}"]["photoreal"] for n in multi]) for m in ("hand", "auto"))
            lines.append(f"Over the {len(multi)} pairs with more than one hand label: recovered "
                         f"{fmt(recovered(style, multi))}, photoreal hand {ph:.5f}, auto {pa:.5f}.")
    if configs:
        lines.append("")
        lines.append("transfer configuration: " + "; ".join(sorted(configs)))
    if machines:
        lines.append("")
        def load(v):
            return f"{v[0]:.1f}" if v else "?"
        lines.append("processes (1-min load average at start -> end): " + "; ".join(
            f"{m.get('threads')} thread(s), load {load(m.get('load_at_start'))} -> {load(m.get('load_at_end'))}"
            for m in machines))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--pairs", default=",".join(map(str, PAIRS)))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "automask.json")
    p.add_argument("--transfer", action="store_true", help="also run the style-transfer comparison")
    p.add_argument("--proxy", nargs="?", const="lab", default=None, choices=("lab", "init"),
                   help="also run a recolouring proxy: lab (per-label Lab mean/std at 256 px, the default) or "
                        "init (the colour start of a transfer, at --size)")
    p.add_argument("--auto-kwargs", default="{}", help="JSON of auto_masks keyword arguments (IoU and proxy)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iters", default="150,100")
    p.add_argument("--save-dir", type=Path, default=None, help="write the transfer outputs here")
    p.add_argument("--modes", default="hand,auto,none", help="transfer runs per pair (default hand,auto,none)")
    p.add_argument("--init", default="content", choices=("content", "colour", "noise"),
                   help="the transfer's stage-1 start (default content; colour: the content recoloured per label)")
    p.add_argument("--photoreal-weight", type=float, default=None,
                   help="the transfer's photorealism weight lambda (default: the paper's, 1e4)")
    p.add_argument("--repeats", type=int, default=3, help="timed auto-mask runs per pair (median)")
    p.add_argument("--skip-masks", action="store_true", help="skip the IoU section (transfer only)")
    p.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                   help="only print Markdown tables from these result files")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return
    if not args.data.is_dir():
        sys.exit(f"data folder not found: {args.data}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pairs = [int(x) for x in args.pairs.split(",")]
    state = load_state(args.out)
    state["machine"] = {"threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                        "load_at_start": os.getloadavg(), "torch": torch.__version__}
    vgg = VGG19Features(AUTO_LAYERS)
    if not args.skip_masks:
        masks_section(args.data, pairs, vgg, state, args.out, args.repeats, **json.loads(args.auto_kwargs))
        ious = [state["masks"][str(n)]["iou"] for n in pairs]
        ones = [state["masks"][str(n)]["iou_one_label"] for n in pairs]
        print(f"mean IoU over {len(pairs)} pairs: {np.mean(ious):.3f} (one label: {np.mean(ones):.3f})")
    if args.proxy:
        size = {"lab": 256, "init": args.size}[args.proxy]
        proxy_config = {"kind": args.proxy, "size": size, "auto_kwargs": json.loads(args.auto_kwargs)}
        if state.get("proxy_config", proxy_config) != proxy_config:
            state["proxy"] = {}                      # never mix two proxies' rows in one file
        state["proxy_config"] = proxy_config
        proxy_section(args.data, pairs, vgg, state, args.out, args.proxy, size, **json.loads(args.auto_kwargs))
    if args.transfer:
        iters = tuple(int(x) for x in args.iters.split(","))
        config = {"size": args.size, "iters": list(iters), "init": args.init}
        if args.photoreal_weight is not None:
            config["photoreal_weight"] = args.photoreal_weight
        if state.get("transfer") and state.get("config", config) != config:
            # Finished runs are skipped on a rerun: never mix two configurations in one file.
            sys.exit(f"--out {args.out} holds transfer runs made with {state['config']}, not {config}: "
                     f"use another --out")
        state["config"] = config
        transfer_section(args.data, pairs, state, args.out, args.size, iters, args.save_dir,
                         tuple(args.modes.split(",")), args.init, args.photoreal_weight)
    state["machine"]["load_at_end"] = os.getloadavg()
    write_state(args.out, state)


if __name__ == "__main__":
    main()
