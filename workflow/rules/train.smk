# One job per experiment x scenario x method x seed. The run's spec (protocol, hyperparameters,
# seeds, data checksums) is its only param, so changing it reruns the job, and nothing else does:
# a result present with this spec has no inputs (fetching the data or `dvc pull` does not rerun
# it), and the data folder, device, precision, Adam's kernel, checkpoint folder and timer are written into the
# command (profiles/default leaves out the `code` rerun trigger). A result committed to git is
# never replaced: a rerun with other numbers is written beside it (`clrepro train`). Checkpoints
# are not declared outputs: they survive a failed, killed or preempted job (SIGTERM checkpoints
# and exits 143) and the retry resumes from them.
rule train:
    input:
        training_inputs,
    output:
        f"{OUT}/runs/{{experiment}}/{{scenario}}/{{method}}/seed{{seed}}.json",
    params:
        spec=spec_param,
    log:
        f"logs/{PRESET}/train/{{experiment}}/{{scenario}}/{{method}}/seed{{seed}}.log",
    threads: config["threads_per_job"]
    resources:
        gpu=uses_gpu(),
    conda:
        CONDA_ENV
    shell:   # exec: the shell does not stand between a signal and training (SIGTERM would end it first)
        "exec clrepro train --spec {params.spec:q} --out {output:q} --threads {threads} "
        f"--data-root {shlex.quote(DATA)} --checkpoints "
        f"{shlex.quote(CKPT)}/{{wildcards.experiment}}/{{wildcards.scenario}}/{{wildcards.method}}/seed{{wildcards.seed}} "
        f"--device {shlex.quote(config['device'])} --checkpoint-every {config['checkpoint_every_s']} "
        f"--precision {config['precision']} --adam {config['adam']} --denormals {config['denormals']} "
        "> {log:q} 2>&1"


rule runs:
    """Target: every run of the configured grid (those whose data could be had), without the analysis."""
    input:
        RESULTS_BY_EXPERIMENT,
