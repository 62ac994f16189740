# Simulations of memory models (no training, no datasets): one job per simulation x panel writes
# the panel's table and a JSON record; one job per figure draws it. The panel's resolved settings
# are the job's only param and the file is not an input, so editing a panel reruns that panel
# alone (and editing notes re-renders only the report).
wildcard_constraints:
    simulation="[A-Za-z0-9_]+",
    panel="|".join(SIMULATION_PANELS),
    simulation_figure="|".join(SIMULATION_FIGURES),


rule simulate:
    output:
        csv=f"{OUT}/simulations/{{simulation}}/{{panel}}.csv",
        json=f"{OUT}/simulations/{{simulation}}/{{panel}}.json",
    params:
        settings=simulation_settings,
    log:
        f"logs/{PRESET}/simulate/{{simulation}}_{{panel}}.log",
    threads: config["threads_per_job"]
    resources:
        gpu=uses_gpu(),
    conda:
        CONDA_ENV
    shell:
        "clrepro simulate --simulation {wildcards.simulation} "
        "--panel {wildcards.panel} --csv {output.csv:q} --json {output.json:q} "
        f"--device {shlex.quote(config['device'])} "
        "--threads {threads} > {log:q} 2>&1"


rule simulation_figure:
    input:
        csv=lambda w: f"{OUT}/simulations/{w.simulation}/{SIMULATION_FIGURES[w.simulation_figure]}.csv",
        json=lambda w: f"{OUT}/simulations/{w.simulation}/{SIMULATION_FIGURES[w.simulation_figure]}.json",
    output:
        report(f"{OUT}/simulations/{{simulation}}/{{simulation_figure}}.png", caption="../report/simulation_figure.rst",
               category="Figures", subcategory="{simulation}"),
    params:
        code=ANALYSIS_CODE,
    log:
        f"logs/{PRESET}/simulation_figure/{{simulation}}_{{simulation_figure}}.log",
    conda:
        CONDA_ENV
    shell:
        "clrepro simulation-figure {wildcards.simulation_figure} --csv {input.csv:q} --json {input.json:q} "
        "--out {output:q} > {log:q} 2>&1"
