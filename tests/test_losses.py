"""The DPST objective's terms against direct computations from the formulas (float64)."""
import pytest
import torch

from dpst_ext import samples
from dpst_ext.engine import MattingLaplacian
from dpst_ext.losses import DPSTObjective, LossWeights, mask_support, masked_gram, masked_style_loss, tv_loss
from dpst_ext.masks import MaskPair
from dpst_ext.vgg import VGG19Features, deprocess, preprocess


def gram_reference(f, m):
    """G = (F*M)(F*M)^T / (C*h*w*mean(M)), element by element."""
    c, h, w = f.shape
    fm = [(f[i] * m).flatten() for i in range(c)]
    g = torch.empty(c, c, dtype=f.dtype)
    for i in range(c):
        for j in range(c):
            g[i, j] = (fm[i] * fm[j]).sum()
    return g / (c * h * w * m.mean())


def test_masked_gram_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(6, 7, 9, generator=g, dtype=torch.float64)
    masks = torch.rand(3, 7, 9, generator=g, dtype=torch.float64)
    masks[2] = 0
    out = masked_gram(f, masks)
    for k in range(2):
        assert torch.allclose(out[k], gram_reference(f, masks[k]), rtol=1e-12, atol=0)
    assert (out[2] == 0).all()  # empty mask: zero Gram, no NaN


def test_masked_gram_with_precomputed_support_is_the_same():
    g = torch.Generator().manual_seed(2)
    f = torch.rand(4, 6, 5, generator=g, dtype=torch.float64)
    masks = (torch.rand(3, 6, 5, generator=g) > 0.6).double() * torch.rand(3, 6, 5, generator=g, dtype=torch.float64)
    masks[1] = 0
    assert torch.equal(masked_gram(f, masks, mask_support(masks)), masked_gram(f, masks))


def test_objective_finds_the_mask_pixels_once(monkeypatch):
    # torch.nonzero makes CUDA wait for the device: the objective calls it when built, not per iteration.
    vgg = VGG19Features(("relu1_1", "relu2_1", "relu4_2"))
    c = samples.photo("rocket", 32, torch.float32)
    s = samples.photo("coffee", 32, torch.float32)
    cl = (torch.arange(c.shape[1])[:, None] >= c.shape[1] // 2).long().expand(c.shape[1:])
    sl = (torch.arange(s.shape[2])[None, :] >= s.shape[2] // 2).long().expand(s.shape[1:])
    obj = DPSTObjective(vgg, c, s, MaskPair.from_labels(cl, sl), style_layers=("relu1_1", "relu2_1"))
    x = preprocess(c[None])
    before = obj(x)["total"]

    def fail(*args, **kwargs):
        raise AssertionError("torch.nonzero called during an iteration")

    monkeypatch.setattr(torch, "nonzero", fail)
    assert torch.equal(obj(x)["total"], before)


def test_masked_style_loss_matches_direct_computation():
    g = torch.Generator().manual_seed(1)
    f_out = torch.rand(5, 8, 8, generator=g, dtype=torch.float64)
    f_sty = torch.rand(5, 6, 10, generator=g, dtype=torch.float64)
    m_out = (torch.rand(2, 8, 8, generator=g) > 0.5).double()
    m_sty = (torch.rand(2, 6, 10, generator=g) > 0.5).double()
    target = masked_gram(f_sty, m_sty)
    want = sum(((gram_reference(f_out, m_out[k]) - gram_reference(f_sty, m_sty[k])) ** 2).mean() * m_out[k].mean()
               for k in range(2))
    assert float(masked_style_loss(f_out, m_out, target)) == pytest.approx(float(want), rel=1e-12)


def test_tv_loss_and_its_gradient():
    x = torch.rand(1, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    xd = x.detach()
    want = 0.5 * sum(float((xd[0, c, i, j + 1] - xd[0, c, i, j]) ** 2) for c in range(3) for i in range(5) for j in range(3)) \
        + 0.5 * sum(float((xd[0, c, i + 1, j] - xd[0, c, i, j]) ** 2) for c in range(3) for i in range(4) for j in range(4))
    assert float(tv_loss(x)) == pytest.approx(want, rel=1e-12)
    assert torch.autograd.gradcheck(tv_loss, (x,))


@pytest.fixture(scope="module")
def objective():
    vgg = VGG19Features()
    c = samples.photo("rocket", 48, torch.float32)
    s = samples.photo("coffee", 40, torch.float32)
    return DPSTObjective(vgg, c, s, MaskPair.single(c.shape[1:], s.shape[1:]))


def test_objective_terms_and_weights(objective):
    x = preprocess(objective.content[None])
    terms = objective(x, use_photoreal=True)
    assert float(terms["content"]) == pytest.approx(0.0, abs=1e-6)  # the content itself
    assert set(terms) == {"content", "style", "tv", "photoreal", "total"}
    assert float(terms["total"]) == pytest.approx(sum(float(v) for k, v in terms.items() if k != "total"), rel=1e-6)
    assert LossWeights() == LossWeights(5.0, 100.0, 1e-3, 1e4)
    # Style with one all-ones mask = the classic Gram loss, averaged over the five layers.
    feats = objective.vgg(x, caffe_input=True)
    style = 0.0
    for n in objective.style_layers:
        f = feats[n][0].double()
        c, h, w = f.shape
        g = (f.reshape(c, -1) @ f.reshape(c, -1).T) / (c * h * w)
        style += 0.2 * float(((g - objective.style_targets[n].double()) ** 2).mean())
    assert float(terms["style"]) == pytest.approx(100.0 * style, rel=1e-4)


def test_photoreal_term_uses_the_engine_and_its_gradient(objective):
    rgb = torch.rand(3, *objective.content.shape[1:], generator=torch.Generator().manual_seed(2))
    x = preprocess(rgb[None]).requires_grad_()
    term = objective(x, use_photoreal=True)["photoreal"]
    L = MattingLaplacian(objective.content.double(), eps=1e-7)
    v = deprocess(x.detach().double())[0]
    assert float(term) == pytest.approx(1e4 * float(L.quad(v)), rel=1e-5)
    term.backward()
    # d/dx lambda V^T M V with V = flip((x + mean) / 255): lambda * 2 M V / 255, channels flipped back.
    want = (1e4 * 2 * L.matvec(v) / 255.0).flip(0)
    assert torch.allclose(x.grad[0].double(), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_retarget_makes_the_content_loss_measure_against_the_start():
    vgg = VGG19Features()
    c, s = samples.photo("rocket", 32, torch.float32), samples.photo("coffee", 32, torch.float32)
    obj = DPSTObjective(vgg, c, s, MaskPair.single(c.shape[1:], s.shape[1:]))
    start = c.flip(0)                                      # the content in other colours
    x = preprocess(start[None])
    assert float(obj(x)["content"]) > 0
    obj.retarget(start)
    assert float(obj(x)["content"]) == 0.0
    assert float(obj(preprocess(c[None]))["content"]) > 0
    with pytest.raises(ValueError, match="content's shape"):
        obj.retarget(start[:, 1:])
