import math

import pytest
import torch

from benchmark3dface.losses import (
    CenterLoss,
    recognition_loss,
    softmax_recognition_loss,
    wgan_critic_loss,
    wgan_div_critic_loss,
    wgan_div_gradient_penalty,
    wgan_generator_loss,
)


def test_center_loss_value_and_ignored_labels():
    torch.manual_seed(0)
    cl = CenterLoss(3, 2)
    with torch.no_grad():
        cl.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    feats = torch.tensor([[3.0, 4.0], [1.0, 1.0], [100.0, 0.0]])
    labels = torch.tensor([0, 1, -1])
    assert cl(feats, labels).item() == pytest.approx(0.5 * (25 + 0) / 2)
    assert cl(feats, torch.full((3,), -1)).item() == 0.0
    with pytest.raises(ValueError):
        cl(torch.zeros(3, 5), labels)


def test_center_loss_sgd_pulls_centres_to_class_means():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat(5)
    means = torch.randn(4, 8, generator=g) * 3
    feats = means[labels] + 0.1 * torch.randn(20, 8, generator=g)
    torch.manual_seed(0)
    cl = CenterLoss(4, 8)
    lr = 2.0  # plain SGD; effective step 0.5 per centre (5 of the 20 samples each)
    losses = []
    for _ in range(10):
        cl.zero_grad()
        loss = cl(feats, labels)
        loss.backward()
        with torch.no_grad():
            cl.centers -= lr * cl.centers.grad
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert torch.allclose(cl.centers.detach(), means, atol=0.2)
    # and the features are pulled toward their centres
    f = feats.clone().requires_grad_(True)
    cl(f, labels).backward()
    step = f - 0.5 * f.grad
    assert cl(step, labels) < cl(feats, labels)


def test_recognition_loss_combines_terms():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [5.0, -5.0]])
    labels = torch.tensor([0, 1, -1])
    ce = (-torch.log_softmax(logits[:2], 1)[[0, 1], [0, 1]]).mean()
    assert softmax_recognition_loss(logits, labels).item() == pytest.approx(ce.item(), rel=1e-6)
    cl = CenterLoss(2, 2)
    feats = torch.randn(3, 2)
    total = recognition_loss(logits, labels, feats, cl, 0.01)
    assert total.item() == pytest.approx(ce.item() + 0.01 * cl(feats, labels).item(), rel=1e-6)
    with pytest.raises(ValueError):
        recognition_loss(logits, labels, feats, cl)


class QuadraticCritic(torch.nn.Module):
    """D(x) = sum_j c_j x_j^2 per sample: grad_x D = 2 c * x."""

    def __init__(self, c):
        super().__init__()
        self.c = torch.nn.Parameter(c)

    def forward(self, x):
        return (self.c * x ** 2).flatten(1).sum(1)


def test_wgan_div_penalty_matches_analytic_gradient():
    g = torch.Generator().manual_seed(0)
    c = torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.5
    critic = QuadraticCritic(c.clone())
    real = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)

    def analytic(x, k=2.0, p=6.0):
        return k * ((2 * c * x).flatten(1).norm(dim=1) ** p).mean()

    pen = wgan_div_gradient_penalty(critic, real, fake)
    assert pen.item() == pytest.approx(0.5 * (analytic(real) + analytic(fake)).item(), rel=1e-10)
    pen = wgan_div_gradient_penalty(critic, real, fake, k=3.0, p=2.0)
    assert pen.item() == pytest.approx(0.5 * (analytic(real, 3.0, 2.0) + analytic(fake, 3.0, 2.0)).item(), rel=1e-10)
    e = torch.rand((4, 1, 1), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    interp = e * real + (1 - e) * fake
    pen = wgan_div_gradient_penalty(critic, real, fake, sampling="interpolate",
                                    generator=torch.Generator().manual_seed(7))
    assert pen.item() == pytest.approx(analytic(interp).item(), rel=1e-10)


def test_wgan_div_penalty_double_backprop_gradcheck():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(3, 4, generator=g, dtype=torch.float64)
    fake = torch.randn(3, 4, generator=g, dtype=torch.float64)

    def fn(c):
        return wgan_div_gradient_penalty(lambda x: (c * x ** 2).sum(1), real, fake, p=6.0)

    c = (torch.rand(4, generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (c,))


def test_wgan_losses_and_critic_objective():
    real_s, fake_s = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert wgan_critic_loss(real_s, fake_s).item() == pytest.approx(-1.0 - 2.0)
    assert wgan_generator_loss(fake_s).item() == pytest.approx(1.0)
    c = torch.tensor([[1.0, 2.0]])
    critic = QuadraticCritic(c.clone())
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    fake = torch.tensor([[0.5, 0.5], [0.0, 0.0]], requires_grad=True)
    out = wgan_div_critic_loss(critic, real, fake)
    expected_w = critic(fake).mean() - critic(real).mean()
    assert out.wasserstein.item() == pytest.approx(expected_w.item())
    assert out.total.item() == pytest.approx(out.wasserstein.item() + out.penalty.item())
    out.total.backward()
    assert fake.grad is None  # the critic step does not reach the generator
    assert critic.c.grad is not None and torch.isfinite(critic.c.grad).all()
    with pytest.raises(ValueError):
        wgan_div_gradient_penalty(critic, real, fake[:, :1])
    assert math.isfinite(out.penalty.item())
