"""Quality on the paper's example pairs: the four measures of dpst_ext.metrics, per pair and mean.

    python benchmarks/quality.py run NAME [--method default|fast|reference] [--masks hand|auto|none|DIR]
                                          [--auto-args JSON] [--set KEY=VALUE ...] [--pairs 1,5,9] [--threads 2]
    python benchmarks/quality.py score [NAME ...] [--pairs ...] [--json FILE] [--plot FILE]
                                          [--sheet FILE --sheet-pairs 1,9,25,45 [--sheet-masks]]
                                          [--gain HAND,ONE]

``run`` transfers every pair through dpst_ext.transfer.run_transfer, with its hand-painted masks
(``--masks hand``, the default), with the automatic masks a user without masks gets (``auto``) or with
one label (``none``), or with the masks DIR/contentN.png and DIR/styleN.png of another labelling
(benchmarks/correspondence.py writes such folders); ``--auto-args JSON`` gives the automatic masks other
constants (auto_masks keyword arguments); the automatic masks are saved beside the outputs
(runs/NAME/content_maskN.png, style_maskN.png; ``score --sheet-masks`` shows them); ``--set`` overrides
any TransferOptions field, e.g.
``--set size=512 --set iters=0,150 --set weights.photoreal=2e4``. It writes runs/NAME/outN.png and
runs/NAME/run.json (options, seconds per pair, machine), one pair at a time, so that an interrupted run
resumes where it stopped.
``score`` rates the content itself (no style), a global colour transfer (Reinhard: Lab mean and
standard deviation matching), the published final result of each pair and each run NAME:
colour style distance, Gram style distance (log10), photorealism residual, edge SSIM, always against
the hand-painted masks. ``--gain HAND,ONE`` adds, for every other run, the share of run HAND's
colour-distance gain over run ONE that it recovers, on the tuning pairs (TUNING), on the held-out
pairs (the others) and on all.
The pairs come from dpst_ext.samples.EXAMPLES (../shared/data/dpst_examples; DPST_EXAMPLES overrides).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dpst_ext.image_io import load_image, save_image
from dpst_ext.metrics import score
from dpst_ext.samples import EXAMPLE_PAIRS, example_pair

RUNS = Path(__file__).resolve().parents[1] / "runs"
# The pairs the default recipe and the automatic masks' constants may be chosen on; the other 7 are held out.
TUNING = (1, 9, 17, 25, 33, 41, 49, 57)
MEASURES = (("colour", "colour style distance", "{:.2f}"), ("gram", "Gram style distance (log10)", "{:.2f}"),
            ("residual", "photorealism residual", "{:.5f}"), ("edge_ssim", "edge SSIM", "{:.2f}"))


def lab(rgb: torch.Tensor) -> np.ndarray:
    """scikit-image's Lab of (3, H, W) as (H, W, 3), for the baselines that must convert back (lab2rgb);
    the measures use dpst_ext.image_io.rgb_to_lab."""
    from skimage.color import rgb2lab

    return rgb2lab(rgb.permute(1, 2, 0).double().clamp(0, 1).numpy())


def reinhard(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    from skimage.color import lab2rgb

    lc, ls = lab(content), lab(style)
    out = (lc - lc.mean((0, 1))) / (lc.std((0, 1)) + 1e-8) * ls.std((0, 1)) + ls.mean((0, 1))
    return torch.from_numpy(lab2rgb(out).transpose(2, 0, 1)).float()


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _option(opts, text: str):
    key, _, value = text.partition("=")
    v = ast.literal_eval(value) if value not in ("None", "") else None
    if key.startswith("weights."):
        setattr(opts.weights, key.split(".", 1)[1], float(v))
    elif key in {f.name for f in dataclasses.fields(opts)}:
        setattr(opts, key, v)
    else:
        raise SystemExit(f"--set: unknown option {key!r}")


def run(args):
    from dpst_ext.masks import save_masks
    from dpst_ext.transfer import TransferOptions, run_transfer

    torch.set_num_threads(args.threads)
    out = RUNS / args.name
    out.mkdir(parents=True, exist_ok=True)
    opts = TransferOptions(method=args.method, seed=0)
    for s in args.set or []:
        _option(opts, s)
    log_path = out / "run.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    config = {"method": args.method, "masks": args.masks, "set": args.set or [], "threads": args.threads}
    auto_args = json.loads(args.auto_args) if args.auto_args else None
    if auto_args is not None:
        if args.masks != "auto":
            raise SystemExit("--auto-args: only with --masks auto")
        config["auto_args"] = auto_args
        from dpst_ext.automask import AUTO_LAYERS, auto_masks
        from dpst_ext.vgg import VGG19Features
        mask_vgg = VGG19Features(AUTO_LAYERS)
    elif args.masks in ("auto", "none"):
        opts.auto_masks = args.masks == "auto"
    if {"masks": "hand", **log.get("config", config)} != config:    # runs before --masks were all "hand"
        raise SystemExit(f"{out} holds a run with another configuration ({log['config']}); choose another NAME")
    log.update(config=config, machine=_machine())
    pairs = log.setdefault("pairs", {})
    for n in args.pairs:
        if str(n) in pairs and (out / f"out{n}.png").is_file():
            continue
        p = example_pair(n)
        t = time.perf_counter()
        if args.masks == "hand":
            masks = p.paths["content_mask"], p.paths["style_mask"]
        elif auto_args is not None:     # the automatic masks with other constants, kept beside the outputs
            masks = save_masks(*auto_masks(p.content, p.style, vgg=mask_vgg, **auto_args),
                               out / f"content_mask{n}.png", out / f"style_mask{n}.png")
        elif args.masks in ("auto", "none"):
            masks = None, None
        else:
            masks = Path(args.masks) / f"content{n}.png", Path(args.masks) / f"style{n}.png"
        res = run_transfer(p.content, p.style, *masks,
                           options=dataclasses.replace(opts, weights=dataclasses.replace(opts.weights)))
        seconds = time.perf_counter() - t
        save_image(res.image, out / f"out{n}.png")
        if auto_args is None and res.content_labels is not None:    # the automatic masks the transfer used
            save_masks(res.content_labels, res.style_labels, out / f"content_mask{n}.png", out / f"style_mask{n}.png")
        pairs[str(n)] = {"seconds": round(seconds, 2), "timings": {k: round(v, 2) for k, v in res.timings.items()}}
        log_path.write_text(json.dumps(log, indent=1))
        print(f"{args.name}: pair {n} in {seconds:.1f}s", flush=True)


def score_all(args):
    from dpst_ext.vgg import VGG19Features
    from dpst_ext.metrics import GRAM_LAYERS

    torch.set_num_threads(args.threads)
    vgg = VGG19Features(GRAM_LAYERS)
    names = ["content", "reinhard", "published", *args.names]
    rows = {k: {} for k in names}
    seconds = {k: {} for k in args.names}
    for name in args.names:
        log_path = RUNS / name / "run.json"
        if log_path.is_file():
            for n, entry in json.loads(log_path.read_text())["pairs"].items():
                seconds[name][int(n)] = entry["seconds"]
    sheet_rows = []
    for n in args.pairs:
        p = example_pair(n)
        masks = p.masks()
        outputs = {"content": p.content, "reinhard": reinhard(p.content, p.style), "published": p.published}
        for name in args.names:
            f = RUNS / name / f"out{n}.png"
            if f.is_file():
                outputs[name] = load_image(f)
        for name, o in outputs.items():
            rows[name][n] = score(p.content, p.style, o, masks, vgg=vgg)
            m = rows[name][n]
            print(f"pair {n:2d} {name:12s} " + "  ".join(f"{k} {fmt.format(m[k])}" for k, _, fmt in MEASURES),
                  flush=True)
        if args.sheet and n in args.sheet_pairs:
            from dpst_ext.demo import contact_sheet
            from dpst_ext.masks import labels_to_image

            shown = [k for k in ("published", *args.names) if k in outputs]
            images, labels = [p.content, p.style, *(outputs[k] for k in shown)], [f"pair {n}: content", "style", *shown]
            if args.sheet_masks:    # the hand masks, then those saved beside each run (its automatic masks)
                images += [labels_to_image(p.content_labels), labels_to_image(p.style_labels)]
                labels += ["hand masks: content", "style"]
                for name in args.names:
                    saved = [RUNS / name / f"{side}_mask{n}.png" for side in ("content", "style")]
                    if all(f.is_file() for f in saved):
                        images += [load_image(f) for f in saved]
                        labels += [f"{name} masks: content", "style"]
            sheet_rows.append(contact_sheet(images, labels, height=200))
    report = {"machine": _machine(), "date": time.strftime("%Y-%m-%d"), "pairs": args.pairs,
              "rows": {name: {str(n): m for n, m in r.items()} for name, r in rows.items()},
              "seconds": {name: {str(n): s for n, s in r.items()} for name, r in seconds.items()}}
    print(table(report))
    if args.gain:
        print(gains(report, *args.gain))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.plot:
        plot(report, args.plot)
    if sheet_rows:
        from PIL import Image

        sheet = Image.new("RGB", (max(r.width for r in sheet_rows), sum(r.height + 4 for r in sheet_rows)), "white")
        y = 0
        for r in sheet_rows:
            sheet.paste(r, (0, y))
            y += r.height + 4
        save_image(sheet, args.sheet)


def means(report: dict, name: str) -> dict:
    r = report["rows"][name]
    out = {k: float(np.mean([m[k] for m in r.values()])) for k, _, _ in MEASURES}
    s = report["seconds"].get(name, {})
    out["seconds"] = float(np.median(list(s.values()))) if s else float("nan")
    out["pairs"] = len(r)
    return out


def table(report: dict) -> str:
    """The means as a Markdown table (lower is better except edge SSIM)."""
    head = "| | pairs | " + " | ".join(t for _, t, _ in MEASURES) + " | median s/pair |"
    lines = [head, "|---" * (len(MEASURES) + 3) + "|"]
    for name in report["rows"]:
        m = means(report, name)
        sec = "" if np.isnan(m["seconds"]) else f"{m['seconds']:.1f}"
        lines.append(f"| {name} | {m['pairs']} | " + " | ".join(fmt.format(m[k]) for k, _, fmt in MEASURES)
                     + f" | {sec} |")
    return "\n".join(lines)


def gains(report: dict, hand: str, one: str) -> str:
    """Per run, the share of ``hand``'s colour-distance gain over ``one`` it recovers (sums over pairs:
    (one - run) / (one - hand)), on the tuning pairs, the held-out pairs and all, as a Markdown table."""
    rows = report["rows"]
    halves = (("tuning", [n for n in report["pairs"] if n in TUNING]),
              ("held out", [n for n in report["pairs"] if n not in TUNING]), ("all", report["pairs"]))
    lines = ["| recovered | " + " | ".join(h for h, _ in halves) + " |", "|---" * (len(halves) + 1) + "|"]
    for name in rows:
        if name in (hand, one) or name in ("content", "reinhard", "published"):
            continue
        cells = []
        for _, ns in halves:
            ns = [str(n) for n in ns if all(str(n) in rows[k] for k in (hand, one, name))]
            h, o, x = (sum(rows[k][n]["colour"] for n in ns) for k in (hand, one, name))
            cells.append(f"{(o - x) / (o - h):.0%} ({len(ns)})" if ns and o != h else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report: dict, path):
    """Photorealism residual against Gram style distance: each method's pairs (small) and mean (large)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for i, name in enumerate(report["rows"]):
        r = report["rows"][name]
        colour = f"C{i}"
        ax.scatter([m["residual"] for m in r.values()], [m["gram"] for m in r.values()], s=10, alpha=0.35, c=colour)
        m = means(report, name)
        ax.scatter([m["residual"]], [m["gram"]], s=90, c=colour, edgecolors="black", label=name)
    ax.set_xscale("symlog", linthresh=1e-5)
    ax.set_xlabel("photorealism residual (lower: more photoreal)")
    ax.set_ylabel("Gram style distance, log10 (lower: more faithful)")
    ax.set_title(f"{len(report['pairs'])} example pairs, {report['date']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pairs = dict(type=lambda t: [int(x) for x in t.split(",")], default=list(EXAMPLE_PAIRS))
    r = sub.add_parser("run", help="transfer the example pairs into runs/NAME")
    r.add_argument("name")
    r.add_argument("--method", default="default", choices=["default", "fast", "reference"])
    r.add_argument("--masks", default="hand", metavar="hand|auto|none|DIR",
                   help="the pairs' hand-painted masks, the automatic masks, one label, or DIR/contentN.png and "
                        "DIR/styleN.png")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="a TransferOptions field (repeatable)")
    r.add_argument("--auto-args", default=None, metavar="JSON",
                   help="with --masks auto: keyword arguments of dpst_ext.automask.auto_masks, e.g. "
                        "'{\"merge_delta\": 30}' (the masks are computed here and saved beside the outputs)")
    r.add_argument("--pairs", **pairs)
    r.add_argument("--threads", type=int, default=2)
    s = sub.add_parser("score", help="the four measures of the baselines and of runs/NAME ...")
    s.add_argument("names", nargs="*")
    s.add_argument("--pairs", **pairs)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--json", default=None)
    s.add_argument("--plot", default=None)
    s.add_argument("--sheet", default=None)
    s.add_argument("--sheet-pairs", type=lambda t: [int(x) for x in t.split(",")], default=[1, 9, 25, 45])
    s.add_argument("--sheet-masks", action="store_true",
                   help="also show the hand masks and the masks saved beside each run")
    s.add_argument("--gain", type=lambda t: t.split(","), default=None, metavar="HAND,ONE",
                   help="the share of run HAND's colour gain over run ONE each other run recovers")
    args = p.parse_args(argv)
    run(args) if args.command == "run" else score_all(args)


if __name__ == "__main__":
    main()
