"""Continual learning with neurogenesis: the growing network (unborn units inert, births leave the
function unchanged), CLN's new-feature phase (exactly the configured units, old weights
untouched), the filter of intrinsic replay and the per-class Gaussians of the latent space."""
import pytest
import torch

from clrepro import models
from clrepro.methods import CLN
from clrepro.methods.base import defaults


def _net(hidden=(3, 2), capacity=(6, 5), outputs=4):
    torch.manual_seed(0)
    return models.build({"type": "mlp", "hidden": list(hidden), "capacity": list(capacity)}, (7,), outputs)


def test_unborn_units_are_inert_and_births_leave_the_function_unchanged():
    net = _net()
    x = torch.randn(9, 7)
    out = net(x)
    assert net.widths() == [3, 2]
    assert (net.head.weight[:, 2:] == 0).all() and (net.features[2].weight[:, 3:] == 0).all()   # outgoing
    with torch.no_grad():                               # incoming weights of unborn units do nothing
        net.features[0].weight[3:] += 1.0
        net.features[2].weight[2:] += 1.0
    assert torch.equal(out, net(x))
    net(x).sum().backward()
    assert (net.features[0].weight.grad[3:] == 0).all() and (net.features[2].weight.grad[2:] == 0).all()
    rows = net.grow([2, 1])
    assert rows == [slice(3, 5), slice(2, 3)] and net.widths() == [5, 3]
    g = torch.Generator().manual_seed(0)
    for layer, r in enumerate(rows):
        net.init_units(layer, r, g)
    assert torch.allclose(out, net(x))                  # born with zero outgoing weights
    bound = 1 / 3 ** 0.5                                # layer 1's new unit: fan-in of the 3 units born before
    assert (net.features[2].weight[2, :5].abs() <= bound).all() and (net.features[2].weight[2, 5:] == 0).all()
    with pytest.raises(ValueError, match="capacity"):
        net.grow([2, 0])


def test_growing_mlp_refuses_a_capacity_below_its_width():
    with pytest.raises(ValueError, match="model.capacity"):
        _net(hidden=(3, 2), capacity=(2, 5))


def _cln(bench, **hp):
    torch.manual_seed(0)
    model = models.build({"type": "mlp", "hidden": [8, 6], "capacity": [14, 12]}, bench.input_shape, bench.n_outputs)
    m = CLN(model, bench, dict(defaults(CLN.hyperparameters), grow_units=3, latent=2, grow_latent=1, vae_hidden=[12],
                               stat_samples=20, batch_size=16) | hp, seed=0)
    m.steps = 20
    return m, model


def test_new_feature_phase_adds_the_configured_units_and_touches_only_their_weights(toy_bench):
    bench = toy_bench("class")
    m, model = _cln(bench)
    m.begin_task(0)
    m.end_task(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = bench.test[1].inputs()
    out = model(x)
    m.begin_task(1)
    m.prepare(1)
    assert model.widths() == [11, 9]                    # 3 units per hidden layer
    after = model.state_dict()
    new = {"features.0": slice(8, 11), "features.2": slice(6, 9)}
    for k, v in after.items():
        layer = k.rsplit(".", 1)[0]
        if k == "alive":
            continue
        changed = (v != before[k])
        if layer in new:                                 # only the new units' incoming weights and biases
            assert not changed[new[layer].stop:].any() and not changed[:new[layer].start].any(), k
            assert changed[new[layer]].any(), k
        else:
            assert not changed.any(), k
    assert torch.allclose(out, model(x), atol=1e-6)     # outgoing weights of the new units: still zero
    with pytest.raises(ValueError, match="capacity"):    # room for two births of 3 (14 - 8), not three
        m.prepare(2)
        m.prepare(3)


def test_filtered_replay_keeps_only_what_the_previous_classifier_assigns_to_the_class(toy_bench):
    bench = toy_bench("class")
    m, model = _cln(bench)
    m.begin_task(0)
    m.end_task(0)
    m.begin_task(1)
    batches = m.draw(16).batches
    replay = batches[-1]
    assert len(batches) == 2 and 0 < len(replay.y) <= 16 and set(replay.y.tolist()) <= {0, 1}
    assert (m.teacher(replay.x)[:, :2].argmax(1) == replay.y).all()
    assert m.kept[1] == 32 and m.kept[0] >= len(replay.y)      # twice the samples drawn (oversample 2)
    assert (replay.lo, replay.hi) == (0, 4)


def test_class_gaussians_are_the_mean_and_covariance_of_the_encodings(toy_bench):
    bench = toy_bench("class")
    m, _ = _cln(bench, latent=3)
    mu = torch.randn(50, m.vae.latent)
    m._fit(1, mu)
    d = 3
    assert torch.allclose(m.stat_mean[1, :d], mu[:, :d].mean(0))
    cov = m.stat_chol[1, :d, :d] @ m.stat_chol[1, :d, :d].T
    assert torch.allclose(cov, torch.cov(mu[:, :d].T) + 1e-4 * torch.eye(d), atol=1e-5)
    assert (m.stat_mean[1, d:] == 0).all() and (m.stat_chol[1, d:] == 0).all()   # unused latent dimensions


def test_cln_needs_a_network_with_room_to_grow(toy_bench):
    bench = toy_bench("class")
    model = models.build({"type": "mlp", "hidden": [8]}, bench.input_shape, bench.n_outputs)
    with pytest.raises(ValueError, match="capacity"):
        CLN(model, bench, defaults(CLN.hyperparameters), seed=0)
    model = models.build({"type": "mlp", "hidden": [8], "capacity": [9]}, bench.input_shape, bench.n_outputs)
    with pytest.raises(ValueError, match="capacity"):
        CLN(model, bench, dict(defaults(CLN.hyperparameters), grow_units=1), seed=0)   # 2 births of 1 in a room of 1
