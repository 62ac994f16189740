# Fetch each dataset once (official mirrors, or a local mirror), md5-verified, atomically. The job
# always succeeds: it records in <data>/download-status/<dataset>.json whether the data could be
# had and, when not, why (and says it on the terminal). It is a checkpoint: once it has run, the
# experiments whose data could not be had drop out of the DAG (common.smk, `results`) and the
# others run; the report names them. Pointing CLREPRO_DATA_MIRROR or data.mirror at the files
# tries again (a param).
for _dataset in clconfig.all_datasets(CFG):

    checkpoint:
        name:
            f"download_{_dataset}"
        output:
            status_file(_dataset),
        params:
            dataset=_dataset,
            mirror=config["data"]["mirror"] or "",
            checksums=json.dumps(config["data"].get("checksums") or {}),
            source=data_source(_dataset),
        log:
            f"logs/download_{_dataset}.log",
        conda:
            CONDA_ENV
        shell:
            f"clrepro download {{params.dataset}} --root {shlex.quote(DATA)} "
            "--mirror={params.mirror:q} --checksums={params.checksums:q} --status {output:q} --log {log:q}"
