"""Continual-learning methods. Each is a small module behind the hooks of ``base.Method``;
``REGISTRY`` maps a method's name to its class, and ``expand`` turns a configured method (a named
bundle of hyperparameters, possibly per scenario) into the class and the resolved values."""
from __future__ import annotations

from .agem import AGEM
from .base import REQUIRED, Method
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
    hp, known = dict(cls.hyperparameters), {**cls.hyperparameters, **cls.optional_hyperparameters}
    for key, value in spec.items():
        if key in ("method", "label", "description", "model", "optimizer", "benchmark", "scenarios"):  # config
            continue
        if key not in known:
            raise ValueError(f"{where}.{key}: {name!r} has no hyperparameter {key!r} "
                             f"(has: {sorted(known) or 'none'})")
        if isinstance(value, dict):  # per-scenario value
            if scenario not in value:
                raise ValueError(f"{where}.{key} gives no value for the {scenario!r} scenario")
            value = value[scenario]
        hp[key] = value
    missing = [k for k, v in hp.items() if v is REQUIRED]
    if missing:
        raise ValueError(f"{where}: required hyperparameter(s) missing: {', '.join(missing)}")
    return cls, hp
