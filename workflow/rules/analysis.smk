# Aggregate -> figures -> audit. Numbers reach the report from these files, never retyped.
TARGETS = "config/targets.csv"
REFERENCE_RUNS = "config/reference_runs.csv"


rule aggregate:
    input:
        results,
    output:
        runs=report(f"{OUT}/runs.csv", caption="../report/runs.rst", category="Tables"),
        accuracy=f"{OUT}/accuracy.csv",
        summary=report(f"{OUT}/summary.csv", caption="../report/summary.rst", category="Tables"),
    params:
        code=ANALYSIS_CODE,
        inputs=inputs_param,
    log:
        f"logs/{PRESET}/aggregate.log",
    conda:
        CONDA_ENV
    shell:
        "clrepro aggregate {input:q} --runs-csv {output.runs:q} "
        "--accuracy-csv {output.accuracy:q} --summary-csv {output.summary:q} > {log:q} 2>&1"


rule figure:
    input:
        accuracy=f"{OUT}/accuracy.csv",
        summary=f"{OUT}/summary.csv",
        audit=f"{OUT}/audit/{{experiment}}_audit.csv",
        experiment=lambda w: experiment_config(w.experiment),
        results=lambda w: results_of(w.experiment) if w.kind in ("stability_gap", "memory") else [],   # per run
    output:
        report(f"{OUT}/figures/{{experiment}}_{{kind}}.png", caption="../report/figure.rst", category="Figures",
               subcategory="{experiment}"),
    params:
        code=ANALYSIS_CODE,
    log:
        f"logs/{PRESET}/figure_{{experiment}}_{{kind}}.log",
    conda:
        CONDA_ENV
    shell:
        "clrepro figure {wildcards.kind} --experiment {wildcards.experiment} "
        "--accuracy-csv {input.accuracy:q} --summary-csv {input.summary:q} --audit {input.audit:q} "
        "--results {input.results:q} --out {output:q} > {log:q} 2>&1"


rule checks:
    input:
        results=lambda w: results_of(w.experiment),
        experiment=lambda w: experiment_config(w.experiment),
    output:
        report(f"{OUT}/checks/{{experiment}}_checks.csv", caption="../report/checks.rst", category="Audit"),
    params:
        code=ANALYSIS_CODE,
    log:
        f"logs/{PRESET}/checks_{{experiment}}.log",
    conda:
        CONDA_ENV
    shell:
        "clrepro checks {input.results:q} --experiment {wildcards.experiment} --out {output:q} "
        "> {log:q} 2>&1"


rule audit:
    input:
        summary=f"{OUT}/summary.csv",
        targets=TARGETS,
        reference_runs=REFERENCE_RUNS,
        experiment=lambda w: experiment_config(w.experiment),
    output:
        report(f"{OUT}/audit/{{experiment}}_audit.csv", caption="../report/audit.rst", category="Audit"),
    params:
        code=ANALYSIS_CODE,
    log:
        f"logs/{PRESET}/audit_{{experiment}}.log",
    conda:
        CONDA_ENV
    shell:
        "clrepro audit --experiment {wildcards.experiment} "
        "--summary-csv {input.summary:q} --targets {input.targets:q} --reference-runs {input.reference_runs:q} "
        "--out {output:q} > {log:q} 2>&1"
