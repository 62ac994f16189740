"""The real Snakemake DAG end to end, on a tiny MNIST written in the real IDX format: download
(from a local mirror, with the test files' own checksums) -> train every method x scenario x seed
-> aggregate -> figures -> audit -> report, with the consolidation simulation's panels beside them,
then `snakemake --report`, then nothing left to do."""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
import browser
from workflow_helpers import EXP, REPO, env, make_workdir, snakemake, snakemake_cmd

pytestmark = pytest.mark.slow
SIM = "consolidation_shaham22"
# split MNIST with the methods of its published cells, and CLN (its growth is checked): 8 methods x 3
# scenarios, iCaRL and CLN (Class-IL). XdG is left out, so the audit shows a cell not run. Every
# method's training is tested by itself (test_resume.py)
METHODS = ["none", "joint", "ewc", "online_ewc", "si", "lwf_preprint", "dgr", "dgr_distill_preprint", "icarl_random", "cln"]
RUNS_PER_SEED = 3 * 8 + 2


@pytest.fixture(scope="module")
def workflow_run(tiny_mnist, tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("workflow"), tiny_mnist,
                        {"seeds": 2, "iters_per_task": 15, "batch_size": 32,
                         "model": {"type": "mlp", "hidden": [32]}}, simulations=[SIM], methods=METHODS)
    proc = snakemake(work, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work / "reports" / "test", work


def test_dag_produces_every_run_and_table(workflow_run):
    out, _ = workflow_run
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False, na_values=[""])
    assert len(runs) == RUNS_PER_SEED * 2
    assert set(runs.preset) == {"test"}
    for col in ("hyperparameters", "seed.init", "seed.data", "seed.order", "git_commit", "device",
                "version.torch", "version.torchvision", "spec_hash"):
        assert col in runs.columns and runs[col].notna().all(), col
    acc = pd.read_csv(out / "accuracy.csv", keep_default_na=False, na_values=[""])
    assert len(acc) == len(runs) * (5 * 5 + 5)           # R plus the untrained row, per run
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False, na_values=[""])
    acc_rows = summary[summary.metric == "acc"]
    assert len(acc_rows) == RUNS_PER_SEED and (acc_rows.n == 2).all()
    # a local DAG forks its training jobs from one warm worker (config worker)
    said = (out.parents[1] / "logs" / "test" / "worker.log").read_text()
    assert said.count("forked job") == len(runs) and "refused" not in said, said[-2000:]
    # Joint sees every task's data: far above chance in task-IL even at this scale
    joint = acc_rows[(acc_rows.label == "Joint") & (acc_rows.scenario == "task")]["mean"].item()
    assert joint > 80


def test_audit_lists_every_published_cell_without_verdicts(workflow_run):
    out, work = workflow_run
    audit = pd.read_csv(out / "audit" / "split_mnist_vdv19_audit.csv", keep_default_na=False, na_values=[""])
    targets = pd.read_csv(work / "config" / "targets.csv", keep_default_na=False, na_values=[""])
    assert set(audit.target_id) == set(targets[targets.experiment == "split_mnist_vdv19"].target_id)
    ran = audit[audit.method.isin(["None", "Joint", "EWC", "Online EWC", "SI", "LwF", "DGR", "DGR+distill", "iCaRL"])]
    assert len(ran) == 25 and (ran.verdict == "no verdict (test preset)").all()
    assert (audit[audit.method == "XdG"].verdict == "not run").all()


def test_simulation_panels_record_what_produced_them(workflow_run):
    out, _ = workflow_run
    folder = out / "simulations" / SIM
    for panel in ("forgetting", "rehearsal", "scaling", "lesion"):
        rec = json.loads((folder / f"{panel}.json").read_text())
        assert rec["preset"] == "test" and rec["seeds"] == [0] and rec["panel"] == panel
        assert rec["model"]["tau"] == 10.0 and rec["provenance"]["git"]["commit"] and rec["summary"]
        assert len(pd.read_csv(folder / f"{panel}.csv")) > 0
    assert json.loads((folder / "scaling.json").read_text())["parameters"]["n"] == [100, 200]
    assert sorted(p.stem for p in folder.glob("*.png")) == ["efficacy", "forgetting", "lesion", "rehearsal", "scaling"]


def test_editing_a_simulation_reruns_its_panels_and_no_training(workflow_run):
    _, work = workflow_run
    path = work / "config" / "simulations" / f"{SIM}.yaml"
    original, stat = path.read_text(), path.stat()
    try:
        sim = yaml.safe_load(original)
        sim["presets"]["test"]["panels"]["lesion"]["duration"] = 6
        path.write_text(yaml.safe_dump(sim, sort_keys=False))
        proc = snakemake(work, "--cores", "1", "--dry-run")
        assert proc.returncode == 0, proc.stderr[-3000:]
        jobs = proc.stdout
        assert "simulate" in jobs and "wildcards: simulation=consolidation_shaham22, panel=lesion" in jobs
        assert "rule train:" not in jobs and "panel=rehearsal" not in jobs
    finally:
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_report_and_snakemake_report(workflow_run):
    out, work = workflow_run
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 + 5
    assert "Stochastic consolidation of lifelong memory" in page and "retrievable memories ~ N^b" in page
    assert "test</b> preset" in page and "Audit against the published numbers" in page
    # CLN's growth, task by task: born 200-200, 50 more units per layer per task
    assert "Recorded after each task" in page and "<td class=''>200-200</td>" in page and "400-400" in page
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False, na_values=[""])
    grown = [json.loads(s) for s in runs[runs.method == "cln"].method_log]
    assert [[t["units"] for t in log] for log in grown] == [[[200 + 50 * i] * 2 for i in range(5)]] * 2
    proc = snakemake(work, "--cores", "1", "--report", str(work / "snakemake-report.zip"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (work / "snakemake-report.zip").stat().st_size > 0


def test_the_report_as_a_reader_sees_it_in_a_browser(workflow_run):
    """Opened in headless Chromium at 1400 px: every image loaded, nothing wider than the window,
    the headline with this audit's counts (the test preset: no verdicts; XdG not run), the compact
    audit with a cell per published number, the figures on the experiment's first screen.
    Screenshots and the measured page: test-artifacts/browser/."""
    out, _ = workflow_run
    seen = browser.inspect(out / "report.html", REPO / "test-artifacts" / "browser")
    assert seen["images"] == 3 + 5 and not seen["broken"]
    assert seen["page_width"] <= seen["viewport"] == 1400 and not seen["too_wide"], seen["too_wide"]
    assert seen["headline"] == "Of 26 published numbers, 25 were run (the test preset: no verdicts); 1 not run."
    assert seen["counts"][-1] == ["all", "26", "25", "0", "0", "0", "25", "1"]
    (section,) = seen["sections"]
    assert section["id"] == "split_mnist_vdv19" and section["audit_cells"] == 26
    assert section["first_image_below_title"] < 600


def test_nothing_left_to_do_after_a_complete_run(workflow_run):
    _, work = workflow_run
    proc = snakemake(work, "--cores", "1", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # how runs are executed (timer, device) is not what they are: nothing reruns
    proc = snakemake(work, "--cores", "1", "--dry-run", "--config", "checkpoint_every_s=5", "device=cpu:0")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]
    # nor where the data live (the same files elsewhere: their checksums are what a run reads)
    proc = snakemake(work, "--cores", "1", "--dry-run", "--config", "data={root: copy of the data}")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_a_change_of_the_code_reruns_the_analysis_and_no_training(workflow_run, tmp_path):
    # the same DAG with one module edited (a copy of the package first on the path)
    _, work = workflow_run
    package = tmp_path / "src" / "clrepro"
    shutil.copytree(REPO / "src" / "clrepro", package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(package / "figures.py", "a") as f:
        f.write("\n# edited\n")
    proc = subprocess.run(snakemake_cmd(work, "--cores", "1", "--dry-run"), capture_output=True, text=True,
                          env=dict(env(), PYTHONPATH=str(package.parent)), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("aggregate", "audit", "figure", "simulation_figure", "report"):   # no checks here
        assert f"rule {rule}:" in proc.stdout, rule
    assert "rule train:" not in proc.stdout and "rule simulate:" not in proc.stdout


def test_more_seeds_add_runs_even_without_snakemakes_records(workflow_run):
    """A finished report (here with Snakemake's records gone, as in a fresh clone of committed
    results) does not hide the runs that more seeds add: only those train, then the analysis."""
    _, work = workflow_run
    shutil.rmtree(work / ".snakemake" / "metadata", ignore_errors=True)
    proc = snakemake(work, "--cores", "1", "--dry-run", "--config", "seeds=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(line.split() for line in proc.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["train"] == str(RUNS_PER_SEED) and counts["aggregate"] == "1"    # seed 2
    proc = snakemake(work, "--cores", "1", "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_says_when_it_holds_fewer_seeds_than_configured(workflow_run, tmp_path):
    """`--config seeds=1` reaches the report's job (the resolved configuration every job reads,
    named in its environment), and the report then names the shortfall."""
    out, work = workflow_run
    proc = snakemake(work, "--cores", "1", "--dry-run", "--printshellcmds", "--forcerun", "report",
                     "--config", "seeds=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule train:" not in proc.stdout
    command = next(line for line in proc.stdout.splitlines() if "clrepro report " in line)
    assert "--config" not in command                  # the job's environment names the file
    resolved = [p for p in (work / ".snakemake" / "clrepro").glob("config-*.yaml")
                if yaml.safe_load(p.read_text()).get("seeds") == 1]
    assert len(resolved) == 1
    page = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "clrepro", "report", "--summary-csv", str(out / "summary.csv"),
                           "--runs-csv", str(out / "runs.csv"), "--out", str(page)],
                          cwd=work, capture_output=True, text=True, env=dict(env(), CLREPRO_CONFIG=str(resolved[0])))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "This report holds 1 of the 2 seeds" in page.read_text()
    assert "This report holds" not in (out / "report.html").read_text()


def test_methods_can_hold_fewer_seeds_than_the_others(workflow_run, tmp_path):
    """`--config 'seeds={exp: {method: n}}'` reaches the DAG (no training for fewer seeds, one
    more job per scenario for more) and the report, which names the methods and their seeds."""
    out, work = workflow_run
    proc = snakemake(work, "--cores", "1", "--dry-run", "--config", "seeds={split_mnist_vdv19: {ewc: 1}}")
    assert proc.returncode == 0 and "rule train:" not in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = snakemake(work, "--cores", "1", "--dry-run", "--config", "seeds={split_mnist_vdv19: {ewc: 3}}")
    counts = dict(line.split() for line in proc.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["train"] == "3"                                 # EWC's seed 2, in each scenario
    page = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "clrepro", "report", "--config", "config/config.yaml",
                           "--preset", "test", "--summary-csv", str(out / "summary.csv"),
                           "--runs-csv", str(out / "runs.csv"), "--out", str(page),
                           "--seeds", json.dumps({"split_mnist_vdv19": {"ewc": 1}})],
                          cwd=work, capture_output=True, text=True, env=env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Fewer seeds for some methods" in page.read_text() and "EWC 1, where the others have 2" in page.read_text()


def test_report_reads_the_panels_in_one_order_whatever_the_string_hashing(workflow_run):
    """The report's simulation records come in the figures' order, (a)-(e), so the page is the same
    under every PYTHONHASHSEED (a set of panel names would reorder its tables from run to run)."""
    _, work = workflow_run
    for seed in ("0", "2", "5"):          # three different orders of a set of the four panel names
        proc = subprocess.run(snakemake_cmd(work, "--cores", "1", "--dry-run", "--printshellcmds", "--forcerun",
                                            "report"), capture_output=True, text=True,
                              env=env() | {"PYTHONHASHSEED": seed}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        command = next(line for line in proc.stdout.splitlines() if "clrepro report" in line)
        records = command.split("--simulations ")[1].split(" --")[0].split()
        assert [r.rsplit("/", 1)[1] for r in records] == [
            "forgetting.json", "rehearsal.json", "scaling.json", "lesion.json"], (seed, records)


def test_snakemake_lint_finds_nothing(tmp_path):
    # every rule with its log and environment, no variable from outside a rule in a command,
    # functions in common.smk (the snakemake-workflows conventions)
    shutil.copytree(REPO / "config", tmp_path / "config")
    proc = snakemake(tmp_path, "--lint", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out[-3000:]


def test_the_rules_environment_installs_this_checkout_from_where_snakemake_creates_it():
    spec = yaml.safe_load((REPO / "workflow" / "envs" / "clrepro.yaml").read_text())
    pip = dict(line.split(None, 1) for d in spec["dependencies"] if isinstance(d, dict) for line in d["pip"])
    created_from = REPO / ".snakemake" / "conda"       # Snakemake's copy of the file, `conda env create`d there
    assert (created_from / pip["-c"]).resolve() == (REPO / "constraints.txt").resolve()
    assert (created_from / pip["-e"]).resolve() == REPO.resolve()


def test_invalid_method_scenario_is_refused_before_training(tiny_mnist, tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    exp_path = tmp_path / "config" / "experiments" / "split_mnist_vdv19.yaml"
    exp = yaml.safe_load(exp_path.read_text())
    exp["methods"]["ewc"]["fisher"] = "bogus"
    exp_path.write_text(yaml.safe_dump(exp))
    proc = snakemake(tmp_path, "--cores", "1", "--dry-run")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "fisher" in out and "bogus" in out
    assert not (tmp_path / "reports").exists() and not (tmp_path / "data").exists()


def test_paths_with_spaces_and_shell_characters_reach_every_job_intact(tiny_mnist, tmp_path):
    """Every path in a job's command is quoted: folders with spaces work, and a configured value
    is a path, never shell."""
    work = make_workdir(tmp_path / "a work folder", tiny_mnist,
                        {"seeds": 1, "iters_per_task": 5, "batch_size": 32, "model": {"type": "mlp", "hidden": [16]}},
                        methods=["none"], scenarios=["task"], outdir="my reports",
                        checkpoints="my checkpoints $(touch injected)")
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg["data"]["root"] = "my data"
    mirror, cfg["data"]["mirror"] = cfg["data"]["mirror"], None     # the mirror from the environment
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(snakemake_cmd(work, "--cores", "2", "all", "verify"), capture_output=True, text=True,
                          env=dict(env(), CLREPRO_DATA_MIRROR=mirror), timeout=930)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert not (work / "injected").exists()
    assert (work / "my data" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    assert len(list((work / "my checkpoints $(touch injected)" / "test").rglob("state.pt"))) == 1
    assert (work / "my reports" / "test" / "report.html").exists()
    check = pd.read_csv(work / "my reports" / "test" / "audit" / "checkpoints.csv")
    assert (check.status == "agrees").all()


def test_an_experiment_without_its_data_leaves_the_others_to_finish(tiny_mnist, tmp_path):
    """Offline with only an MNIST mirror and split CIFAR configured: each CIFAR download says on the
    terminal why it failed, naming CLREPRO_DATA_MIRROR; the DAG finishes split MNIST and the report
    names split CIFAR with the reason; `snakemake --report` works, and a rerun has nothing to do.
    Then without MNIST either and with one more seed: the present run counts and is not retrained,
    the new one cannot run, and the report says so."""
    work = make_workdir(tmp_path / "work", tiny_mnist,
                        {"seeds": 1, "iters_per_task": 5, "batch_size": 32, "model": {"type": "mlp", "hidden": [16]},
                         "figures": ["final_accuracy"]},
                        methods=["none"], scenarios=["task"], experiments=[EXP, "split_cifar_si17"])
    proc = snakemake(work, "--cores", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for name in ("cifar10", "cifar100"):
        assert f"clrepro download {name}: could not get {name} from the data mirror" in out, out[-6000:]
        status = json.loads((work / "data" / "download-status" / f"{name}.json").read_text())
        assert not status["ok"] and status["reason"].startswith("no data: ")
    assert "set CLREPRO_DATA_MIRROR=" in out and "split_cifar_si17 could not run: cifar10: no data" in out
    rep = work / "reports" / "test"
    result = rep / "runs" / EXP / "task" / "none" / "seed0.json"
    assert result.exists() and not (rep / "runs" / "split_cifar_si17").exists()
    assert sorted(p.name for p in (rep / "audit").iterdir()) == [f"{EXP}_audit.csv"]
    page = (rep / "report.html").read_text()
    assert "cifar-10-python.tar.gz not found in the data mirror" in page and "Split CIFAR" in page
    proc = snakemake(work, "--cores", "1", "--report", str(work / "snakemake-report.zip"))
    assert proc.returncode == 0 and (work / "snakemake-report.zip").stat().st_size > 0, proc.stderr[-4000:]
    proc = snakemake(work, "--cores", "1", "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]

    recorded = result.read_bytes()
    (tmp_path / "empty").mkdir()
    proc = snakemake(work, "--cores", "2", "--config", f"data={{root: data2, mirror: {tmp_path / 'empty'}}}",
                     f"experiments=[{EXP}]", "seeds=2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "clrepro download mnist: could not get mnist" in out and "rule train:" not in out
    assert result.read_bytes() == recorded and not result.with_name("seed1.json").exists()
    page = (rep / "report.html").read_text()
    assert "train-images-idx3-ubyte.gz not found in the data mirror" in page and "1 of its 2 runs could not run" in page
    assert "Final average accuracy of each run (%)" in page      # the present run is shown under the warning
