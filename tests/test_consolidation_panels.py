"""The consolidation experiment's panels: their pure helpers on hand-computed cases, and each
panel's table on a small network."""
import math

import numpy as np
import pandas as pd
import pytest

from clrepro.memory import panels

MODEL = {"tau": 10.0, "a0": 1.0, "lam": 2.0, "boost": 0.25, "alpha_c": 0.138, "prune": 1e-4}
RETRIEVAL = {"flip": 0.05, "steps": 20, "threshold": 0.9}


def test_retention_by_age_counts_missing_memories_as_forgotten():
    # snapshots at t = 5 (seeds 0, 1) and t = 1 (seed 0): age 0 retrieved in all three, age 1 in
    # two of three, age 2 pruned at one t = 5 snapshot and held by none at t = 1
    df = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 0, 0], "t": [5, 5, 5, 5, 5, 1, 1], "age": [0, 1, 2, 0, 1, 0, 1],
                       "retrieved": [True, True, True, True, False, True, True]})
    p = panels.retention_by_age(df, "retrieved")
    assert p.tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    assert panels.first_age_below(p, 0.75) == 1 and panels.first_age_below(p, 0.0) is None


def test_power_law_recovers_exponent_and_prefactor():
    n = pd.Index([100, 200, 400, 800])
    fit = panels.power_law(pd.Series(3.0 * n.to_numpy(float) ** 0.75, index=n))
    assert fit["exponent"] == pytest.approx(0.75) and fit["prefactor"] == pytest.approx(3.0)
    assert fit["r2"] == pytest.approx(1.0)


def test_no_rehearsal_lifetime_is_tau_ln_a0_over_ac():
    a_c, t = panels.no_rehearsal_lifetime(MODEL, 1000)
    assert a_c == pytest.approx(1 / math.sqrt((1 - math.exp(-0.2)) * 0.138 * 1000))
    assert t == pytest.approx(10 * math.log(1 / a_c))


def test_age_bins_are_labelled_left_closed():
    b = panels.age_bins(pd.Series([0, 9, 10, 29, 30, 500]), [0, 10, 30])
    assert b.astype(str).tolist() == ["0-9", "0-9", "10-29", "10-29", ">=30", ">=30"]


def test_panels_on_a_small_network():
    eq = {"n": 300, "burn_in": 600, "snapshots": 3, "every": 100}
    df, s = panels.forgetting({"n": 300, "steps": 150}, MODEL, RETRIEVAL, [0], "cpu")
    assert abs(s["lifetime_mean_field"] - s["lifetime_theory"]) <= 1.5
    assert (df.mean_field == (df.efficacy > df.a_c)).all()

    df, s = panels.rehearsal(eq, MODEL, RETRIEVAL, [0, 1], "cpu")
    assert set(df.t) == {699, 799, 899} and s["snapshots"] == 6
    # Little's law: the mean lifetime is the mean number retrievable per snapshot
    assert s["retrieved"]["mean_lifetime"] == pytest.approx(df.retrieved.sum() / 6)
    assert s["mean_field"]["oldest_age_over_tau"] > 5

    df, s = panels.scaling(dict(eq, n=[150, 300], snapshots=1), MODEL, RETRIEVAL, [0], "cpu")
    assert df.n.tolist() == [150, 300] and (df.stored >= df.mean_field).all()
    assert s["mean_field"]["exponent"] > 0

    les = dict(eq, tau=5.0, duration=5, age_bins=[0, 10, 100])
    df, s = panels.lesion(les, MODEL, RETRIEVAL, [0], "cpu")
    lesion, control = (df[df.branch == b] for b in ("lesion", "control"))
    assert len(lesion) == len(control) and np.array_equal(lesion.age_at_onset, control.age_at_onset)
    assert lesion.retrieved.mean() <= control.retrieved.mean()
    assert set(s["retained"]) <= {"0-9", "10-99", ">=100"}
