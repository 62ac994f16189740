"""Continual-learning methods. Each is a small module behind the hooks of ``base.Method``;
``REGISTRY`` maps a method's name to its class, ``expand`` turns a configured method (a named
bundle of hyperparameters, possibly per scenario) into the class and the resolved values, and
``schema`` is the experiment schema's part for each method's hyperparameters."""
from __future__ import annotations

from .agem import AGEM
from .base import REQUIRED, Method, defaults
from .bir import BIR
from .cln import CLN
from .crumb import CRUMB
from .dgr import DGR
from .er import ER
from .ewc import EWC
from .icarl import ICaRL
from .joint import IncrementalJoint, Joint
from .l2 import L2
from .lwf import LwF
from .mas import MAS
from .scratch import Scratch
from .si import SI
from .xdg import XdG

REGISTRY: dict[str, type[Method]] = {cls.name: cls for cls in (Method, Joint, IncrementalJoint, Scratch, EWC, SI, MAS,
                                                                L2, LwF, ER, AGEM, ICaRL, DGR, BIR, CLN, XdG,
                                                                CRUMB)}


#: the keys of a configured method that are not hyperparameters (experiment.schema.yaml describes them)
ENTRY_KEYS = ("method", "label", "description", "model", "optimizer", "benchmark", "scenarios")


def expand(label: str, spec: dict, scenario: str) -> tuple[type[Method], dict]:
    """Resolve the method configured as ``methods.<label>`` for one scenario.

    Raises ``ValueError`` naming the key for an unknown method or hyperparameter, a missing
    required value, or a scenario the method does not support."""
    where = f"methods.{label}"
    if "method" not in spec:
        raise ValueError(f"{where}.method is missing (one of {sorted(REGISTRY)})")
    name = spec["method"]
    if name not in REGISTRY:
        raise ValueError(f"{where}.method: unknown method {name!r}; known: {sorted(REGISTRY)}")
    cls = REGISTRY[name]
    if scenario not in cls.scenarios:
        raise ValueError(f"{where}: method {name!r} does not support the {scenario}-IL scenario "
                         f"(supports: {', '.join(cls.scenarios)})")
    declared = cls.declared()
    hp = defaults(cls.hyperparameters)
    for key, value in spec.items():
        if key in ENTRY_KEYS:
            continue
        if key not in declared:
            raise ValueError(f"{where}.{key}: {name!r} has no hyperparameter {key!r} "
                             f"(has: {sorted(declared) or 'none'})")
        if isinstance(value, dict) and declared[key].per_scenario:
            if scenario not in value:
                raise ValueError(f"{where}.{key} gives no value for the {scenario!r} scenario")
            value = value[scenario]
        hp[key] = value
    missing = [k for k, v in hp.items() if v is REQUIRED]
    if missing:
        raise ValueError(f"{where}: required hyperparameter(s) missing: {', '.join(missing)}")
    return cls, hp


def schema() -> list[dict]:
    """For each method, the JSON schema of its hyperparameters, applied to the entries that name
    it (``if: method is ..., then: ...``): what ``config.validate`` adds to ``experiment.schema.yaml``."""
    return [{"if": {"properties": {"method": {"const": name}}, "required": ["method"]},
             "then": {"properties": {key: h.schema() for key, h in cls.declared().items()}}}
            for name, cls in REGISTRY.items() if cls.declared()]
