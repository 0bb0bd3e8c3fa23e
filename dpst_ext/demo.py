"""``python -m dpst_ext.demo`` (``make demo``): photorealistic style transfer of photos that ship with
scikit-image, offline, on the CPU, with the default method and with the fast one.

Content: scikit-image's ``coffee`` (a red cup on a wooden table); style: its ``chelsea`` photo (a cat in
soft, muted light). One label: the two photos share no regions (automatic masks would match them by
layout). Chosen among the photos scikit-image ships: from ``rocket`` in the look of ``coffee``, the flat
sky took texture (a style photo of a similar scene suits the method best). Writes ./out/demo_result.png
(the default method), ./out/demo_fast.png (the closed form alone) and ./out/demo_contact_sheet.png
(content | style | fast | default), and prints what each step cost.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from . import samples
from .image_io import save_image, to_pil
from .progress import ProgressPrinter
from .transfer import run_transfer


def contact_sheet(images, labels, height=256) -> Image.Image:
    tiles = []
    for img, label in zip(images, labels):
        pil = to_pil(img)
        pil = pil.resize((round(pil.width * height / pil.height), height), Image.LANCZOS)
        tile = Image.new("RGB", (pil.width, height + 18), "white")
        tile.paste(pil, (0, 18))
        ImageDraw.Draw(tile).text((4, 3), label, fill="black")
        tiles.append(tile)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 4
    return sheet


def _cost(res, seconds) -> str:
    t = {k: v for k, v in res.timings.items() if v >= 0.05}
    return f"{seconds:.1f}s (" + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()) + ")"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dpst_ext.demo", description=__doc__.splitlines()[0])
    p.add_argument("--content", default="coffee", choices=samples.PHOTOS)
    p.add_argument("--style", default="chelsea", choices=samples.PHOTOS)
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    content = samples.photo(args.content, dtype=torch.float32)
    style = samples.photo(args.style, dtype=torch.float32)
    print(f"content: scikit-image '{args.content}' {content.shape[2]}x{content.shape[1]}, style: '{args.style}' "
          f"{style.shape[2]}x{style.shape[1]}; torch threads: {torch.get_num_threads()}", flush=True)
    results = {}
    for method in ("fast", "default"):
        t = time.perf_counter()
        res = run_transfer(content, style, method=method, auto_masks=False, callback=ProgressPrinter(sys.stdout))
        results[method] = res.image
        name = "demo_result.png" if method == "default" else "demo_fast.png"
        save_image(res.image, out / name)
        print(f"--method {method}: wrote {out / name} in {_cost(res, time.perf_counter() - t)}", flush=True)
    save_image(contact_sheet([content, style, results["fast"], results["default"]],
                             ["content", "style", "--method fast", "--method default"]),
               out / "demo_contact_sheet.png")
    print(f"wrote {out / 'demo_contact_sheet.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
