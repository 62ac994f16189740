"""CRUMB (Talbot et al., arXiv:2104.02206): a feature chunk is encoded as its most similar memory
block, a stored index decodes to exactly that block, replay trains the top and the codebook but
never the frozen extractor, and the memory it holds is counted in bytes."""
import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from clrepro import methods, models
from clrepro.methods.base import Step
from clrepro.train import learn


def _crumb(bench, model=None, **hp):
    cls, hp = methods.expand("crumb", {"method": "crumb", "budget": 12, "block_length": 4, "blocks": 6} | hp,
                             bench.scenario)
    torch.manual_seed(0)   # a network whose units all respond to the toy data
    model = model or models.build({"type": "mlp", "hidden": [8, 6]}, bench.input_shape, bench.n_outputs)
    return cls(model, bench, hp, seed=0), model


def test_encoding_picks_the_most_similar_block_and_an_index_decodes_to_its_block(toy_bench):
    m, model = _crumb(toy_bench("class"))
    with torch.no_grad():
        model.codebook.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1],
                                           [-1.0, 0, 0, 0], [0, 0, 0, 5.0]]))
    # two samples, 8 features = 2 chunks of 4. Cosine with the rows, by hand:
    # (3, 0.1, 0, 0): row 0 (0.9994), row 3 only 0.53 -> 0; (0, 0, 2, 1.9): row 2 (0.9997) -> 2;
    # (0.5, 0.5, 0.5, 0.6): row 3 (0.996) -> 3, although row 5 has the largest dot product (3.0);
    # all zeros: every similarity 0, the first row -> 0
    z = torch.tensor([[3.0, 0.1, 0, 0, 0, 0, 2, 1.9], [0.5, 0.5, 0.5, 0.6, 0, 0, 0, 0]])
    codes = m.encode(z)
    assert codes.tolist() == [[0, 2], [3, 0]]
    brute = torch.stack([torch.stack([F.cosine_similarity(c[None], model.codebook, dim=1).argmax() if c.any()
                                      else torch.tensor(0) for c in s.reshape(2, 4)]) for s in z])
    assert torch.equal(codes, brute)
    # a stored index reconstructs exactly the block it names, in the chunk's place
    decoded = m.decode(torch.tensor([[5, 1], [2, 2]], dtype=torch.uint8))
    assert torch.equal(decoded, torch.stack([model.codebook[[5, 1]].flatten(), model.codebook[[2, 2]].flatten()]))


def test_a_conv_feature_map_is_cut_along_its_channels_at_each_position():
    bench = SimpleNamespace(input_shape=(1, 8, 8), scenario="class")   # 8x8 images: a 4x8x8 map at the cut
    m, model = _crumb(bench, models.CNN((1, 8, 8), [4], 6, 6), cut=2, block_length=2)
    assert m.shape == (4, 8, 8) and m.positions == 8 * 8 * 2
    z = torch.randn(3, 4, 8, 8)
    codes = m.encode(z)
    for b, h, w, k in [(0, 0, 0, 0), (1, 3, 5, 1), (2, 7, 7, 1)]:   # position (h, w), channels 2k, 2k+1
        chunk = z[b, 2 * k:2 * k + 2, h, w]
        expected = F.cosine_similarity(chunk[None], model.codebook, dim=1).argmax()
        assert codes[b, (h * 8 + w) * 2 + k] == expected
    back = m.decode(codes)
    assert back.shape == z.shape
    assert torch.equal(back[1, 2:4, 3, 5], model.codebook[codes[1, (3 * 8 + 5) * 2 + 1]])


def test_replay_trains_the_top_and_the_codebook_never_the_frozen_extractor(toy_bench):
    bench = toy_bench("class")
    m, model = _crumb(bench)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    m.begin_task(0)
    m.prepare(0)
    assert model.codebook.abs().sum() > 0                          # drawn from f's feature values
    for _ in range(3):                                             # base initialisation: f learns
        step = m.draw(16)
        opt.zero_grad(set_to_none=False)
        step.outputs = m.forward(step)
        m.loss(step).backward()
        assert model.features[0].weight.grad.abs().sum() > 0
        opt.step()
    m.end_task(0)
    assert len(m.buffer) == 12 and m.buffer.x.dtype == torch.uint8 and m.buffer.x.shape[1] == 8 // 4
    f = model.features[0].weight.detach().clone()
    m.begin_task(1)
    step = m.draw(16)
    batches = step.batches
    assert [b.replayed for b in batches] == [False, True]          # the current batch, then stored indices
    outputs = m.forward(step)
    replay_only = m.hp["coef"] * F.cross_entropy(outputs[1][0][:, batches[1].lo:batches[1].hi], batches[1].y)
    opt.zero_grad(set_to_none=False)
    replay_only.backward()
    assert model.features[0].weight.grad is None                   # the frozen extractor: no gradient
    assert model.features[2].weight.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0
    used = m.buffer.x.long().unique()
    assert (model.codebook.grad[used].abs().sum(1) > 0).all()      # the rows the replayed indices name
    unused = torch.ones(len(model.codebook), dtype=torch.bool)
    unused[used] = False
    assert (model.codebook.grad[unused] == 0).all()
    for _ in range(3):                                             # and f stays as it was under Adam
        opt.zero_grad(set_to_none=False)
        step.outputs = m.forward(step)
        m.loss(step).backward()
        m.after_backward(step)
        opt.step()
    assert torch.equal(model.features[0].weight, f)


def test_the_separate_replay_step_is_a_second_step_through_the_parameters_the_first_left(toy_bench):
    bench = toy_bench("class")
    ours, model = _crumb(bench, replay_step="separate")
    summed, _ = _crumb(bench)
    for m in (ours, summed):
        m.begin_task(0)
        m.prepare(0)
        m.end_task(0)
        m.begin_task(1)
    step = ours.draw(16)
    current, stored = step.batches

    def groups(m, step):
        return [g.batches for g in m.step_groups(step)]
    assert groups(summed, step) == [[current, stored]] and groups(ours, step) == [[current], [stored]]
    assert groups(ours, Step([current], 16)) == [[current]]              # nothing stored yet: one step

    def ce(net, x, b):
        return F.cross_entropy(net(x)[:, b.lo:b.hi], b.y)

    # by hand on a copy, with SGD: CE of the current batch's reconstruction, then coef x CE of the
    # stored indices' reconstruction by the codebook the first step left; every gradient clamped
    twin = copy.deepcopy(model)
    twin_m, _ = _crumb(bench, twin, replay_step="separate")       # registers a codebook of its own
    twin.load_state_dict(model.state_dict())
    hand = torch.optim.SGD(twin.parameters(), lr=0.5)
    for loss in (lambda: ce(twin_m.top, twin_m.decode(twin_m.encode(twin_m.extract(current.x))), current),
                 lambda: ours.hp["coef"] * ce(twin_m.top, twin_m.decode(stored.x), stored)):
        hand.zero_grad()
        loss().backward()
        for p in twin.parameters():
            if p.grad is not None:
                p.grad.clamp_(-10.0, 10.0)
        hand.step()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for group in ours.step_groups(step):                                # the training loop's steps
        learn(ours, opt, group, amp={"device_type": "cpu", "enabled": False})
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


def test_the_memory_held_is_counted_in_bytes(toy_bench):
    bench = toy_bench("class")
    m, model = _crumb(bench, blocks=300)                           # more than 256 blocks: two bytes an index
    m.begin_task(0)
    m.prepare(0)
    m.end_task(0)
    assert m.task_log(0) == m.memory() == {"stored": 12, "bytes": 12 * 2 * 2 + 300 * 4 * 4, "index_bytes": 12 * 2 * 2,
                                          "codebook_bytes": 300 * 4 * 4}


def test_bad_settings_name_the_key(toy_bench):
    bench = toy_bench("class")
    with pytest.raises(ValueError, match="block_length: 5 does not divide the 8 channels"):
        _crumb(bench, block_length=5)
    with pytest.raises(ValueError, match="cut: 4 must leave"):
        _crumb(bench, cut=4)
    with pytest.raises(ValueError, match=r"crumb\.scores: 'mem' is not one of \['direct', 'reconstructed'\]"):
        _crumb(bench, scores="mem")
    with pytest.raises(ValueError, match="budget"):
        methods.expand("crumb", {"method": "crumb"}, "class")
    with pytest.raises(ValueError, match=r"crumb\.replay_step: 'twice' is not one of"):
        _crumb(bench, replay_step="twice")


def test_a_hyperparameter_added_later_enters_the_spec_only_where_it_is_set():
    _, default = methods.expand("crumb", {"method": "crumb", "budget": 4}, "class")
    _, separate = methods.expand("crumb", {"method": "crumb", "budget": 4, "replay_step": "separate"}, "class")
    assert "replay_step" not in default and separate["replay_step"] == "separate"
