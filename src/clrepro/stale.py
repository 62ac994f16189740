"""Which results were made by training code other than the current: the fingerprint a result
records (``provenance.training_code``), or, for results recorded before they carried one, the
fingerprint of the training code of the git commit they name. Nothing is rerun: the list says
what to rerun, or to verify, after the training code changed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from . import provenance


def fingerprints(results: list[dict], repo: str | os.PathLike = ".") -> list[str | None]:
    """The training code's fingerprint of each result (None: unknown, e.g. made by uncommitted code)."""
    at_commit: dict[str, str | None] = {}
    out = []
    for r in results:
        prov = r["provenance"]
        found = prov.get("training_code")
        if found is None and prov["git"].get("dirty") is False:
            commit = prov["git"]["commit"]
            if commit not in at_commit:
                at_commit[commit] = provenance.training_code_at(commit, repo)
            found = at_commit[commit]
        out.append(found)
    return out


def statuses(results: list[dict]) -> list[str]:
    """``current``, ``other`` or ``unknown`` per result (``provenance.code_status``)."""
    current = provenance.training_code()
    return [provenance.code_status(f, current) for f in fingerprints(results)]


def table(paths: list[str | os.PathLike]) -> pd.DataFrame:
    results = [json.loads(Path(p).read_text()) for p in paths]
    found = fingerprints(results)
    current = provenance.training_code()
    return pd.DataFrame([{"result": str(p), "git_commit": r["provenance"]["git"]["commit"][:10],
                          "fingerprint": f or "", "training_code": provenance.code_status(f, current)}
                         for p, r, f in zip(paths, results, found)])
