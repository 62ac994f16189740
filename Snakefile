# clrepro: replicate continual-learning experiments and audit them against the published numbers.
#   snakemake --cores all --config preset=demo  # see it work: a real report from MNIST in minutes
#   snakemake --cores all                       # the paper protocols (config/config.yaml)
#   snakemake --cores all --config preset=quick # the same DAG at reduced scale
#   snakemake --cores 1 share                   # record data + checkpoints in DVC, push
#   snakemake --cores all verify                # checkpoints reproduce the recorded results
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/simulation.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/store.smk"


# The runs are targets of their own: a finished report does not make Snakemake skip the runs that
# more seeds or a new experiment add (it does not rerun a job only because an input is missing).
rule all:
    default_target: True
    input:
        REPORT,
        RESULTS_BY_EXPERIMENT,


# What the configuration costs, when the DAG starts; what could not run, when it ends. In between,
# locally, the warm process the training jobs fork from (config `worker`).
onstart:
    from clrepro import cost, worker

    _to_train = [run for run in RUNS if not present(run)]
    print(cost.summary(CFG, _to_train), file=sys.stderr)
    if config["worker"] and _to_train and workflow.local_exec and not workflow.remote_exec:
        # the jobs' `clrepro train` find it through the environment they inherit
        _worker["process"], os.environ[worker.ENV] = worker.start(log=f"logs/{PRESET}/worker.log")


onsuccess:
    _stop_worker()
    for _experiment in EXPERIMENTS:
        _why = unavailable(_experiment, status=recorded_status)
        if _why:
            print(f"clrepro: {_experiment} could not run: {_why}. {REPORT} says so.", file=sys.stderr)


onerror:
    _stop_worker()
    # `log`: Snakemake's log of this call, into which show-failed-logs copies each failed job's log
    try:
        _interrupted = Path(log).read_text().count("clrepro train: interrupted")
    except (OSError, TypeError):
        _interrupted = 0
    if _interrupted:
        print(f"clrepro: {_interrupted} training run(s) were interrupted (their logs above say where they are "
              "checkpointed); rerun the same command to resume them.", file=sys.stderr)
