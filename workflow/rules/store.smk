# DVC keeps the large artefacts (datasets, checkpoints); these two targets are run by name.


rule verify:
    """Target: re-evaluate every run's final checkpoint (e.g. after `dvc pull`) and check that it
    gives the accuracies its result file records."""
    input:
        results,
    output:
        f"{OUT}/audit/checkpoints.csv",
    params:
        inputs=inputs_param,
    log:
        f"logs/{PRESET}/verify.log",
    conda:
        CONDA_ENV
    shell:
        "clrepro verify {input:q} --out {output:q} > {log:q} 2>&1"


rule share:
    """Target: record the datasets and this preset's checkpoints in DVC and push them to the
    default remote (then commit the .dvc files with git)."""
    input:
        REPORT,
    localrule: True
    log:
        f"logs/{PRESET}/share.log",
    conda:
        CONDA_ENV
    shell:   # the DVC commands' output on the terminal too
        "clrepro share 2>&1 | tee {log:q}"
