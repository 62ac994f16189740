"""The SDM-MLP (Bricken et al. 2023): Top-K exactness, the GABA switch's schedule, the weight
constraints after optimiser steps, each ablation removing its component, and the one-head
class-incremental protocol."""
import pytest
import torch

from clrepro import models
from clrepro.models import SDMLP, TopK


def test_topk_subtract_keeps_exactly_the_k_largest_shifted_by_the_next():
    h = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3], [0.2, 0.8, 0.6, 0.0, 0.4]])
    out = TopK(5, 2, "subtract")(h)
    # row 0: top 0.9, 0.7; 3rd largest 0.5 -> 0.4, 0.2; row 1: top 0.8, 0.6; 3rd 0.4 -> 0.4, 0.2
    expected = torch.tensor([[0.4, 0, 0, 0.2, 0], [0, 0.4, 0.2, 0, 0]])
    assert torch.allclose(out, expected)
    mask = TopK(5, 2, "mask")(h)
    assert torch.allclose(mask, torch.tensor([[0.9, 0, 0, 0.7, 0], [0, 0.8, 0.6, 0, 0]]))
    assert torch.equal(TopK(5, 2, "none")(h), h)


def test_topk_gradient_flows_through_the_active_neurons_only():
    h = torch.rand(8, 50, requires_grad=True)
    out = TopK(50, 5, "subtract")(h)
    out.sum().backward()
    active = out > 0
    assert (active.sum(1) == 5).all()
    assert torch.equal(h.grad, active.float())     # the threshold is detached: d out / d h = 1 where active


def test_gaba_switch_schedule_from_all_active_to_topk():
    torch.manual_seed(0)
    t = TopK(20, 3, "gaba", switch_after=100)
    h = torch.rand(10, 20)
    assert torch.equal(t.gate(), -torch.ones(20))
    out = t(h)                                     # g = -1: every neuron on, shifted up by the 4th value
    assert (out > 0).all() and torch.allclose(out, h + h.topk(4, 1).values[:, -1:])
    assert torch.equal(t.count, torch.full((20,), 10.0))
    t.count.fill_(75)                              # g = -1 + 2 * 75/100 = 0.5
    assert torch.allclose(t.gate(), torch.full((20,), 0.5))
    t.count.fill_(100)                             # switched: pure Top-K
    assert torch.allclose(t(h), TopK(20, 3, "subtract")(h)) and ((t(h) > 0).sum(1) == 3).all()
    t.count.fill_(10 ** 6)
    assert torch.equal(t.gate(), torch.ones(20))   # clipped at 1
    t.eval()
    before = t.count.clone()
    t(h)
    assert torch.equal(t.count, before)            # only training counts


def test_weights_stay_non_negative_and_addresses_unit_norm_after_updates():
    torch.manual_seed(1)
    net = SDMLP(30, 40, 4, k=5, activation="subtract")
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    assert (net.hidden.weight >= 0).all() and net.hidden.bias is None and net.head.bias is None
    for _ in range(5):
        x, y = torch.randn(16, 30), torch.randint(0, 4, (16,))
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert (net.hidden.weight < 0).any() or (net.head.weight < 0).any()   # SGD alone breaks them
        net.constrain()
        assert (net.hidden.weight >= 0).all() and (net.head.weight >= 0).all()
        assert torch.allclose(net.hidden.weight.norm(dim=1), torch.ones(40))


def test_inputs_are_normalised_so_scale_does_not_matter():
    torch.manual_seed(2)
    net = SDMLP(30, 40, 4, k=5).eval()
    x = torch.rand(3, 30)
    assert torch.allclose(net(x), net(7.0 * x), atol=1e-6)
    signed = SDMLP(30, 40, 4, k=5, positive=False, normalize=False).eval()
    assert not torch.allclose(signed(x), signed(7.0 * x))


@pytest.mark.parametrize("change,check", [
    ({"activation": "none"}, lambda n: n.topk.mode == "none"),
    ({"normalize": False}, lambda n: not n.normalize),
    ({"positive": False}, lambda n: not n.positive),
    ({"bias": True}, lambda n: n.hidden.bias is not None and n.head.bias is not None),
    ({"k": 3}, lambda n: n.topk.k == 3),
])
def test_build_applies_each_ablation(change, check):
    spec = {"type": "sdm", "neurons": 50, "k": 10, "switch_after": 1000} | change
    net = models.build(spec, (1, 28, 28), 10)
    assert isinstance(net, SDMLP) and check(net) and net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_reset_parameters_clears_the_switch_counts():
    net = SDMLP(10, 20, 2, k=3, switch_after=50)
    net(torch.rand(5, 10))
    assert net.topk.count.sum() > 0
    net.reset_parameters()
    assert net.topk.count.sum() == 0 and (net.hidden.weight >= 0).all()


def test_bad_k_names_the_key():
    with pytest.raises(ValueError, match="model.k"):
        TopK(10, 10)
    with pytest.raises(ValueError, match="model.activation"):
        TopK(10, 2, "softmax")
