"""The stochastic-consolidation attractor network in its limiting cases: a static set of equal
memories (Hopfield's capacity), and a stream without rehearsal (forgetting at age
tau ln(A_0 / A_c)); rehearsal then extends lifetimes far beyond it."""
import math

import pytest
import torch

from clrepro.memory import consolidation as c


def retrieved(patterns, efficacy, flip=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    j = c.couplings(patterns, efficacy)
    return c.overlaps(c.retrieve(j, c.corrupt(patterns, flip, gen)), patterns) > 0.9


def test_couplings_hand_computed():
    xi = torch.tensor([[1., -1., 1.], [1., 1., -1.]])
    a = torch.tensor([2.0, 1.0])
    # J_01 = (2*1*-1 + 1*1*1)/3 = -1/3; J_02 = (2*1*1 + 1*1*-1)/3 = 1/3; J_12 = (2*-1*1 + 1*1*-1)/3 = -1
    expected = torch.tensor([[0, -1 / 3, 1 / 3], [-1 / 3, 0, -1], [1 / 3, -1, 0]])
    assert torch.allclose(c.couplings(xi, a), expected)
    assert c.critical_efficacy(a, 3) == pytest.approx(math.sqrt(5 / (0.138 * 3)))


def test_corrupt_flips_exactly_the_fraction_and_retrieve_stops_at_fixed_points():
    gen = torch.Generator().manual_seed(1)
    xi = torch.randint(0, 2, (4, 200), generator=gen).float() * 2 - 1
    cue = c.corrupt(xi, 0.1, gen)
    assert ((cue != xi).sum(1) == 20).all()
    j = c.couplings(xi[:1], torch.ones(1))          # one stored pattern: its cue falls back to it
    assert torch.equal(c.retrieve(j, cue[:1]), xi[:1])


@pytest.mark.parametrize("load,expect_retrieved", [(0.05, True), (0.3, False)])
def test_static_hopfield_capacity(load, expect_retrieved):
    """P equal memories: retrievable below alpha_c = 0.138 (here 0.05 N), not above (0.3 N); the
    mean-field criterion A > A_c says the same."""
    n = 500
    gen = torch.Generator().manual_seed(2)
    xi = torch.randint(0, 2, (int(load * n), n), generator=gen).float() * 2 - 1
    a = torch.ones(len(xi))
    ok = retrieved(xi, a).float().mean().item()
    assert (ok > 0.95) if expect_retrieved else (ok < 0.2)
    assert (1.0 > c.critical_efficacy(a, n)) is expect_retrieved


def test_no_rehearsal_forgets_at_tau_ln_a0_over_ac():
    """Without rehearsal the stream reaches a steady state with sum A^2 = A_0^2 / (1 - e^{-2/tau}),
    so A_c is constant and a memory is retrievable (mean field) exactly while its age is below
    T* = tau ln(A_0 / A_c); the network dynamics agree away from T*."""
    n, tau, a0 = 1000, 10.0, 1.0
    mem = c.simulate(n, steps=300, tau=tau, a0=a0, lam=0.0, seed=3, prune=1e-6, record_every=100)
    a_c = c.critical_efficacy(mem.efficacy, n)
    assert [h[0] for h in mem.history] == [99, 199, 299] and mem.history[-1][1] == pytest.approx(a_c)
    assert a_c == pytest.approx(a0 * math.sqrt(1 / ((1 - math.exp(-2 / tau)) * c.ALPHA_C * n)), rel=1e-4)
    lifetime = tau * math.log(a0 / a_c)
    ages = mem.ages(299).float()
    assert torch.equal(mem.efficacy > a_c, ages < lifetime)       # the mean-field criterion
    ok = retrieved(mem.patterns, mem.efficacy, seed=4)
    assert ok[ages < 0.6 * lifetime].float().mean() > 0.95
    assert ok[(ages > 1.5 * lifetime) & (ages < 10 * lifetime)].float().mean() < 0.05
    assert mem.rehearsals == 0


def test_rehearsal_extends_lifetimes_far_beyond_the_decay_time():
    """With self-amplifying rehearsal some memories stay above A_c at ages many times the
    no-rehearsal lifetime (and many times tau), while recent memories stay retrievable."""
    n, tau, a0 = 1000, 10.0, 2.0
    plain = c.simulate(n, steps=400, tau=tau, a0=a0, seed=5)
    lifetime = tau * math.log(a0 / c.critical_efficacy(plain.efficacy, n))     # ~16 = 1.6 tau
    mem = c.simulate(n, steps=600, tau=tau, a0=a0, lam=2.0, boost=0.5, seed=5)
    a_c = c.critical_efficacy(mem.efficacy, n)
    ages = mem.ages(599)
    assert mem.rehearsals > 0 and (mem.efficacy[ages > 5 * lifetime] > a_c).sum() >= 3
    assert (mem.efficacy[ages <= 1] > a_c).all()
    assert retrieved(mem.patterns, mem.efficacy)[(ages > 5 * lifetime) & (mem.efficacy > 1.2 * a_c)].all()


def test_patterns_are_regenerated_identically_per_seed_and_birth_time():
    born = torch.tensor([0, 5, 7])
    a, b = c.pattern_of(1, born, 64), c.pattern_of(1, born[[1]], 64)
    assert torch.equal(a[1:2], b) and set(a.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(a, c.pattern_of(2, born, 64)) and not torch.equal(a[0], a[1])


def test_branch_leaves_the_stream_untouched_and_draws_its_own_rehearsals():
    s = c.Stream(300, 10.0, 1.0, 2.0, 0.25, seed=1).run(200)
    before = (s.mem.efficacy.clone(), s.mem.born.clone(), s.t)
    lesioned = s.branch("lesion").run(10, tau=2.0)
    assert torch.equal(s.mem.efficacy, before[0]) and torch.equal(s.mem.born, before[1]) and s.t == before[2]
    assert lesioned.t == s.t + 10
    # the same branch of the same stream is the same; its draws differ from the stream's own
    again = s.branch("lesion").run(10, tau=2.0)
    assert torch.equal(again.mem.efficacy, lesioned.mem.efficacy)
    control, cont = s.branch("control").run(10), c.Stream(300, 10.0, 1.0, 2.0, 0.25, seed=1).run(210)
    assert not torch.equal(control.mem.efficacy, cont.mem.efficacy)


def test_faster_decay_for_one_step_is_the_hand_computed_factor():
    s = c.Stream(100, 10.0, a0=1.0, seed=0).run(3)               # no rehearsal: 1, e^-0.1, e^-0.2
    s.step(tau=2.0)
    expected = torch.tensor([math.exp(-0.2 - 0.5), math.exp(-0.1 - 0.5), math.exp(-0.5), 1.0], dtype=torch.float64)
    assert torch.allclose(s.mem.efficacy, expected) and s.mem.born.tolist() == [0, 1, 2, 3]
