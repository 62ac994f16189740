# The --config of this command, shown in the report as the command that reproduces it (written
# into the command, not a param: running the same DAG with another --config does not re-render it).
COMMAND_CONFIG = shlex.quote(json.dumps(dict(workflow.config_settings.config), sort_keys=True, default=str)).replace(
    "{", "{{").replace("}", "}}")


rule report:
    input:
        summary=f"{OUT}/summary.csv",
        runs=f"{OUT}/runs.csv",
        experiments=[f for e in EXPERIMENTS for f in experiment_config(e)],
        audits=audit_files,
        checks=check_files,
        figures=figure_files,
        simulation_configs=[simulation_config(s) for s in SIMULATIONS],
        simulation_plots=SIMULATION_PLOTS,
        simulations=SIMULATION_RECORDS,
        notes=[p for p in map(notes_file, EXPERIMENTS + list(SIMULATIONS)) if Path(p).exists()],
        reference_runs=REFERENCE_RUNS,
        targets=TARGETS,
        not_run="config/not_run.yaml",
    output:
        report(REPORT, caption="../report/report.rst", category="Report"),
    params:
        code=ANALYSIS_CODE,
        inputs=inputs_param,
        unavailable=unavailable_param,
    log:
        f"logs/{PRESET}/report.log",
    conda:
        CONDA_ENV
    shell:
        "clrepro report --summary-csv {input.summary:q} "
        "--runs-csv {input.runs:q} --audit {input.audits:q} --checks {input.checks:q} --figures {input.figures:q} {input.simulation_plots:q} "
        "--simulations {input.simulations:q} --reference-runs {input.reference_runs:q} "
        "--targets {input.targets:q} --not-run {input.not_run:q} "
        f"--command-config {COMMAND_CONFIG} --unavailable {{params.unavailable:q}} --out {{output:q}} "
        "> {log:q} 2>&1"
