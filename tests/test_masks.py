"""Mask parsing (anti-aliased, grey, off-size), orphan labels and per-layer downsampling."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dpst_ext import samples
from dpst_ext.masks import (NAMES, MaskPair, MaskSizeWarning, OrphanLabelWarning, downsample_for_layers,
                            parse_mask)

SHARED = samples.EXAMPLES      # the developers' example pairs (DPST_EXAMPLES overrides); absent on a user's clone
BLUE, GREEN, RED = NAMES.index("blue"), NAMES.index("green"), NAMES.index("red")
BLACK, WHITE, GREY = NAMES.index("black"), NAMES.index("white"), NAMES.index("grey")


def two_region_mask(h=40, w=40, a=(0, 0, 255), b=(0, 255, 0), blur=True):
    """Left half colour a, right half colour b, with an anti-aliased (linear blend) 3 px border."""
    t = np.clip((np.arange(w) - (w / 2 - 1.5)) / 3.0, 0, 1) if blur else (np.arange(w) >= w / 2).astype(float)
    img = (1 - t)[None, :, None] * np.array(a) + t[None, :, None] * np.array(b)
    return Image.fromarray(np.repeat(img, h, axis=0).round().astype(np.uint8), "RGB")


def test_antialiased_mask_nearest_colour():
    labels = parse_mask(two_region_mask())
    assert (labels[:, :15] == BLUE).all() and (labels[:, 25:] == GREEN).all()
    # Border blends are either the nearer colour or unlabelled, never a third colour.
    assert set(labels.unique().tolist()) <= {BLUE, GREEN, -1}
    # Slightly off colours (JPEG-like noise) still match.
    noisy = np.asarray(two_region_mask()).astype(int) + np.random.default_rng(0).integers(-20, 21, (40, 40, 3))
    labels2 = parse_mask(np.clip(noisy, 0, 255).astype(np.uint8))
    assert (labels2[:, :15] == BLUE).all() and (labels2[:, 25:] == GREEN).all()


def test_black_white_border_gives_no_spurious_grey():
    mask = two_region_mask(a=(0, 0, 0), b=(255, 255, 255))
    labels = parse_mask(mask)
    assert not (labels == GREY).any()
    raw = parse_mask(mask, clean=False)
    assert (raw == GREY).any()  # the midtones really are the palette's grey


def test_reference_mode_thresholds():
    rgb = torch.tensor([[0.05, 0.95, 0.05], [0.15, 0.95, 0.05], [0.45, 0.55, 0.5], [0.95, 0.95, 0.95]]).T
    labels = parse_mask(rgb.reshape(3, 1, 4), mode="reference", clean=False)
    assert labels[0].tolist() == [GREEN, -1, GREY, WHITE]


def test_grayscale_mask():
    a = np.zeros((20, 30), np.uint8)
    a[:, 10:20] = 128
    a[:, 20:] = 255
    labels = parse_mask(Image.fromarray(a, "L"))
    assert (labels[:, :8] == BLACK).all() and (labels[:, 12:18] == GREY).all() and (labels[:, 22:] == WHITE).all()


def test_mask_a_pixel_off_is_resized_with_warning():
    mask = two_region_mask(41, 39, blur=False)
    with pytest.warns(MaskSizeWarning, match="39x41"):
        labels = parse_mask(mask, size=(40, 40))
    assert labels.shape == (40, 40)
    assert (labels[:, :15] == BLUE).all()


def test_mask_far_off_in_size_is_an_error():
    with pytest.raises(ValueError, match="must match their photo's size"):
        parse_mask(two_region_mask(30, 40), size=(40, 40))


def test_orphan_labels_are_reported_and_restricted():
    content = torch.full((10, 10), BLUE)
    content[:, 7:] = RED                       # 30% red, absent from the style
    style = torch.full((8, 8), BLUE)
    style[:, :2] = GREEN                       # green: in the style only (irrelevant)
    with pytest.warns(OrphanLabelWarning, match=r"red \(30\.0% of the content\)"):
        pair = MaskPair.from_labels(content, style)
    assert pair.names == ["blue"]
    assert pair.orphans == {"red": pytest.approx(0.3)}
    assert pair.content[0, :, 7:].sum() == 0   # orphan pixels get no style target
    with pytest.warns(OrphanLabelWarning, match="reference behaviour"):
        kept = MaskPair.from_labels(content, style, orphans="keep")
    assert kept.names == ["blue", "red"] and kept.style[1].sum() == 0


def test_no_shared_label_is_an_error():
    with pytest.raises(ValueError, match="share no label"):
        MaskPair.from_labels(torch.full((4, 4), RED), torch.full((4, 4), BLUE), warn=False)


def test_tiny_specks_are_dropped():
    content = torch.full((100, 100), BLUE)
    content[0, 0] = RED                        # 0.01%: an anti-aliasing speck, not a region
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pair = MaskPair.from_labels(content, torch.full((50, 50), BLUE))
    assert pair.names == ["blue"]


def test_downsampling_per_layer_like_the_reference():
    m = torch.zeros(1, 16, 16)
    m[:, :, :8] = 1
    names = ["conv1_1", "relu1_1", "pool1", "conv2_1"]
    out = downsample_for_layers(m, names, {"pool1": (8, 8)})
    assert out["conv1_1"].shape == (1, 16, 16) and out["pool1"].shape == (1, 8, 8)
    # 3x3 average pooling softens label borders, not the image edge.
    assert 0 < float(out["conv1_1"][0, 5, 8]) < 1
    assert float(out["conv1_1"][0, 5, 7]) == pytest.approx(2 / 3)
    assert float(out["conv1_1"][0, 5, 3]) == pytest.approx(1.0)
    assert float(out["conv2_1"][0, 0, 0]) == 1.0
    ones = downsample_for_layers(torch.ones(1, 16, 16), names, {"pool1": (8, 8)})
    assert all(bool((v == 1).all()) for v in ones.values())
    assert ((out["conv2_1"] >= 0) & (out["conv2_1"] <= 1)).all()


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"example masks not present at {SHARED}")
def test_real_example_masks_parse_cleanly():
    from dpst_ext.image_io import load_image

    for n in (1, 5, 25, 37, 41):
        ci = load_image(SHARED / "input" / f"in{n}.png")
        si = load_image(SHARED / "style" / f"tar{n}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cl = parse_mask(SHARED / "segmentation" / f"in{n}.png", tuple(ci.shape[1:]))
            sl = parse_mask(SHARED / "segmentation" / f"tar{n}.png", tuple(si.shape[1:]))
            pair = MaskPair.from_labels(cl, sl)
        # Almost every pixel is labelled (only anti-aliased borders are not).
        assert float((cl < 0).float().mean()) < 0.03 and float((sl < 0).float().mean()) < 0.03
        assert pair.content.sum(0).max() == 1  # one label per pixel
        assert len(pair.names) >= 1
    # Pair 25 uses all nine palette colours.
    cl = parse_mask(SHARED / "segmentation" / "in25.png")
    assert len([k for k in range(9) if (cl == k).sum() > 0.001 * cl.numel()]) == 9
