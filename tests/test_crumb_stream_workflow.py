"""CRUMB's online streams through the real Snakemake DAG: a tiny CIFAR-100 archive and a tiny
CORe50 archive in the real formats and stand-in SqueezeNet weights in the mirror, each fetched with
its checksum by its own download job -> None, ER, iCaRL and CRUMB trained from the pretrained
features -> the audit's CRUMB rows (ours beside the published where a method ran, the rest not
run) -> the memory table and the report."""
import shutil

import pandas as pd
import pytest
from core50_format import write_core50
from test_crumb_stream_data import OFFICIAL, stand_in
from workflow_helpers import run_experiments

pytestmark = pytest.mark.slow
TEST_PRESETS = {"crumb_stream_cifar100": {"benchmark": {"tasks": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]}},
                "crumb_stream_core50": {"benchmark": {"tasks": [[0, 1], [2, 3]]}}}


@pytest.fixture(scope="module")
def stream_run(tiny_cifar, tmp_path_factory):
    work = tmp_path_factory.mktemp("crumb-stream")
    mirror = work / "mirror"
    shutil.copytree(tiny_cifar[0], mirror)
    _, weights_checksum, _ = stand_in(mirror)
    core50 = write_core50(mirror)
    cifar100 = {f: md5 for f, md5 in tiny_cifar[1].items() if "100" in f}
    small = {"batch_size": 8, "epochs_first_task": 2,
             "model": {"type": "squeezenet", "weights": "imagenet", "input_size": 32}}
    out = run_experiments(work, mirror, {**cifar100, **core50, **weights_checksum},
                          {name: ({**small, **preset}, None) for name, preset in TEST_PRESETS.items()}, seeds=1)
    return out, work


def test_data_and_weights_fetched_and_every_method_trained(stream_run):
    out, work = stream_run
    assert (work / "data" / "weights" / OFFICIAL).is_file()
    assert (work / "data" / "CIFAR100" / "cifar-100-python" / "train").is_file()
    assert (work / "data" / "CORe50" / "core50_128x128.zip").is_file()
    runs = pd.read_csv(out / "runs.csv")
    methods = ["crumb", "er", "icarl", "none"]
    for name, variants in (("crumb_stream_cifar100", methods),
                           ("crumb_stream_core50", methods + [f"{m}_instance" for m in methods])):
        mine = runs[runs.experiment == name]
        assert sorted(mine.method) == sorted(variants)
        crumb = mine[mine.method == "crumb"].iloc[0]
        # 32 one-byte indices per stored map (512 channels at the cut in blocks of 16) + the codebook
        assert crumb.stored > 0 and crumb.memory_bytes == 32 * crumb.stored + 256 * 16 * 4
    # the published numbers this report does not audit are listed, each with why
    report = (out / "report.html").read_text()
    assert "Published numbers not run here" in report and "Toybox, iLab-2M-Light and ImageNet" in report
    assert "its experiment (split_mnist_vdv19) is not among this report" in report


@pytest.mark.parametrize("name,dataset,n,orderings", [("crumb_stream_cifar100", "cifar100", 16, ["classiid"]),
                                                      ("crumb_stream_core50", "core50", 32,
                                                       ["classiid", "classinstance"])])
def test_audit_has_the_crumb_rows_of_the_methods_run_and_the_rest_not_run(stream_run, name, dataset, n, orderings):
    out, _ = stream_run
    audit = pd.read_csv(out / "audit" / f"{name}_audit.csv")
    assert len(audit) == n and set(audit.target_id.str.split("_").str[1]) == {dataset}
    ran = audit[audit.target_id.str.endswith(("_crumb", "_icarl", "_lowerbound"))]
    assert sorted(ran.target_id.str.split("_").str[2].unique()) == orderings
    assert len(ran) == 3 * len(orderings) and ran.ours.notna().all()
    assert (ran.verdict == "no verdict (test preset)").all()
    assert (audit.drop(ran.index).verdict == "not run").all()
    assert "online " + {"cifar100": "CIFAR-100", "core50": "CORe50"}[dataset] in (out / "report.html").read_text()
