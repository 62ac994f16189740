"""Brain-inspired replay (van de Ven et al. 2020): the per-class prior's KL term, the decoder's
gating by class, conditional replay distilled from the previous network, and internal replay."""
import pytest
import torch
import torch.nn.functional as F

from clrepro import models
from clrepro.methods import BIR
from clrepro.methods.base import defaults
from clrepro.methods.bir import FeedbackGenerator
from clrepro.methods.lwf import distillation
from clrepro.train import learn


def _bir(bench, hidden=(16,), **hp):
    torch.manual_seed(0)
    model = models.build({"type": "mlp", "hidden": list(hidden)}, bench.input_shape, bench.n_outputs)
    return BIR(model, bench, dict(defaults(BIR.hyperparameters), latent=4) | hp, seed=0), model


def test_kl_against_the_class_mode_is_the_closed_form():
    gen = FeedbackGenerator(8, 3, [6], 5, classes=4, gating=0.0, gen=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gen.prior_logvar.copy_(torch.randn(4, 3))
    mu, logvar, c = torch.randn(7, 3), torch.randn(7, 3), torch.tensor([0, 1, 2, 3, 3, 2, 1])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(gen.prior_mu[c], (0.5 * gen.prior_logvar[c]).exp())
    assert torch.allclose(gen.kl(mu, logvar, c), torch.distributions.kl_divergence(q, p).sum(1), atol=1e-5)


def test_each_class_gates_off_its_fraction_of_every_decoder_layer():
    gen = FeedbackGenerator(8, 3, [20, 10], 5, classes=6, gating=0.3, gen=torch.Generator().manual_seed(0))
    g0, g1 = gen.gate0, gen.gate1
    assert (g0.sum(1) == 14).all() and (g1.sum(1) == 7).all()          # round(0.3 * 20), round(0.3 * 10) off
    assert len({tuple(r.tolist()) for r in g0}) == 6                      # a different set per class
    z, c = torch.randn(6, 3), torch.arange(6)
    h = torch.relu(gen.hidden[0](z)) * g0
    h = torch.relu(gen.hidden[1](h)) * g1
    assert torch.allclose(gen.decode(z, c), gen.out(h))
    # a gated unit takes no part: changing its incoming weights leaves the class's output alone
    off = int((g0[2] == 0).nonzero()[0])
    before = gen.decode(z[2:3], c[2:3])
    with torch.no_grad():
        gen.hidden[0].weight[off] += 5.0
    assert torch.equal(before, gen.decode(z[2:3], c[2:3]))


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_replay_is_conditional_and_distilled_from_the_previous_network(toy_bench, scenario):
    bench = toy_bench(scenario)
    m, model = _bir(bench, gating=0.25)
    m.begin_task(0)
    m.end_task(0)
    old_net, old_gen = m.previous
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    m.begin_task(2)                                      # two tasks seen before: classes 0..3
    step = m.draw(16)
    (b,) = step.batches
    assert set(m._global(b).tolist()) == {4, 5}          # the generator's classes: global, in every scenario
    state = m.replay_gen.get_state()
    torch.manual_seed(1)
    step.outputs = m.forward(step)
    loss = m.loss(step)
    # by hand, with the same draws
    g = torch.Generator()
    g.set_state(state)
    torch.manual_seed(1)
    top = model.features(b.x)
    gy = b.y if scenario == "class" else b.y + 2 * b.task
    current = F.cross_entropy(model(b.x)[:, b.lo:b.hi], b.y) + m.gen.loss(top, b.x, gy, True)
    c = torch.randint(4, (16,), generator=g)
    x = old_gen.sample(c, g, True)
    assert x.shape == (16, 20) and (x >= 0).all() and (x <= 1).all()
    teacher, z = old_net(x), model(x)
    if scenario == "task":                               # each sample on its own task's head
        kd = sum((c // 2 == s).float().mean() * distillation(z[c // 2 == s, 2 * s:2 * s + 2],
                                                             teacher[c // 2 == s, 2 * s:2 * s + 2], 2.0)
                 for s in (c // 2).unique().tolist())
    elif scenario == "domain":
        kd = distillation(z[:, :2], teacher[:, :2], 2.0)
    else:                                                # all 6 classes; the teacher's first 4, zero-padded
        kd = distillation(z[:, :6], teacher[:, :4], 2.0)
    replayed = kd + m.gen.loss(model.features(x), x, c, True)
    assert torch.allclose(loss, current / 3 + 2 * replayed / 3, atol=1e-5)


def test_internal_replay_feeds_hidden_activations_and_freezes_the_layers_below(toy_bench):
    bench = toy_bench("class")
    m, model = _bir(bench, hidden=(16, 12), internal=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def train(task, steps=5):
        m.begin_task(task)
        for _ in range(steps):
            learn(m, opt, m.draw(8), amp={"device_type": "cpu", "enabled": False})

    first = model.features[0].weight.clone()
    train(0)
    assert not torch.equal(first, model.features[0].weight)            # the first task trains every layer
    m.end_task(0)
    assert m.gen.out.out_features == 16                                   # the decoder ends at hidden layer 1
    x = m.previous[1].sample(torch.tensor([0, 1]), torch.Generator().manual_seed(0), m.binary)
    assert x.shape == (2, 16)
    front, upper = model.features[0].weight.clone(), model.features[2].weight.clone()
    train(1)
    assert torch.equal(front, model.features[0].weight)                   # frozen below the replay level
    assert not torch.equal(upper, model.features[2].weight)


def test_bad_settings_name_their_key(toy_bench):
    bench = toy_bench("class")
    with pytest.raises(ValueError, match="internal"):
        _bir(bench, internal=1)                                           # one hidden layer: nothing below it
    with pytest.raises(ValueError, match="gating"):
        _bir(bench, gating=1.0)
