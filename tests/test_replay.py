"""Replay: the class-balanced buffer (budget, balance, reservoir and herding selection), experience
replay's weighting, and A-GEM's projection (Chaudhry et al. 2019, Eq. 11)."""
import pytest
import torch

from clrepro import models
from clrepro.methods import AGEM, ER
from clrepro.methods.agem import project
from clrepro.methods.base import cross_entropy, defaults, forward, n_current
from clrepro.methods.replay import Buffer, herding, reservoir


@pytest.mark.parametrize("selection", ["reservoir", "herding"])
@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_buffer_is_class_balanced_and_never_over_budget(toy_bench, selection, scenario):
    bench = toy_bench(scenario)
    model = models.build({"type": "mlp", "hidden": [8]}, bench.input_shape, bench.n_outputs)
    buf = Buffer(per_class=5, selection=selection)
    for t in range(bench.n_tasks):
        buf.add(bench, t, torch.Generator().manual_seed(t), model)
        assert len(buf) == 5 * 2 * (t + 1) <= buf.per_class * 2 * (t + 1)
        assert torch.bincount(buf.p).tolist()[: 2 * (t + 1)] == [5] * (2 * (t + 1))
        assert torch.equal(buf.task, torch.arange(t + 1).repeat_interleave(10))
    assert buf.footprint() == {"stored": 30, "bytes": 30 * 20}   # 20 inputs per sample, counted at 8 bits
    # stored samples are real training samples of their class, each at most once
    for c in range(6):
        rows = buf.x[buf.p == c]
        task = bench.train[c // 2]
        data = task.inputs()[task.p == c]
        assert all(((data - r).abs().sum(1) == 0).any() for r in rows)
        assert len(torch.unique(rows, dim=0)) == 5


def test_budget_larger_than_a_class_keeps_the_whole_class(toy_bench):
    bench = toy_bench("class")
    buf = Buffer(per_class=1000)
    buf.add(bench, 0, torch.Generator().manual_seed(0))
    assert len(buf) == len(bench.train[0])


def test_reservoir_is_a_seeded_uniform_subset():
    a = reservoir(100, 10, torch.Generator().manual_seed(1), "cpu")
    assert torch.equal(a, reservoir(100, 10, torch.Generator().manual_seed(1), "cpu"))
    assert len(a.unique()) == 10 and a.max() < 100
    counts = torch.zeros(20)
    g = torch.Generator().manual_seed(2)
    for _ in range(2000):
        counts[reservoir(20, 5, g, "cpu")] += 1
    assert (counts / 2000 - 0.25).abs().max() < 0.05        # every sample kept with probability m/n


def test_herding_hand_computed():
    # unit features e1, e2, (0.6, 0.8) (given unnormalised): mu = (1.6, 1.8)/3.
    # k=1: distances |mu - phi|: 0.760, 0.667, 0.211 -> sample 2.
    # k=2: |mu - (phi_2 + phi)/2|: sample 0 -> (0.8, 0.4): 0.333; sample 1 -> (0.3, 0.9): 0.380 -> 0.
    phi = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.3, 0.4]])
    assert herding(phi, 3).tolist() == [2, 0, 1]
    assert herding(phi, 2).tolist() == [2, 0]
    # the class mean rescaled to unit length (the reference code's norm_exemplars): e1, e2, (-0.6, 0.8)
    # give mu = (0.133, 0.6), unit mu = (0.217, 0.976). k=1: e2 for both. k=2: plain |mu - (0.5, 0.5)|
    # = 0.380 < |mu - (-0.3, 0.9)| = 0.527 -> e1; unit: 0.554 > 0.524 -> (-0.6, 0.8).
    phi = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])
    assert herding(phi, 3).tolist() == [1, 0, 2]
    assert herding(phi, 3, unit_mean=True).tolist() == [1, 2, 0]


def test_buffer_refuses_bad_settings():
    with pytest.raises(ValueError, match="selection"):
        Buffer(5, "random")
    with pytest.raises(ValueError, match="per_class"):
        Buffer(0)
    with pytest.raises(ValueError, match="give one"):
        Buffer(5, total=10)


def test_total_budget_is_shared_and_reduced_in_selection_order(toy_bench):
    bench = toy_bench("class")
    buf = Buffer(selection="herding", total=12)
    model = models.build({"type": "mlp", "hidden": [8]}, bench.input_shape, bench.n_outputs)
    buf.add(bench, 0, torch.Generator().manual_seed(0), model)
    assert torch.bincount(buf.p).tolist() == [6, 6]
    first = buf.x[buf.p == 0][:3].clone()
    buf.add(bench, 1, torch.Generator().manual_seed(1), model)
    assert torch.bincount(buf.p).tolist() == [3, 3, 3, 3] and len(buf) <= 12
    assert torch.equal(buf.x[buf.p == 0], first)        # herding's first three survive
    buf.add(bench, 2, torch.Generator().manual_seed(2), model)
    assert torch.bincount(buf.p).tolist() == [2] * 6
    with pytest.raises(ValueError, match="cannot hold one of each class"):
        Buffer(total=1).add(bench, 0, torch.Generator(), model)


def test_agem_projection_hand_computed_and_never_against_the_reference():
    g, g_ref = torch.tensor([1.0, -2.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(project(g, g_ref), torch.tensor([1.0, 0.0]))     # dot -2: projected
    kept = torch.tensor([1.0, 2.0])
    assert project(kept, g_ref) is kept                                     # dot 2: kept as it is
    tiny = project(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1e-25]))   # g_ref . g_ref underflows
    assert torch.isfinite(tiny).all() and torch.allclose(tiny, torch.tensor([1.0, 0.0]))
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        g, g_ref = torch.randn(30, generator=gen), torch.randn(30, generator=gen)
        assert torch.dot(project(g, g_ref), g_ref) >= -1e-5


def _method(cls, bench, **hp):
    torch.manual_seed(0)
    model = models.build({"type": "mlp", "hidden": [16]}, bench.input_shape, bench.n_outputs)
    return cls(model, bench, dict(defaults(cls.hyperparameters), per_class=4) | hp, seed=0), model


def test_agem_step_gradient_has_non_negative_dot_with_the_reference(toy_bench):
    bench = toy_bench("class")
    m, model = _method(AGEM, bench)
    m.begin_task(0)
    m.end_task(0)
    m.begin_task(1)
    for _ in range(10):
        step = m.draw(16)
        model.zero_grad()
        step.outputs = forward(model, step.batches)
        m.loss(step).backward()
        state = m.replay_gen.get_state()
        m.after_backward(step)
        g = torch.cat([p.grad.flatten() for p in model.parameters()])
        m.replay_gen.set_state(state)                 # the same reference batch
        ref = m.replay(16)
        model.zero_grad()
        cross_entropy(forward(model, ref), ref).backward()
        g_ref = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert torch.dot(g, g_ref) >= -1e-5


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_agem_logs_how_far_the_optimisers_steps_go_against_the_reference(toy_bench, optimizer):
    """The task log, step by step against the same reference batch: the fraction of steps projected,
    uphill = sum of max(0, dtheta . g_ref), the memory batch's loss (max, last). A plain SGD step along
    the projected gradient never goes uphill; Adam's rescaled steps do."""
    bench = toy_bench("class")
    m, model = _method(AGEM, bench)
    params = list(model.parameters())
    opt = (torch.optim.SGD(params, lr=0.1) if optimizer == "sgd" else torch.optim.Adam(params, lr=0.01))
    projected, dots, losses = [], [], []
    for task in range(2):                               # the optimiser's state carries over, as in the runs
        m.begin_task(task)
        for _ in range(20):
            step = m.draw(16)
            opt.zero_grad()
            step.outputs = forward(model, step.batches)
            m.loss(step).backward()
            g = torch.cat([p.grad.flatten() for p in params])
            before = m.replay_gen.get_state()
            m.after_backward(step)
            if task == 0:
                opt.step()
                m.after_step(step)
                continue
            after = m.replay_gen.get_state()
            m.replay_gen.set_state(before)            # the same reference batch
            ref = m.replay(16)
            m.replay_gen.set_state(after)
            loss = cross_entropy(forward(model, ref), ref)
            g_ref = torch.cat([x.flatten() for x in torch.autograd.grad(loss, params)])
            theta = torch.cat([p.detach().flatten() for p in params])
            opt.step()
            m.after_step(step)
            moved = torch.cat([p.detach().flatten() for p in params]) - theta
            projected.append(float(torch.dot(g, g_ref) < 0))
            dots.append(torch.dot(moved, g_ref).item())
            losses.append(loss.item())
        if task == 0:
            assert m.task_log(0) == dict.fromkeys(["projected", "uphill", "replay_loss_max", "replay_loss_last"])
            m.end_task(0)
    log = m.task_log(1)
    assert log["projected"] == pytest.approx(sum(projected) / 20) and sum(projected) > 0
    assert log["uphill"] == pytest.approx(sum(max(d, 0) for d in dots), rel=1e-4, abs=1e-7)
    assert log["replay_loss_max"] == pytest.approx(max(losses), rel=1e-5)
    assert log["replay_loss_last"] == pytest.approx(losses[-1], rel=1e-5)
    if optimizer == "sgd":
        assert log["uphill"] < 1e-6
    else:
        assert log["uphill"] > 1e-3


def test_er_loss_weights_current_and_replay_by_tasks_seen(toy_bench):
    bench = toy_bench("class")
    m, model = _method(ER, bench)
    for t in range(2):
        m.begin_task(t)
        m.end_task(t)
    m.begin_task(2)
    step = m.draw(8)
    batches = step.batches
    n = n_current(batches)
    assert sum(len(b.y) for b in batches[:n]) == 8 and sum(len(b.y) for b in batches[n:]) == 8
    assert {b.task for b in batches[n:]} <= {0, 1} and all((b.lo, b.hi) == (0, 6) for b in batches)
    out = step.outputs = forward(model, batches)
    expected = cross_entropy(out[:n], batches[:n]) / 3 + 2 / 3 * cross_entropy(out[n:], batches[n:])
    assert torch.allclose(m.loss(step), expected)


def test_buffer_state_round_trip(toy_bench):
    bench = toy_bench("task")
    m, _ = _method(ER, bench)
    m.begin_task(0)
    m.end_task(0)
    other, _ = _method(ER, bench)
    other.load_state_dict(m.state_dict())
    assert torch.equal(other.buffer.x, m.buffer.x) and torch.equal(other.buffer.p, m.buffer.p)


def test_icarl_classifies_by_the_nearest_mean_of_exemplars(toy_bench):
    from clrepro.methods import ICaRL
    bench = toy_bench("class")
    m, model = _method(ICaRL, bench, budget=12)
    x = torch.randn(5, 20)
    m.begin_task(0)
    assert torch.equal(m.scores(x, 0), model(x))               # no exemplars yet: the network's outputs
    m.end_task(0)
    model.eval()
    phi = torch.nn.functional.normalize(model.embed(m.buffer.x), dim=1)
    means = torch.stack([torch.nn.functional.normalize(phi[m.buffer.p == c].mean(0), dim=0) for c in (0, 1)])
    q = torch.nn.functional.normalize(model.embed(x), dim=1)
    expected = torch.cdist(q, means).argmin(1)
    s = m.scores(x, 0)
    assert torch.equal(s[:, :2].argmax(1), expected)
    assert torch.isinf(s[:, 2:]).all() and (s[:, 2:] < 0).all()   # classes without exemplars never win


def test_icarl_random_exemplars_are_a_seeded_random_subset_kept_in_random_order(toy_bench):
    """``exemplars: random`` (the three-scenarios reference code's effective exemplars): not
    herding's picks; the same per seed; and, cut to the first m of each class, a uniform subset."""
    from clrepro.methods import ICaRL
    bench = toy_bench("class")
    stored = {}
    for exemplars in ("herding", "random", "random"):
        m, _ = _method(ICaRL, bench, budget=12, exemplars=exemplars)
        m.begin_task(0)
        m.end_task(0)
        stored.setdefault(exemplars, []).append(m.buffer.x.clone())
        assert torch.bincount(m.buffer.p).tolist() == [6, 6]
    assert torch.equal(*stored["random"])                             # seeded
    assert not torch.equal(stored["herding"][0], stored["random"][0])
    rows = bench.train[0].inputs()[bench.train[0].p == 0]
    picked = [int(((rows - x).abs().sum(1) == 0).nonzero()[0]) for x in stored["random"][0][:6]]
    assert picked != sorted(picked)                                   # stored in random order: a cut stays uniform
    with pytest.raises(ValueError, match="exemplars"):
        _method(ICaRL, bench, budget=12, exemplars="nearest")


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_icarl_distils_old_classes_and_labels_new_ones(toy_bench, temperature):
    from clrepro.methods import ICaRL
    bench = toy_bench("class")
    m, model = _method(ICaRL, bench, budget=12, temperature=temperature)
    m.begin_task(0)
    m.end_task(0)
    with torch.no_grad():                                  # the network moves on; the teacher stays
        for p in model.parameters():
            p.add_(0.1)
    m.begin_task(1)
    step = m.draw(16)
    batches = step.batches
    assert sum(len(b.y) for b in batches) == 16 and {b.task for b in batches} == {0, 1}
    out = step.outputs = forward(model, batches)
    z = torch.cat([o[:, :4] for o in out])
    y = torch.cat([b.y for b in batches])
    target = torch.nn.functional.one_hot(y, 4).float()
    target[:, :2] = torch.sigmoid(torch.cat(forward(m.teacher, batches))[:, :2] / temperature)
    bce = -(target * torch.nn.functional.logsigmoid(z) + (1 - target) * torch.nn.functional.logsigmoid(-z))
    assert torch.allclose(m.loss(step), bce.sum(1).mean(), atol=1e-6)


def test_vae_loss_decreases_on_a_tiny_set():
    from clrepro.methods.dgr import VAE
    torch.manual_seed(0)
    prototypes = (torch.rand(4, 1, 6, 6) > 0.5).float()
    x = prototypes[torch.arange(64) % 4]                 # four patterns: learnable
    vae = VAE(36, [32], 4)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    with torch.no_grad():
        before = sum(vae.loss(x) for _ in range(20)) / 20
    for _ in range(200):
        loss = vae.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = sum(vae.loss(x) for _ in range(20)) / 20
    assert after < 0.8 * before
    s = vae.sample(5, torch.Generator().manual_seed(1), (1, 6, 6))
    assert s.shape == (5, 1, 6, 6) and (s >= 0).all() and (s <= 1).all()


@pytest.mark.parametrize("distill, kd_reduction", [(False, None), (True, None), (True, "mean")])
def test_dgr_replays_one_batch_labelled_by_the_previous_model(toy_bench, distill, kd_reduction):
    """DGR's hard labels, or DGR+distill's soft targets reduced as configured (summed over the
    units by default, or averaged over them as the three-scenarios code before 26f00db)."""
    from clrepro.methods import DGR
    from clrepro.methods.lwf import distillation
    bench = toy_bench("class")
    m, model = _method(DGR, bench, distill=distill, latent=4, **({"kd_reduction": kd_reduction} if kd_reduction else {}))
    m.begin_task(0)
    step = m.draw(8)
    step.outputs = forward(model, step.batches)
    assert "replayed" not in step.extras and m.loss(step) == cross_entropy(forward(model, step.batches), step.batches)
    m.end_task(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    m.begin_task(1)
    step = m.draw(8)
    batches = step.batches
    x, old = step.extras["replayed"]
    assert x.shape == (8, 20) and torch.allclose(old, m.teacher(x))
    out = step.outputs = forward(model, batches)
    # Class-IL: replay is scored on every class so far (0-3), so the new classes' outputs are pushed
    # down on replayed old samples; the teacher knows classes 0-1 (its probabilities zero-padded)
    z = model(x)[:, :4]
    replay = (distillation(z, old[:, :2], 2.0, kd_reduction or "batchmean") if distill
              else torch.nn.functional.cross_entropy(z, old[:, :2].argmax(1)))
    assert torch.allclose(m.loss(step), cross_entropy(out, batches) / 2 + replay / 2)
    before, frozen = [p.clone() for p in m.vae.parameters()], [p.clone() for p in m.old_vae.parameters()]
    m.after_step(step)                                       # the generator learns from the same inputs
    assert any(not torch.equal(a, b) for a, b in zip(before, m.vae.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(frozen, m.old_vae.parameters()))   # its snapshot does not


def test_method_state_follows_the_models_device(toy_bench):
    m, _ = _method(ER, toy_bench("class"))
    state = {"a": [torch.zeros(2), (torch.ones(1), 3)], "b": None}
    moved = m.on_device(state)
    assert isinstance(moved["a"][1], tuple) and moved["a"][1][1] == 3 and moved["b"] is None
    assert moved["a"][0].device == next(m.model.parameters()).device
