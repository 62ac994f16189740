# One job per experiment x scenario x method x seed. The run's spec (protocol, hyperparameters,
# seeds) is a param, so changing it reruns the job; the data are `ancient` so that re-fetching
# them (or `dvc pull`) does not. Checkpoints are not declared outputs: they survive a failed,
# killed or preempted job (SIGTERM checkpoints and exits 143) and the retry resumes from them.
rule train:
    input:
        lambda w: ancient(raw_files(CFG["_experiments"][w.experiment]["dataset"])),
    output:
        f"{OUT}/runs/{{experiment}}/{{scenario}}/{{method}}/seed{{seed}}.json",
    params:
        spec=lambda w: json.dumps(run_spec(w), sort_keys=True),
        checkpoints=lambda w: f"{CKPT}/{w.experiment}/{w.scenario}/{w.method}/seed{w.seed}",
        device=config["device"],
        every=config["checkpoint_every_s"],
    log:
        f"logs/{PRESET}/train/{{experiment}}/{{scenario}}/{{method}}/seed{{seed}}.log",
    threads: config["threads_per_job"]
    resources:
        gpu=uses_gpu(),
    shell:
        "clrepro train --spec {params.spec:q} --out {output} --checkpoints {params.checkpoints} "
        "--device {params.device} --threads {threads} --checkpoint-every {params.every} > {log} 2>&1"


rule runs:
    """Target: every run of the configured grid, without the analysis."""
    input:
        [run_result(r) for r in RUNS],
