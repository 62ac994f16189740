"""The report's prose: one Markdown file per experiment or simulation (``config/notes/<name>.md``)
whose numbers all come from the computed tables through placeholders, so that no note can go stale.

A note file is Markdown with Jinja2 placeholders, rendered one paragraph (or list) at a time. The
text before the first ``## `` heading is shown with every preset; ``## Paper scale`` describes the
paper-scale runs (shown with the ``paper`` preset only), and below ``## Audit notes`` each ``###
<target_id>`` section is the note of that published number in the audit (``paper`` only too).
Placeholders (``scenario``: task, domain or class; ``method``: a key of the experiment's methods):

- ``{{ ours.class.lwf }}``: our final average accuracy, "27.38 ± 1.45 (n = 5)"; ``.mean``,
  ``.sem``, ``.sd``, ``.n``, ``.min``, ``.max``, ``.range`` ("22.7–31.9"), ``.runs`` (the seeds' values);
- ``{{ metric("class", "lwf", "learned_task2") }}``: any metric of ``runs.csv``, the same way
  (``seeds=[1, 2]``: of those seeds only);
- ``{{ log("class", "agem", "uphill", tasks=[2, 3, 4, 5]) }}``: a value of ``Method.task_log``
  over seeds (and the tasks given, numbered from 1), the same way;
- ``{{ published.<target_id> }}`` (``.value``, ``.sem``, ``.n``), ``{{ audit.<target_id>.difference
  }}`` (any column of the audit), ``{{ reference.<target_id> }}`` (the authors' code run here, at
  the commit that made the table); ``{{ authors("class", "agem_shared", seeds=[40, 44]) }}``:
  the authors' code run here on the protocol of one of our methods (its seeds, optionally some);
  ``{{ versus_authors("class", "lwf_preprint_refpairs", "lwf_preprint") }}``: ours minus the
  authors' runs, seed by seed on the seeds both have;
- ``{{ welch(ours.class.dgr_distill_preprint, published.t) }}``: the audit's Welch test of two
  means (ours or published values), "t = 0.33, df = 37.8, p = 0.742" (``.t``, ``.df``, ``.p``);
- ``{{ devices("task", "si") }}``: the devices a cell's runs were trained on, "cuda:NVIDIA H200 × 4,
  cpu:… × 1"; ``{{ devices() }}``: the cells whose runs come from more than one device, each with
  its devices ("none" if there are none);
- ``{{ seeds }}``: seeds per method in this report (a number, or where they differ each number with
  its methods); ``{{ seeds_configured }}``: in the experiment file; ``{{ runs }}``,
  ``{{ train_hours }}``: this experiment's runs and their training time; ``{{ scenario_titles[sc] }}``:
  "Task-IL", "Domain-IL" or "Class-IL".

A paragraph of nothing but ``{% macro name(...) %}…{% endmacro %}`` definitions (no blank line
inside) renders nothing and makes its macros callable in the paragraphs after it, so that cells
described alike share one sentence pattern: ``{{ name(...) }}``, or ``{% call name(...) %}text{%
endcall %}`` to pass a paragraph's own words in as ``caller()``.

``{{ x|f(1) }}`` formats a number with one decimal. A placeholder without a value (a method, target
or metric the experiment does not have) fails the render with :class:`NoteError`, naming the file
and line. A paragraph about a method that is configured but not in this report (``--config
methods=...``) is left out, and the report says so.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
from markdown_it import MarkdownIt

from . import audit as audit_tests
from .figures import SCENARIO_TITLES

SECTIONS = ("Paper scale", "Audit notes")


class NoteError(ValueError):
    """A note names a value that does not exist."""


class NotInReport(LookupError):
    """A note names a configured method that is not in this report."""


def f(x, digits: int = 2) -> str:
    """A number with ``digits`` decimals (the ``f`` filter)."""
    return f"{float(x):.{digits}f}"


@dataclass(frozen=True)
class Values:
    """Numbers over seeds (and tasks): the mean ± SEM (n) by default."""
    runs: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def mean(self) -> float:
        return float(pd.Series(self.runs, dtype=float).mean())

    @property
    def sd(self) -> float:
        return float(pd.Series(self.runs, dtype=float).std())

    @property
    def sem(self) -> float:
        return float(pd.Series(self.runs, dtype=float).sem())

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def max(self) -> float:
        return max(self.runs)

    @property
    def range(self) -> str:
        return f"{self.min:.1f}–{self.max:.1f}"

    def __str__(self) -> str:
        if self.n > 1 and not math.isnan(self.sem):
            return f"{self.mean:.2f} ± {self.sem:.2f} (n = {self.n})"
        return f"{self.mean:.2f} (n = {self.n})"


@dataclass(frozen=True)
class Published:
    value: float
    sem: float | None
    n: int

    def __str__(self) -> str:
        return f"{self.value:.2f} ± {self.sem:.2f}" if self.sem is not None and not math.isnan(self.sem) \
            else f"{self.value:.2f}"


@dataclass(frozen=True)
class Test:
    """A Welch test's t, degrees of freedom and two-sided p."""
    t: float
    df: float
    p: float

    def __str__(self) -> str:
        return f"t = {self.t:.2f}, df = {self.df:.1f}, p = {self.p:.3f}"


def _column(df: pd.DataFrame, name: str, fill: str) -> pd.Series:
    """``df[name]`` with its missing values as ``fill``; all ``fill`` where the table lacks it."""
    return df[name].fillna(fill) if name in df else pd.Series(fill, index=df.index, dtype=object)


def welch(a: Values | Published, b: Values | Published) -> Test:
    """The audit's Welch test (:func:`clrepro.audit.welch`) of the means of ``a`` and ``b``: our
    runs (mean, SEM, n) or a published value (value, SEM, seeds)."""
    def moments(x):
        if isinstance(x, Published):
            if x.sem is None or math.isnan(x.sem) or x.n < 2:
                raise NoteError(f"welch: the published value {x.value:.2f} has no spread over seeds")
            return x.value, x.sem, x.n
        if x.n < 2:
            raise NoteError(f"welch: {x.n} run(s); a Welch test needs two or more")
        return x.mean, x.sem, x.n
    return Test(*audit_tests.welch(*moments(a), *moments(b)))


class _Lookup:
    """``name.key`` (or ``name[key]``) in a template: the value, or an error naming what is missing."""

    def __init__(self, name: str, get, known):
        self._name, self._get, self._known = name, get, known

    def __getattr__(self, key: str):
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]

    def __getitem__(self, key: str):
        if key not in self._known:
            raise NoteError(f"{self._name}.{key}: no such {self._name} key (known: {', '.join(sorted(self._known))})")
        return self._get(key)


class Context:
    """What the placeholders of one experiment's notes can name, from the computed tables."""

    def __init__(self, experiment: str, exp: dict, runs: pd.DataFrame, audit: pd.DataFrame | None,
                 reference: pd.DataFrame | None, seeds: int | str):
        self.experiment, self.exp = experiment, exp
        self.runs_df = runs[runs.experiment == experiment]
        self.audit_df = audit if audit is not None else pd.DataFrame(columns=["target_id"])
        self.reference_df = reference if reference is not None else pd.DataFrame(columns=["target_id"])
        self.seeds = seeds

    def _method(self, scenario: str, method: str) -> pd.DataFrame:
        if scenario not in ("task", "domain", "class"):
            raise NoteError(f"no scenario {scenario!r} (task, domain or class)")
        if method not in self.exp.all_methods:
            raise NoteError(f"no method {method!r} in this experiment")
        rows = self.runs_df[(self.runs_df.scenario == scenario) & (self.runs_df.method == method)]
        if not len(rows):
            raise NotInReport(f"{method} ({scenario})")
        return rows

    def metric(self, scenario: str, method: str, name: str = "acc", seeds=None) -> Values:
        rows = self._method(scenario, method)
        rows = rows[rows.seed.isin(list(seeds))] if seeds is not None else rows
        if name not in rows:
            raise NoteError(f"no metric {name!r} in the results of {method} ({scenario})")
        return Values(tuple(float(v) for v in rows[name].dropna()))

    def log(self, scenario: str, method: str, key: str, tasks=None) -> Values:
        rows = self._method(scenario, method)
        logs = [json.loads(s) for s in _column(rows, "method_log", "") if s]
        values = [entry[key] for log in logs for t, entry in enumerate(log, 1)
                  if (tasks is None or t in tasks) and entry.get(key) is not None]
        if not values:
            raise NoteError(f"no {key!r} in the task log of {method} ({scenario})")
        return Values(tuple(float(v) for v in values))

    def ours(self):
        def by_scenario(scenario):
            return _Lookup(f"ours.{scenario}", lambda m: self.metric(scenario, m),
                           self.exp.all_methods)
        return _Lookup("ours", by_scenario, ("task", "domain", "class"))

    def published(self):
        a = self.audit_df.set_index("target_id")

        def get(t):
            r = a.loc[t]
            sem = r.get("published_sem")
            return Published(float(r.published), None if pd.isna(sem) else float(sem), int(r.n_published))
        return _Lookup("published", get, set(a.index))

    def audit(self):
        a = self.audit_df.set_index("target_id")
        return _Lookup("audit", lambda t: a.loc[t].to_dict(), set(a.index))

    def reference(self):
        r = self.reference_df
        main = r[_column(r, "variant", "") == ""] if len(r) else r
        return _Lookup("reference", lambda t: Values(tuple(main[main.target_id == t].value.astype(float))),
                       set(main.target_id))

    def _authors_runs(self, scenario: str, method: str, seeds=None) -> pd.DataFrame:
        r = self.reference_df
        if "method" in r:
            r = r[(r.experiment == self.experiment) & (r.scenario == scenario) & (r.method == method)]
            r = r[r.seed.isin(seeds)] if seeds is not None else r
        if "method" not in r or not len(r):
            raise NoteError(f"no run of the authors' code for {method} ({scenario}) in config/reference_runs.csv")
        return r

    def authors(self, scenario: str, method: str, seeds=None) -> Values:
        return Values(tuple(self._authors_runs(scenario, method, seeds).value.astype(float)))

    def versus_authors(self, scenario: str, method: str, authors_method: str | None = None) -> Values:
        """Ours minus the authors' code run here (its runs on the protocol of ``authors_method``,
        by default ``method``), seed by seed on the seeds both have: a paired difference, for a
        method that draws with a seed what the reference code draws with it (``class_order:
        reference``)."""
        theirs = self._authors_runs(scenario, authors_method or method).astype({"seed": int})
        both = self._method(scenario, method).merge(theirs, on="seed", suffixes=("", "_authors"))
        if not len(both):
            raise NoteError(f"{method} ({scenario}) and the authors' runs share no seed")
        return Values(tuple((both.acc - both.value.astype(float)).astype(float)))

    def devices(self, scenario: str | None = None, method: str | None = None) -> str:
        """A cell's devices with their runs ("cuda:NVIDIA H200 × 4, cpu:… × 1"), most runs first;
        without a cell, each cell whose runs come from more than one device, with its devices."""
        def listed(rows):
            return ", ".join(f"{d} × {n}" for d, n in _column(rows, "device", "unknown").value_counts().items())
        if scenario is not None or method is not None:
            return listed(self._method(scenario, method))
        mixed = [f"{rows.label.iloc[0]} in {SCENARIO_TITLES.get(sc, sc)} ({listed(rows)})"
                 for (sc, _), rows in self.runs_df.groupby(["scenario", "method"], sort=False)
                 if _column(rows, "device", "unknown").nunique() > 1]
        return "; ".join(mixed) or "none"

    def variables(self) -> dict:
        train = self.runs_df["train_seconds"] if "train_seconds" in self.runs_df else pd.Series(dtype=float)
        return {"ours": self.ours(), "metric": self.metric, "log": self.log, "published": self.published(),
                "audit": self.audit(), "reference": self.reference(), "authors": self.authors,
                "versus_authors": self.versus_authors, "welch": welch, "devices": self.devices,
                "seeds": self.seeds, "scenario_titles": SCENARIO_TITLES,
                "seeds_configured": self.exp.seeds_in_file or self.seeds,
                "runs": len(self.runs_df), "train_hours": float(train.sum()) / 3600}


@dataclass(frozen=True)
class Notes:
    """An experiment's rendered notes: HTML paragraphs, the audit's notes by target, and what was
    left out (paragraphs about methods not in this report)."""
    html: str
    audit: dict[str, str]
    left_out: tuple[str, ...]


def _blocks(text: str, first_line: int) -> list[tuple[int, str]]:
    """Paragraphs (blank-line separated) with the line each starts on."""
    out, start, buf = [], None, []
    for i, line in enumerate(text.split("\n")):
        if line.strip():
            start = first_line + i if start is None else start
            buf.append(line)
        elif buf:
            out.append((start, "\n".join(buf)))
            start, buf = None, []
    if buf:
        out.append((start, "\n".join(buf)))
    return out


_MACROS = re.compile(r"\s*\{%-?\s*macro\b")


def _define(module, variables: dict) -> None:
    """Add a macro paragraph's macros to ``variables``; any text outside them is an error."""
    if str(module).strip():
        raise NoteError(f"a macro paragraph holds text outside its macros: {str(module).strip()[:60]!r}")
    variables.update({name: v for name, v in vars(module).items() if isinstance(v, jinja2.runtime.Macro)})


def _render_blocks(env: jinja2.Environment, path: Path, text: str, first_line: int, variables: dict,
                   left_out: list[str]) -> str:
    md = MarkdownIt("commonmark").enable("table")
    html = []
    for line, block in _blocks(text, first_line):
        try:
            if _MACROS.match(block):
                _define(env.from_string(block).make_module(variables), variables)
                continue
            html.append(md.render(env.from_string(block).render(variables)))
        except NotInReport as e:
            left_out.append(str(e))
        except (NoteError, jinja2.TemplateError, TypeError, KeyError, ValueError) as e:
            raise NoteError(f"{path}: paragraph at line {line}: {e}") from None
    return "".join(html)


def _sections(path: Path, text: str) -> list[tuple[str, int, str]]:
    """(heading, first line, text) of each ``## `` section; the text before the first is ``""``."""
    out, heading, start, buf = [], "", 1, []
    for i, line in enumerate(text.split("\n"), 1):
        if line.startswith("## "):
            out.append((heading, start, "\n".join(buf)))
            heading, start, buf = line[3:].strip(), i + 1, []
            if heading not in SECTIONS:
                raise NoteError(f"{path}: line {i}: unknown section {heading!r} (known: {', '.join(SECTIONS)})")
        else:
            buf.append(line)
    out.append((heading, start, "\n".join(buf)))
    return out


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["f"] = f
    return env


def render(path: Path, context: Context, preset: str) -> Notes:
    """Render a note file with ``context``'s values; :class:`NoteError` names any that is missing.
    The sections "Paper scale" and "Audit notes" describe the paper-scale runs: rendered for the
    ``paper`` preset only."""
    path = Path(path)
    env, variables, left_out = _environment(), context.variables(), []
    page, audit = [], {}
    for heading, line, text in _sections(path, path.read_text()):
        if heading and preset != "paper":
            continue
        if heading != "Audit notes":
            page.append(_render_blocks(env, path, text, line, variables, left_out))
            continue
        for m in re.finditer(r"^### +(\S+)[ \t]*\n(.*?)(?=^### |\Z)", text, flags=re.S | re.M):
            target = m.group(1)
            if target not in set(context.audit_df.target_id):
                raise NoteError(f"{path}: audit note for {target!r}: no such published number in this audit")
            at = line + text[:m.start(2)].count("\n")
            audit[target] = _render_blocks(env, path, m.group(2), at, variables, left_out)
    return Notes("".join(page), audit, tuple(dict.fromkeys(left_out)))


def render_plain(path: Path, preset: str) -> str:
    """A note file without values to fill in (a simulation's)."""
    path, env, variables = Path(path), _environment(), {}
    return "".join(_render_blocks(env, path, text, line, variables, [])
                   for heading, line, text in _sections(path, path.read_text()) if not heading or preset == "paper")


def notes_path(config_file: Path | str, experiment: str) -> Path:
    """``config/notes/<experiment>.md`` beside the configuration's ``experiments`` folder."""
    return Path(config_file).parent / "notes" / f"{experiment}.md"
