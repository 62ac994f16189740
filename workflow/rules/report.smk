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
    log:
        f"logs/{PRESET}/report.log",
    shell:
        "clrepro report --config {CONFIGFILE} --preset {PRESET} --summary-csv {input.summary} "
        "--runs-csv {input.runs} --audit {input.audits} --figures {input.figures} {input.simulation_plots} "
        "--simulations {input.simulations} --out {output} {SUBSET_ARG} "
        "> {log} 2>&1"
