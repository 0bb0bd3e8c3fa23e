"""Closed-form colour transport (dpst_ext.transport) on synthetic colour clouds and small photos."""
import pytest
import torch

from dpst_ext import samples
from dpst_ext.masks import MaskPair
from dpst_ext.metrics import photoreal_residual
from dpst_ext.transport import SlicedMap, apply_lut, closed_form, fit_sliced_map, transport_colours


def cloud(n, seed, mean=(0.4, 0.5, 0.6), std=0.1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=g, dtype=torch.float64) * std + torch.tensor(mean, dtype=torch.float64))


def test_isotropic_affine_map_is_recovered_pointwise():
    # y = 2 x + t projects on every axis to a 1-D affine map, which quantile matching recovers exactly
    # (up to the quantile grid), so every point lands on its image, not only the cloud on the cloud.
    x = cloud(20000, 0)
    t = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    m = fit_sliced_map(x, 2 * x + t, rotations=5, quantiles=512)
    probe = cloud(1000, 1, std=0.03)          # well inside the fitted range along every direction
    err = (m(probe[None])[0] - (2 * probe + t)).abs().max()
    assert err < 5e-3, err


def test_monotone_map_per_channel_is_recovered_in_distribution():
    x = cloud(20000, 2).clamp(0, 1)
    y = x ** 2                                          # a monotone map per channel (not affine)
    m = fit_sliced_map(x, y, rotations=30)
    out = m(x[None])[0]
    for q in (0.1, 0.5, 0.9):
        assert torch.allclose(out.quantile(q, dim=0), y.quantile(q, dim=0), atol=5e-3)


def test_statistics_match_per_label():
    h, w = 40, 60
    content = torch.zeros(3, h, w, dtype=torch.float64)
    style = torch.zeros(3, h, w, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    content[:, :, :30] = 0.3 + 0.05 * torch.rand(3, h, 30, generator=g, dtype=torch.float64)
    content[:, :, 30:] = 0.6 + 0.05 * torch.rand(3, h, 30, generator=g, dtype=torch.float64)
    style[:, :20] = torch.tensor([0.8, 0.2, 0.1], dtype=torch.float64).view(3, 1, 1) \
        + 0.1 * torch.rand(3, 20, w, generator=g, dtype=torch.float64)
    style[:, 20:] = torch.tensor([0.1, 0.3, 0.7], dtype=torch.float64).view(3, 1, 1) \
        + 0.02 * torch.rand(3, 20, w, generator=g, dtype=torch.float64)
    cl = torch.zeros(h, w, dtype=torch.int64)
    cl[:, 30:] = 1
    sl = torch.zeros(h, w, dtype=torch.int64)
    sl[20:] = 1
    masks = MaskPair.from_labels(cl, sl, warn=False)
    for lut in (33, None):
        out = transport_colours(content, style, masks, lut_size=lut)
        for k in range(2):
            o = out.reshape(3, -1)[:, masks.content[k].reshape(-1) > 0]
            s = style.reshape(3, -1)[:, masks.style[k].reshape(-1) > 0]
            assert torch.allclose(o.mean(1), s.mean(1), atol=0.01), (lut, k)
            assert torch.allclose(o.std(1), s.std(1), atol=0.01), (lut, k)


def test_tiny_orphan_and_unlabelled_pixels_use_the_whole_map():
    content = samples.photo("astronaut", 48)
    style = samples.photo("coffee", 48)
    h, w = content.shape[1:]
    cm = torch.zeros(4, h, w)
    cm[0, :24] = 1                  # a normal label
    cm[1, 30, 30] = 1               # one pixel in the content
    cm[2, 40:, :] = 1               # an orphan: absent from the style
    # label 3 empty in the content; rows 24..39 (but the one pixel) are in no label
    sm = torch.zeros(4, *style.shape[1:])
    sm[0, :20] = 1
    sm[1, 20:] = 1
    sm[3, :5] = 1
    out = transport_colours(content, style, MaskPair(cm, sm, ["a", "b", "c", "d"]))
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    whole = transport_colours(content, style, None)
    no_label = cm.sum(0) == 0
    assert torch.allclose(out[:, no_label], whole[:, no_label], atol=1e-6)
    assert torch.allclose(out[:, 30, 30], whole[:, 30, 30], atol=1e-6)      # too small: the whole map
    assert torch.allclose(out[:, 40:], whole[:, 40:], atol=1e-6)            # orphan: the whole map


def test_lut_is_exact_for_affine_maps():
    # Trilinear interpolation reproduces affine functions: a table of x -> A x + b applies them exactly.
    a = torch.tensor([[0.5, 0.1, 0.0], [0.0, 0.7, 0.2], [0.1, 0.0, 0.6]])
    b = torch.tensor([0.1, 0.05, 0.2])
    axis = torch.linspace(0, 1, 9)
    bb, gg, rr = torch.meshgrid(axis, axis, axis, indexing="ij")
    grid = torch.stack([rr, gg, bb], -1).reshape(-1, 3)
    lut = (grid @ a.T + b).T.reshape(3, 9, 9, 9)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(apply_lut(lut, x), x @ a.T + b, atol=1e-6)


def test_lut_follows_the_exact_map():
    x, y = cloud(8000, 5).clamp(0, 1), cloud(8000, 6, mean=(0.7, 0.3, 0.2), std=0.15).clamp(0, 1)
    m = fit_sliced_map(x, y, rotations=10)
    lut = m.lut(33)[0]
    assert (apply_lut(lut, x).double() - m(x[None])[0]).abs().mean() < 0.01


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="source and target"):
        fit_sliced_map(torch.zeros(10, 4), torch.zeros(10, 3))
    with pytest.raises(ValueError, match="at least one colour"):
        fit_sliced_map(torch.zeros(0, 3), torch.zeros(10, 3))
    with pytest.raises(ValueError, match="content must be an RGB image"):
        transport_colours(torch.zeros(4, 8, 8), torch.zeros(3, 8, 8))


def test_seeded():
    c, s = samples.photo("rocket", 40), samples.photo("coffee", 40)
    assert torch.equal(transport_colours(c, s, seed=1), transport_colours(c, s, seed=1))


def test_closed_form_is_near_a_local_affine_recolouring():
    # The transport alone breaks the content's local structure; the matting smoothing pulls it back.
    c, s = samples.photo("rocket", 96, torch.float32), samples.photo("coffee", 96, torch.float32)
    raw = transport_colours(c, s)
    out = closed_form(c, s)
    assert out.shape == c.shape and out.dtype == torch.float32
    r_raw, r_out = photoreal_residual(c, raw), photoreal_residual(c, out)
    assert r_out < 0.2 * r_raw, (r_out, r_raw)
    assert r_out < 1e-3
    # ... while keeping the transported colours: the mean colour moves by little.
    assert (out.mean((1, 2)) - raw.mean((1, 2)).float()).abs().max() < 0.02
    assert isinstance(closed_form(c, s, smoothing="off"), torch.Tensor)
    assert torch.equal(closed_form(c, s, smoothing="off"), raw.float())


def test_a_clump_of_equal_colours_goes_to_the_mean_of_its_targets():
    # One colour cannot be spread over a distribution; the best single value is the target's mean (not the
    # end of its range, where a repeated knot's last value would send it).
    src = torch.full((5000, 3), 0.9, dtype=torch.float64)
    dst = cloud(5000, 7, mean=(0.3, 0.5, 0.2), std=0.05)
    m = fit_sliced_map(src, dst, rotations=4)
    assert torch.allclose(m(src[None])[0][0], dst.mean(0), atol=2e-3)


def test_tabulated_interpolation_follows_the_exact_one():
    """_interp tabulates each axis' map on 1024 points and interpolates linearly between them; on a smooth
    map over 256 random knots it must stay within 1e-4 of the exact piecewise-linear map (measured 7e-6;
    looking up the table without interpolating is off by 1.6e-3), constant beyond the end knots."""
    from dpst_ext.transport import _interp, _interp_exact

    g = torch.Generator().manual_seed(0)
    xs = torch.sort(torch.rand(3, 256, generator=g, dtype=torch.float64), dim=1).values
    ys = 0.8 * xs ** 2 + 0.1
    x = torch.rand(3, 5000, generator=g, dtype=torch.float64) * 1.2 - 0.1
    exact = _interp_exact(x, xs, ys)
    assert float((_interp(x, xs, ys) - exact).abs().max()) <= 1e-4
    assert torch.equal(exact[x < xs[:, :1]], ys[:, :1].expand_as(x)[x < xs[:, :1]])
