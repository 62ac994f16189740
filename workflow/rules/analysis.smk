# Aggregate -> figures -> audit. Numbers reach the report from these files, never retyped.
TARGETS = "config/targets.csv"


rule aggregate:
    input:
        RESULTS,
    output:
        runs=report(f"{OUT}/runs.csv", caption="../report/runs.rst", category="Tables"),
        accuracy=f"{OUT}/accuracy.csv",
        summary=report(f"{OUT}/summary.csv", caption="../report/summary.rst", category="Tables"),
    log:
        f"logs/{PRESET}/aggregate.log",
    shell:
        "clrepro aggregate {input} --config {CONFIGFILE} --preset {PRESET} --runs-csv {output.runs} "
        "--accuracy-csv {output.accuracy} --summary-csv {output.summary} > {log} 2>&1"


rule figure:
    input:
        accuracy=f"{OUT}/accuracy.csv",
        summary=f"{OUT}/summary.csv",
        audit=f"{OUT}/audit/{{experiment}}_audit.csv",
        experiment=lambda w: experiment_config(w.experiment),
    output:
        report(f"{OUT}/figures/{{experiment}}_{{kind}}.png", caption="../report/figure.rst", category="Figures",
               subcategory="{experiment}"),
    log:
        f"logs/{PRESET}/figure_{{experiment}}_{{kind}}.log",
    shell:
        "clrepro figure {wildcards.kind} --config {CONFIGFILE} --preset {PRESET} --experiment {wildcards.experiment} "
        "--accuracy-csv {input.accuracy} --summary-csv {input.summary} --audit {input.audit} --out {output} "
        "> {log} 2>&1"


rule audit:
    input:
        summary=f"{OUT}/summary.csv",
        targets=TARGETS,
        experiment=lambda w: experiment_config(w.experiment),
    output:
        report(f"{OUT}/audit/{{experiment}}_audit.csv", caption="../report/audit.rst", category="Audit"),
    log:
        f"logs/{PRESET}/audit_{{experiment}}.log",
    shell:
        "clrepro audit --config {CONFIGFILE} --preset {PRESET} --experiment {wildcards.experiment} "
        "--summary-csv {input.summary} --targets {input.targets} --out {output} > {log} 2>&1"
