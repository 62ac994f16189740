rule report:
    input:
        summary=f"{OUT}/summary.csv",
        runs=f"{OUT}/runs.csv",
        experiments=[experiment_config(e) for e in EXPERIMENTS],
        audits=expand(f"{OUT}/audit/{{experiment}}_audit.csv", experiment=EXPERIMENTS),
        figures=FIGURES,
        simulation_configs=[simulation_config(s) for s in SIMULATIONS],
        simulation_plots=SIMULATION_PLOTS,
        simulations=SIMULATION_RECORDS,
    output:
        report(REPORT, caption="../report/report.rst", category="Report"),
    params:
        inputs=inputs_param,
    log:
        f"logs/{PRESET}/report.log",
    shell:
        "clrepro report --config {RESOLVED} --summary-csv {input.summary:q} "
        "--runs-csv {input.runs:q} --audit {input.audits:q} --figures {input.figures:q} {input.simulation_plots:q} "
        "--simulations {input.simulations:q} --out {output:q} "
        "> {log:q} 2>&1"
