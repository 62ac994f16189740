# One job per experiment x scenario x method x seed. The run's spec (protocol, hyperparameters,
# seeds) is its only param, so changing it reruns the job, and nothing else does: the data are
# `ancient` (re-fetching them or `dvc pull` does not), and the device, the precision, the
# checkpoint folder and timer are written into the command (profiles/default leaves out the `code`
# rerun trigger). Checkpoints are not declared outputs: they survive a failed,
# killed or preempted job (SIGTERM checkpoints and exits 143) and the retry resumes from them.
rule train:
    input:
        lambda w: ancient(experiment_files(w.experiment)),
    output:
        f"{OUT}/runs/{{experiment}}/{{scenario}}/{{method}}/seed{{seed}}.json",
    params:
        spec=lambda w: json.dumps(run_spec(w), sort_keys=True),
    log:
        f"logs/{PRESET}/train/{{experiment}}/{{scenario}}/{{method}}/seed{{seed}}.log",
    threads: config["threads_per_job"]
    resources:
        gpu=uses_gpu(),
    shell:
        "clrepro train --spec {params.spec:q} --out {output} --threads {threads} "
        f"--checkpoints {CKPT}/{{wildcards.experiment}}/{{wildcards.scenario}}/{{wildcards.method}}/"
        f"seed{{wildcards.seed}} --device {config['device']} --checkpoint-every {config['checkpoint_every_s']} "
        f"--precision {config['precision']} "
        "> {log} 2>&1"


rule runs:
    """Target: every run of the configured grid, without the analysis."""
    input:
        RESULTS,
