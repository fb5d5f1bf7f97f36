"""Gradient guidance through the frozen classifier: it moves x0_hat towards the class the logits say, and
leaves the classifier frozen and the null-token call untouched."""

import torch

from coupled.engine.guidance import ClassifierGradient


class _Fixed(torch.nn.Module):
    """A 'denoiser' that returns a fixed x0_hat whatever it is asked."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x_t, t, center=None, logits=None, **_):
        return self.x0.clone()


def _classifier():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(8, 3))
    net.train()  # the user's flag: guidance must run it in eval mode and leave the flag as it was
    return net


def test_guidance_raises_the_target_class_and_leaves_the_classifier_frozen():
    clf = _classifier()
    before = [p.detach().clone() for p in clf.parameters()]
    x0 = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    target = torch.tensor([0, 1, 2, 1])
    logits = torch.nn.functional.one_hot(target, 3).float() * 6
    guided = ClassifierGradient(_Fixed(x0), clf, scale=0.3, clip=None)
    out = guided(x0, torch.zeros(4), logits=logits)
    clf.eval()
    with torch.no_grad():
        p0 = clf(x0).log_softmax(-1).gather(1, target[:, None])
        p1 = clf(out).log_softmax(-1).gather(1, target[:, None])
    assert (p1 > p0).all()
    # scale is in RMS units of the gradient direction, per item
    step = (out - x0).flatten(1).pow(2).mean(1).sqrt()
    assert torch.allclose(step, torch.full((4,), 0.3), atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, clf.parameters()))
    assert all(p.grad is None for p in clf.parameters())


def test_no_logits_or_zero_scale_is_the_denoiser_itself_and_output_is_clipped():
    clf = _classifier()
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    assert torch.equal(ClassifierGradient(_Fixed(x0), clf, 0.5)(x0, torch.zeros(2)), x0)
    assert torch.equal(ClassifierGradient(_Fixed(x0), clf, 0.0)(x0, torch.zeros(2), logits=torch.randn(2, 3)), x0)
    out = ClassifierGradient(_Fixed(x0), clf, 50.0)(x0, torch.zeros(2), logits=torch.randn(2, 3))
    assert out.min() >= -1 and out.max() <= 1
    assert clf.training and all(m.training for m in clf.modules())  # the user's flags are restored
