"""The synaptic-intelligence paper's experiments through the real Snakemake DAG: split MNIST and
permuted MNIST (SI protocol) on a tiny MNIST, and split CIFAR-10/100 on tiny CIFAR-10 and
CIFAR-100 archives written in the real format (pickled batches in a tar.gz, checksummed,
extracted and loaded through torchvision) -> runs -> per-task tables -> mapped audit -> figures ->
report."""
import shutil

import pandas as pd
import pytest
from workflow_helpers import run_experiments

pytestmark = pytest.mark.slow

EXPERIMENTS = {
    "split_mnist_si17": ({"model": {"type": "mlp", "hidden": [16], "init": "glorot", "head_init": "zero"},
                          "epochs_per_task": 2, "batch_size": 16}, ["none", "si_c1"]),
    "permuted_mnist_si17": ({"benchmark": {"type": "permuted", "n_tasks": 3}, "epochs_per_task": 1,
                             "batch_size": 32, "model": {"type": "mlp", "hidden": [16], "init": "glorot"}},
                            ["none", "si_c0p1", "ewc"]),
    "split_cifar_si17": ({"model": {"type": "cnn", "channels": [4, 8], "dense": 16, "init": "glorot",
                                    "head_init": "zero"}, "epochs_per_task": 1, "batch_size": 16},
                         ["none", "si_c0p01", "scratch"]),
}


def read(path):
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def si17_run(tiny_mnist, tiny_cifar, tmp_path_factory):
    work = tmp_path_factory.mktemp("si17")
    mirror = work / "mirror"
    shutil.copytree(tiny_mnist[0], mirror)
    shutil.copytree(tiny_cifar[0], mirror, dirs_exist_ok=True)
    out = run_experiments(work, mirror, {**tiny_mnist[1], **tiny_cifar[1]}, EXPERIMENTS, seeds=2)
    return out, work


def test_cifar_archives_fetched_verified_and_every_run_done(si17_run):
    out, work = si17_run
    for member in ("CIFAR10/cifar-10-python.tar.gz", "CIFAR10/cifar-10-batches-py/data_batch_5",
                   "CIFAR10/cifar-10-batches-py/test_batch", "CIFAR100/cifar-100-python/train"):
        assert (work / "data" / member).is_file(), member
    runs = read(out / "runs.csv")
    assert len(runs) == 2 * (2 + 3 + 3)
    cifar = runs[runs.experiment == "split_cifar_si17"]
    assert set(cifar.scenario) == {"task"} and (cifar.precision == "fp32").all() and not cifar.channels_last.any()
    # one epoch of 80 images per task in batches of 16: 5 steps for each of the 6 tasks
    assert (cifar.steps == "[5, 5, 5, 5, 5, 5]").all()
    assert cifar["acc_task6"].notna().all() and cifar["learned_task1"].notna().all()
    perm = runs[runs.experiment == "permuted_mnist_si17"]
    assert set(perm.scenario) == {"domain"} and (perm.steps == "[10, 10, 10]").all()   # ceil(300 / 32)
    assert perm["acc_task4"].isna().all()                   # three tasks only


def test_mapped_audit_rows(si17_run):
    out, work = si17_run
    targets = read(work / "config" / "targets.csv")
    audit = read(out / "audit" / "split_cifar_si17_audit.csv").set_index("target_id")
    assert set(audit.index) == set(targets[targets.experiment == "split_cifar_si17"].target_id)
    assert audit.loc["si_cifar_task3_0p01", ["label", "metric"]].tolist() == ["SI (c=0.01)", "acc_task3"]
    assert audit.loc["si_cifar_avg6_scratch", ["label", "metric"]].tolist() == ["From scratch", "learned"]
    summary = read(out / "summary.csv").set_index(["experiment", "label", "metric"])
    ours = summary.loc[("split_cifar_si17", "From scratch", "learned_task2"), "mean"]
    assert audit.loc["si_cifar_task2_scratch", "ours"] == pytest.approx(ours)
    ran = audit[audit.label.isin(["Fine-tuning (c=0)", "SI (c=0.01)", "From scratch"])]
    assert len(ran) == 21 and (ran.verdict == "no verdict (test preset)").all()
    assert (audit[audit.label == "SI (c=0.1)"].verdict == "not run").all()
    perm = read(out / "audit" / "permuted_mnist_si17_audit.csv").set_index("target_id")
    assert perm.loc["si_permmnist_task1final_c0p1", ["label", "metric", "our_scenario"]].tolist() == [
        "SI (c=0.1)", "acc_task1", "domain"]
    assert len(read(out / "audit" / "split_mnist_si17_audit.csv")) == 0   # no published numbers


def test_figures_and_report(si17_run):
    out, _ = si17_run
    for name in ("split_mnist_si17_accuracy_per_task", "split_mnist_si17_final_accuracy",
                 "permuted_mnist_si17_average_accuracy", "permuted_mnist_si17_final_accuracy",
                 "split_cifar_si17_task_bars", "split_cifar_si17_accuracy_per_task"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000, name
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    for text in ("Split CIFAR-10/100, SI protocol", "Protocol choices", "Accuracy on each task",
                 "published single run", "nothing to audit"):
        assert text in page, text
