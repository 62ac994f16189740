"""profiles/slurm against a real Slurm: the quick DAG runs through the Slurm executor to the
report, training grouped several runs per Slurm job, each group asking for one GPU and the CPU
rules for none; on a node with one (stand-in) GPU the training jobs never overlap.

Needs a Slurm cluster with accounting (``.ci/slurm-up.sh --with-dbd --fake-gpu 1`` makes one on
localhost, as CI does). Skipped without ``sinfo`` unless CLREPRO_REQUIRE_SLURM=1 (CI), where a
missing Slurm is a failure."""
import json
import os
import shutil
import subprocess
from datetime import datetime

import pytest
import yaml
from workflow_helpers import REPO, make_workdir, snakemake

pytestmark = pytest.mark.slow

if not shutil.which("sinfo") and os.environ.get("CLREPRO_REQUIRE_SLURM") != "1":
    pytest.skip("no Slurm here (CI sets CLREPRO_REQUIRE_SLURM=1 and starts one)", allow_module_level=True)

GROUP = 3


def cluster() -> dict:
    """Partition, account and GPUs of the first node, as a user would look them up."""
    part = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True)
    acct = subprocess.run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={os.environ.get('USER', 'root')}",
                           "format=account"], capture_output=True, text=True, check=True)
    gres = subprocess.run(["sinfo", "-h", "-N", "-o", "%G"], capture_output=True, text=True, check=True)
    return {"partition": part.stdout.split()[0].rstrip("*"), "account": acct.stdout.split()[0],
            "gres": gres.stdout.strip()}


def slurm_profile(folder, partition: str, account: str):
    """profiles/slurm with the two lines a user edits, and quicker polling for a test."""
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    prof["default-resources"].update(slurm_partition=partition, slurm_account=account, mem_mb=500)
    prof["set-resources"]["train"].update(mem_mb=1000, runtime=20)
    prof.update({"slurm-init-seconds-before-status-checks": 2, "seconds-between-status-checks": 2,
                 "latency-wait": 5, "slurm-keep-successful-logs": True})
    prof["group-components"]["training"] = GROUP
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(prof))
    return folder


def jobs_of(work) -> list[dict]:
    """The Slurm jobs run from ``work`` (sacct), each with the rule or group it ran, read from the
    plugin's log path ``.snakemake/slurm_logs/<rule_X|group_G_X>/.../<jobid>.log``."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-2hours", "-o",
                          "JobID,WorkDir,AllocTRES,Start,End,State"],
                         capture_output=True, text=True, check=True).stdout
    keys = ["id", "workdir", "tres", "start", "end", "state"]
    rows = [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line]
    logs = {p.stem: p.relative_to(work / ".snakemake" / "slurm_logs").parts[0]
            for p in (work / ".snakemake" / "slurm_logs").rglob("*.log")}
    return [r | {"rule": logs.get(r["id"], "?")} for r in rows if r["workdir"] == str(work)]


def test_quick_dag_through_slurm_to_the_report(tiny_mnist, tmp_path):
    info = cluster()
    assert info["gres"] == "gpu:1", f"expected a node with one GPU, found {info['gres']!r}"
    work = make_workdir(tmp_path / "work", tiny_mnist,
                        {"seeds": 2, "iters_per_task": 15, "batch_size": 32, "model": {"type": "mlp", "hidden": [32]}},
                        methods=["none", "si", "lwf"], scenarios=["task", "class"])
    profile = slurm_profile(tmp_path / "profile", info["partition"], info["account"])
    proc = snakemake(work, "--profile", str(profile))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]

    out = work / "reports" / "test"
    assert (out / "report.html").read_text().rstrip().endswith("</html>")
    results = [json.loads(p.read_text()) for p in sorted((out / "runs").rglob("*.json"))]
    assert len(results) == 3 * 2 * 2
    jobs = jobs_of(work)
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs
    train = [j for j in jobs if j["rule"].startswith("group_training")]
    other = [j for j in jobs if j not in train]
    # grouped: ceil(12 / 3) Slurm jobs train the 12 runs; every run names its Slurm job
    assert len(train) == -(-len(results) // GROUP)
    assert {r["provenance"]["scheduler"]["SLURM_JOB_ID"] for r in results} == {j["id"] for j in train}
    # training asks for one GPU and gets it; the CPU rules ask for none
    assert all("gres/gpu=1" in j["tres"] for j in train)
    assert all(r["provenance"]["scheduler"]["CUDA_VISIBLE_DEVICES"] == "0" for r in results)
    assert {j["rule"] for j in other} == {"rule_download_mnist", "rule_aggregate", "rule_figure",
                                          "rule_audit", "rule_report"}
    assert not any("gpu" in j["tres"] for j in other)
    # one GPU on the node: the GPU jobs ran one at a time, although two CPUs were free
    spans = sorted((datetime.fromisoformat(j["start"]), datetime.fromisoformat(j["end"])) for j in train)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans
