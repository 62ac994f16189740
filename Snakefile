# clrepro: replicate continual-learning experiments and audit them against the published numbers.
#   snakemake --cores all                       # the paper protocols (config/config.yaml)
#   snakemake --cores all --config preset=quick # the same DAG at reduced scale
#   snakemake --cores 1 share                   # record data + checkpoints in DVC, push
#   snakemake --cores all verify                # checkpoints reproduce the recorded results
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/simulation.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/store.smk"


# The runs are targets of their own: a finished report does not make Snakemake skip the runs that
# more seeds or a new experiment add (it does not rerun a job only because an input is missing).
rule all:
    default_target: True
    input:
        REPORT,
        RESULTS,
