# Fetch each dataset once (official mirrors, or a local mirror), md5-verified, atomically.
for _dataset in clconfig.all_datasets(CFG):

    rule:
        name:
            f"download_{_dataset}"
        output:
            raw_files(_dataset),
        params:
            dataset=_dataset,
            mirror=config["data"]["mirror"] or "",
            checksums=json.dumps(config["data"].get("checksums") or {}),
        log:
            f"logs/download_{_dataset}.log",
        shell:
            f"clrepro download {{params.dataset}} --root {shlex.quote(DATA)} "
            "--mirror={params.mirror:q} --checksums={params.checksums:q} > {log:q} 2>&1"
