"""Method maths against autograd and hand-computable cases."""
import copy

import pytest
import torch
import torch.nn.functional as F

from clrepro import methods
from clrepro.methods.ewc import fisher_diagonal
from clrepro.methods.lwf import distillation
from clrepro.methods.mas import mas_importance
from clrepro.models import MLP
from clrepro.train import learn


def tiny_net(seed=0, n_out=4):
    torch.manual_seed(seed)
    return MLP(20, [7, 5], n_out)


def naive_fisher(model, x, y, lo, hi, variant):
    F_ = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        logits = model(x[i:i + 1])[0, lo:hi]
        probs = logits.softmax(0).detach()
        if variant == "exact":
            classes = [(c, probs[c]) for c in range(hi - lo)]
        elif variant == "empirical":
            classes = [(int(y[i]), 1.0)]
        else:
            classes = [(int(probs.argmax()), 1.0)]
        for c, w in classes:
            model.zero_grad()
            F.log_softmax(model(x[i:i + 1])[0, lo:hi], 0)[c].backward()
            for n, p in model.named_parameters():
                F_[n] += w * p.grad ** 2
    return {n: f / len(x) for n, f in F_.items()}


@pytest.mark.parametrize("engine", ["linear", "vmap"])
@pytest.mark.parametrize("variant", ["exact", "empirical", "predicted"])
def test_fisher_matches_per_sample_autograd(variant, engine):
    model = tiny_net(n_out=6)
    x, y = torch.randn(13, 20), torch.randint(0, 3, (13,))
    fast = fisher_diagonal(model, x, y, 2, 5, variant, chunk=4, engine=engine)
    slow = naive_fisher(model, x, y, 2, 5, variant)
    for n in slow:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-5, atol=1e-7)


def test_sampled_fisher_is_unbiased_estimate_of_exact():
    model = tiny_net()
    x = torch.randn(30, 20).repeat(200, 1)
    y = torch.zeros(len(x), dtype=torch.long)
    exact = fisher_diagonal(model, x, y, 0, 4, "exact")
    sampled = fisher_diagonal(model, x, y, 0, 4, "sampled", torch.Generator().manual_seed(0))
    rel = (sampled["head.weight"] - exact["head.weight"]).norm() / exact["head.weight"].norm()
    assert rel < 0.1


@pytest.mark.parametrize("engine", ["linear", "vmap"])
def test_mas_importance_matches_autograd(engine):
    model = tiny_net()
    x = torch.randn(9, 20)
    fast = mas_importance(model, x, 1, 3, chunk=4, engine=engine)
    slow = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        model(x[i:i + 1])[0, 1:3].pow(2).sum().backward()
        for n, p in model.named_parameters():
            slow[n] += p.grad.abs() / len(x)
    for n in slow:
        torch.testing.assert_close(fast[n], slow[n])


SPECS = {
    "ewc": {"method": "ewc", "lambda": 3.0, "fisher": "exact"},
    "online_ewc": {"method": "ewc", "lambda": 3.0, "online": True, "gamma": 0.5},
    "si": {"method": "si", "c": 2.0},
    "mas": {"method": "mas", "lambda": 1.5},
    "l2": {"method": "l2", "lambda": 0.7},
}


def trained_method(label, bench, tasks=2, iters=5):
    model = MLP(bench.input_dim, [8], bench.n_outputs)
    cls, hp = methods.expand(label, SPECS[label], bench.scenario)
    m = cls(model, bench, hp, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for t in range(tasks):
        m.begin_task(t)
        for _ in range(iters):
            learn(m, opt, m.draw(16), amp={"device_type": "cpu", "enabled": False})
        m.end_task(t)
    return m


@pytest.mark.parametrize("label", sorted(SPECS))
def test_penalty_zero_at_anchor_and_gradient_matches_autograd(label, toy_bench):
    m = trained_method(label, toy_bench("task"), tasks=1)
    assert float(m.penalty().detach()) == 0.0   # just consolidated: parameters sit at the anchor
    with torch.no_grad():
        for p in m.model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    params = list(m.params().values())
    auto = torch.autograd.grad(m.penalty(), params)
    for p in params:
        p.grad = torch.zeros_like(p)
    m.add_penalty_grad()
    for a, p in zip(auto, params):
        torch.testing.assert_close(p.grad, a)
    assert float(m.penalty().detach()) > 0


def test_offline_ewc_keeps_one_term_per_task_online_one(toy_bench):
    bench = toy_bench("domain")
    assert len(trained_method("ewc", bench, tasks=3).terms) == 3
    assert len(trained_method("online_ewc", bench, tasks=3).terms) == 1


def test_online_ewc_accumulates_gamma_weighted_fisher(toy_bench):
    bench = toy_bench("domain")
    m = trained_method("online_ewc", bench, tasks=1)
    f1 = [o.clone() for o in m.terms[0]["omega"]]
    m.begin_task(1)
    m.end_task(1)
    lo, hi = bench.active(1, 1)
    f2 = fisher_diagonal(m.model, bench.train[1].inputs(), bench.targets(bench.train[1].p, 1), lo, hi)
    for new, a, b in zip(m.terms[0]["omega"], f1, f2.values()):
        torch.testing.assert_close(new, 0.5 * a + b)


def test_si_omega_sums_to_loss_decrease_on_quadratic():
    """Zenke et al. Eq. 2-3: with small gradient-descent steps on L = 1/2 sum h_i theta_i^2, the
    path integral of each parameter (omega_i) sums to the total decrease of the loss."""
    h = torch.tensor([1.0, 3.0, 0.5])
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0, 4.0]))
    model = torch.nn.Module()
    model.theta = theta
    m = methods.si.SI(model, bench=None, hp={"c": 1.0, "xi": 0.1, "gradient": "unregularised",
                                              "omega_clip": "none"}, seed=0)
    m.start = [theta.detach().clone()]
    m.prev = [theta.detach().clone()]
    m.path = [torch.zeros(3)]
    loss0 = float(0.5 * (h * theta.detach() ** 2).sum())
    for _ in range(4000):
        theta.grad = h * theta.detach()
        step = methods.base.Step([], 0)
        m.after_backward(step)
        with torch.no_grad():
            theta -= 1e-3 * theta.grad
        m.after_step(step)
    loss1 = float(0.5 * (h * theta.detach() ** 2).sum())
    omega = m.path[0]
    assert float(omega.sum()) == pytest.approx(loss0 - loss1, rel=2e-3)
    # per parameter, too: each coordinate's own loss decrease
    per = 0.5 * h * (m.start[0] ** 2 - theta.detach() ** 2)
    torch.testing.assert_close(omega, per, rtol=2e-3, atol=1e-5)


def test_a_method_built_outside_a_configuration_checks_its_named_variants():
    """The declared ``enum`` of a hyperparameter is checked when the method is built, too."""
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"si\.gradient: 'totl' is not one of \['unregularised', 'total'\]"):
        methods.si.SI(model, bench=None, hp={"c": 1.0, "xi": 0.1, "gradient": "totl", "omega_clip": "none"}, seed=0)


def test_si_total_gradient_variant_includes_penalty(toy_bench):
    """With gradient: total the path integral uses the regularised gradient."""
    bench = toy_bench("task")
    a = trained_method("si", bench, tasks=2)
    spec = dict(SPECS["si"], gradient="total")
    SPECS["si_total"] = spec
    try:
        b = trained_method("si_total", bench, tasks=2)
    finally:
        del SPECS["si_total"]
    diff = sum(float((x - y).abs().sum()) for x, y in zip(a.omega_total, b.omega_total))
    assert diff > 0


def test_distillation_hand_computed():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0]])
    T = 2.0
    q = torch.softmax(teacher / T, 1)
    expected = -(q * torch.log(torch.tensor([[0.5, 0.5]]))).sum() * T ** 2
    assert float(distillation(student, teacher, T)) == pytest.approx(float(expected))
    assert float(distillation(student, teacher, T, "mean")) == pytest.approx(float(expected) / 2)
    assert float(distillation(student, teacher, T, t_squared=False)) == pytest.approx(float(expected) / T ** 2)
    # a class the teacher has not seen gets target probability zero: only the old classes count
    s3 = torch.zeros(1, 3)
    padded = distillation(s3, teacher, T)
    assert float(padded) == pytest.approx(float(-(q * torch.log(torch.full((1, 2), 1 / 3))).sum() * T ** 2))


def test_lwf_teacher_is_frozen_copy(toy_bench):
    bench = toy_bench("class")
    model = MLP(bench.input_dim, [8], bench.n_outputs)
    m = methods.lwf.LwF(model, bench, {"temperature": 2.0, "kd_reduction": "batchmean"}, seed=0)
    m.end_task(0)
    before = copy.deepcopy(m.teacher.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for k, v in m.teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert all(not p.requires_grad for p in m.teacher.parameters())


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_lwf_t_squared_scales_only_the_distillation(toy_bench, scenario):
    """L = 1/t CE + (1 - 1/t) T^2 KD: without the factor, the same step's loss less its weighted
    cross-entropy is T^2 times smaller."""
    bench = toy_bench(scenario)

    def distilled_part(t_squared: bool) -> float:
        torch.manual_seed(0)
        model = MLP(bench.input_dim, [8], bench.n_outputs)
        hp = {"temperature": 2.0, "kd_reduction": "batchmean", "t_squared": t_squared}
        m = methods.lwf.LwF(model, bench, hp, seed=0)
        m.begin_task(0)
        m.end_task(0)
        with torch.no_grad():                     # the student moves away from its teacher
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        m.begin_task(2)
        step = m.draw(16)
        step.outputs = m.forward(step)
        return (m.loss(step) - methods.base.cross_entropy(step.outputs, step.batches) / 3).item()

    assert distilled_part(False) > 0
    assert distilled_part(True) == pytest.approx(4 * distilled_part(False), rel=1e-5)


def test_joint_trains_on_all_tasks_so_far(toy_bench):
    bench = toy_bench("task")
    m = methods.joint.Joint(MLP(bench.input_dim, [8], bench.n_outputs), bench, {}, seed=0)
    m.begin_task(2)
    tasks = {b.task for _ in range(5) for b in m.draw(30).batches}
    assert tasks == {0, 1, 2}
    for b in m.draw(30).batches:
        assert (b.lo, b.hi) == bench.active(b.task, 2)
        assert b.y.min() >= 0 and b.y.max() < 2


@pytest.mark.parametrize("drop_last", [True, False])
def test_sampler_epochs(toy_bench, drop_last):
    """Each epoch is a fresh permutation of the task's samples. With drop_last, full batches only
    (the remainder is left out of that epoch); without it, the epoch ends with the partial batch,
    so every sample is drawn exactly once per epoch (Keras' fit)."""
    from clrepro.methods.base import Sampler
    bench = toy_bench("task")
    s = Sampler(bench, [0], 0, seed=1, drop_last=drop_last)             # 80 samples of task 0
    sizes, seen = [], []
    for _ in range(6 if drop_last else 7):
        idx = s.indices(32)
        sizes.append(len(idx))
        seen.append(idx)
    if drop_last:
        assert sizes == [32] * 6                    # 2 batches per epoch, 16 samples skipped each time
        assert len(set(torch.cat(seen[:2]).tolist())) == 64
    else:
        assert sizes == [32, 32, 16, 32, 32, 16, 32]
        for epoch in (seen[:3], seen[3:6]):
            assert sorted(torch.cat(epoch).tolist()) == list(range(80))
        assert not torch.equal(torch.cat(seen[:3]), torch.cat(seen[3:6]))   # reshuffled


def _xdg(bench, seed=0, **hp):
    cls, hp = methods.expand("xdg", {"method": "xdg", "gating": 0.5} | hp, bench.scenario)
    model = MLP(bench.input_dim, [10, 6], bench.n_outputs)
    return cls(model, bench, hp, seed=seed), model


def test_xdg_gates_a_fixed_proportion_per_task_and_seed(toy_bench):
    bench = toy_bench("task")
    m, _ = _xdg(bench, gating=0.75)
    for masks in m.masks:
        assert [int((g == 0).sum()) for g in masks] == [7, 4]        # int(0.75 x 10), int(0.75 x 6)
        assert all(set(g.tolist()) <= {0.0, 1.0} for g in masks)
    assert any(not torch.equal(a, b) for a, b in zip(m.masks[0], m.masks[1]))   # one draw per task
    again, _ = _xdg(bench, gating=0.75)
    other, _ = _xdg(bench, seed=1, gating=0.75)
    assert all(torch.equal(a, b) for t in range(3) for a, b in zip(m.masks[t], again.masks[t]))
    assert any(not torch.equal(a, b) for a, b in zip(m.masks[0], other.masks[0]))


@pytest.mark.parametrize("gate", ["input", "activity"])
def test_xdg_gates_in_training_and_in_evaluation(toy_bench, gate):
    from clrepro.train import evaluate
    bench = toy_bench("task")
    m, model = _xdg(bench, gate=gate)
    lin1, lin2 = model.features[0], model.features[2]

    def by_hand(x, t):
        g1, g2 = m.masks[t]
        if gate == "input":   # y = m * (x W^T) + b: a gated unit passes relu(b)
            h = torch.relu(x @ lin1.weight.T * g1 + lin1.bias)
            h = torch.relu(h @ lin2.weight.T * g2 + lin2.bias)
        else:                 # y = m * (x W^T + b): a gated unit is silent
            h = torch.relu((x @ lin1.weight.T + lin1.bias) * g1)
            h = torch.relu((h @ lin2.weight.T + lin2.bias) * g2)
        return model.head(h)

    x = torch.randn(6, 20)
    for t in range(3):
        torch.testing.assert_close(m.scores(x, t), by_hand(x, t))
    assert not torch.allclose(m.scores(x, 0), m.scores(x, 1))

    # training on task 1: no gradient reaches the incoming weights of its gated units
    m.begin_task(1)
    step = m.draw(16)
    assert {b.task for b in step.batches} == {1}
    step.outputs = m.forward(step)
    m.loss(step).backward()
    gated = m.masks[1][0] == 0
    assert (lin1.weight.grad[gated] == 0).all() and (lin1.weight.grad[~gated] != 0).any()
    assert ((lin1.bias.grad[gated] == 0).all()) == (gate == "activity")   # the bias still learns under "input"

    # evaluation scores the inputs of task j with task j's gates
    seen = []
    accs = evaluate(model, bench, upto=2, scores=lambda x, j: seen.append(j) or m.scores(x, j))
    assert sorted(set(seen)) == [0, 1, 2]
    for j, task in enumerate(bench.test):
        lo, hi = bench.active(j, 2)
        with torch.no_grad():
            pred = by_hand(task.inputs(torch.arange(len(task))), j)[:, lo:hi].argmax(1)
        assert accs[j] == int((pred == bench.targets(task.p, j)).sum()) / len(task)


def test_xdg_runs_in_task_il_only_and_refuses_bad_settings(toy_bench):
    with pytest.raises(ValueError, match="does not support the class-IL"):
        methods.expand("xdg", {"method": "xdg", "gating": 0.5}, "class")
    with pytest.raises(ValueError, match="gating"):
        _xdg(toy_bench("task"), gating=1.0)
    with pytest.raises(ValueError, match=r"xdg\.gate: 'bias' is not one of \['input', 'activity'\]"):
        _xdg(toy_bench("task"), gate="bias")
