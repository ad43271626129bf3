"""Search spaces: the YAML syntax, and its translation to Optuna.

A search-space file maps a hyperparameter name to a spec that mirrors Optuna's
distributions exactly::

    lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    weight_decay: {type: float, low: 0.0, high: 1.0e-3, step: 1.0e-4}
    batch_size: {type: categorical, choices: [32, 64, 128]}
    epochs: {type: int, low: 2, high: 8}        # high is inclusive, as in Optuna
    label_smoothing: 0.1                        # a scalar or a list: a fixed value
    optimizer: {value: adam}                    # the explicit spelling of a fixed value
    scn:                                        # a mapping without `type`/`value` is a group;
      beta: {type: float, low: 0.5, high: 0.9}  #   its keys join with "/": "scn/beta"

A parameter has one spelling ("scn/beta") in YAML, Optuna, MLflow and dashboards;
Tune's configs nest it (``{"scn": {"beta": ...}}``), see ``nest``/``flatten``. Tune
gets the searched parameters from Optuna (``OptunaSearch`` with ``to_optuna``'s
distributions) and the fixed ones as constants (``fixed_values``).

Strings such as ``1e-4`` (YAML 1.1 reads exponent numbers without a dot as text)
are taken as floats wherever a space holds a number, a choice or a fixed value.

``Issue`` and ``SpecError`` live here, the lower layer, and ``sweeplab.spec``
re-exports them.
"""

from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from optuna import distributions as od

# -- errors -------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One problem in a sweep or search-space file: where it is and what is allowed."""

    file: str
    key: str  # dotted path inside the file, e.g. "methods.ce.num_samples"
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


def brief(value: Any, most: int = 60) -> str:
    """``repr(value)``, cut to ``most`` characters: a message names a bad value without
    reproducing a file's content."""
    text = repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."


class SpecError(Exception):
    """Every problem found in a file (or several), one ``Issue`` each."""

    def __init__(self, issues: list[Issue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


# -- the parameter type -----------------------------------------------------------

Kind = Literal["float", "int", "categorical", "fixed"]
DISTRIBUTION_TYPES = ("float", "int", "categorical")
SPEC_KEYS = ("type", "low", "high", "log", "step", "choices", "value")


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a space: a distribution (Optuna's fields) or a fixed value."""

    kind: Kind
    low: float | int | None = None
    high: float | int | None = None  # inclusive
    log: bool = False
    step: float | int | None = None  # None: continuous float / unit int step
    choices: tuple = ()
    value: Any = None  # kind "fixed" only


# -- parsing ------------------------------------------------------------------------

_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")


def as_number(value: Any) -> Any:
    """``"1e-4"`` -> ``0.0001``; anything else unchanged (lists converted item by item)."""
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [as_number(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar_choice(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _join(at: str, name: Any) -> str:
    return f"{at}.{name}" if at else str(name)


def collect_space(
    raw: Any, file: str, prefix: str = "", *, at: str = ""
) -> tuple[dict[str, Param], dict[str, str], list[Issue]]:
    """Parse what can be parsed and collect every problem.

    Returns ``(space, locations, issues)``: ``locations`` maps each parameter name to its
    dotted key in the file (prefixed by ``at``), for messages about it later on.
    """
    space: dict[str, Param] = {}
    locations: dict[str, str] = {}
    issues: list[Issue] = []
    if not isinstance(raw, Mapping):
        where = at or "(top level)"
        issues.append(Issue(file, where, f"must be a mapping of hyperparameter name -> spec, got {brief(raw)}"))
        return space, locations, issues
    _collect(raw, file, prefix, at, space, locations, issues)
    return space, locations, issues


def parse_space(raw: Mapping, file: str, prefix: str = "") -> dict[str, Param]:
    """A search space keyed by "/"-joined names; raises ``SpecError`` listing every problem."""
    space, _, issues = collect_space(raw, file, prefix)
    if issues:
        raise SpecError(issues)
    return space


def _collect(raw, file, prefix, at, space, locations, issues) -> None:
    for name, spec in raw.items():
        key = _join(at, name)
        if not isinstance(name, str) or not name:
            issues.append(Issue(file, key, f"a hyperparameter name must be a non-empty string, got {brief(name)}"))
            continue
        full = prefix + name
        if isinstance(spec, Mapping) and "type" not in spec and "value" not in spec:
            misplaced = [k for k in SPEC_KEYS if k in spec]
            if misplaced:
                issues.append(Issue(file, key, f"has {', '.join(misplaced)} but no 'type'; "
                                    f"allowed types: {', '.join(DISTRIBUTION_TYPES)}"))
            elif not spec:
                issues.append(Issue(file, key, "an empty group; give it hyperparameters or remove it"))
            else:
                _collect(spec, file, full + "/", key, space, locations, issues)
            continue
        if full in space:
            issues.append(Issue(file, key, f"hyperparameter {full!r} is defined twice"))
            continue
        param = _parse_one(spec, file, key, issues)
        if param is not None:
            space[full] = param
            locations[full] = key


def _parse_one(spec: Any, file: str, key: str, issues: list[Issue]) -> Param | None:
    def problem(message: str, sub: str | None = None) -> None:
        issues.append(Issue(file, _join(key, sub) if sub else key, message))

    if not isinstance(spec, Mapping):
        return Param("fixed", value=as_number(spec))
    if "type" not in spec:  # {value: ...}
        extra = [k for k in spec if k != "value"]
        if extra:
            problem(f"a fixed value takes only 'value'; remove {', '.join(map(repr, extra))}")
            return None
        return Param("fixed", value=as_number(spec["value"]))

    unknown = [k for k in spec if k not in SPEC_KEYS]
    for k in unknown:
        problem(f"unknown key {brief(k)}; allowed: {', '.join(SPEC_KEYS[:-1])} (or only 'value' for a fixed value)", str(k))
    kind = spec["type"]
    if kind not in DISTRIBUTION_TYPES:
        problem(f"unknown type {brief(kind)}; allowed: {', '.join(DISTRIBUTION_TYPES)} "
                "(write the value itself, or {value: ...}, for a fixed value)", "type")
        return None
    if "value" in spec:
        problem(f"'value' makes a fixed value and cannot be combined with 'type: {kind}'", "value")
    n_issues = len(issues)
    if kind == "categorical":
        param = _parse_categorical(spec, problem)
    else:
        param = _parse_range(kind, spec, problem)
    return param if len(issues) == n_issues and not unknown else None


def _parse_categorical(spec: Mapping, problem) -> Param | None:
    for k in ("low", "high", "log", "step"):
        if k in spec:
            problem(f"{k!r} does not apply to type categorical; it takes 'choices'", k)
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        problem(f"type categorical needs 'choices': a non-empty list, got {brief(choices)}", "choices")
        return None
    choices = as_number(choices)
    seen: set = set()
    for i, choice in enumerate(choices):
        if not _is_scalar_choice(choice):
            problem(f"choice {brief(choice)} is not a scalar; Optuna admits None, bool, int, float, str", f"choices[{i}]")
            return None
        marker = (type(choice).__name__, choice)  # keeps 1, 1.0 and True apart
        if marker in seen:
            problem(f"choice {brief(choice)} appears twice", f"choices[{i}]")
        seen.add(marker)
    return Param("categorical", choices=tuple(choices))


def _parse_range(kind: str, spec: Mapping, problem) -> Param | None:
    if "choices" in spec:
        problem(f"'choices' applies to type categorical only; type {kind} takes low, high, log, step", "choices")
    bounds = {}
    for k in ("low", "high"):
        if k not in spec:
            problem(f"type {kind} needs {k!r}", None)
            continue
        bounds[k] = _bound(kind, k, spec[k], problem)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        problem(f"'log' must be true or false, got {brief(log)}", "log")
        log = False
    step = None
    if spec.get("step") is not None:
        step = _bound(kind, "step", spec["step"], problem)
        if step is not None and step <= 0:
            problem(f"'step' must be > 0, got {step!r}", "step")
            step = None
    if log and step is not None:
        problem("'log' and 'step' cannot be combined (Optuna samples a log scale without a step)", "step")
    low, high = bounds.get("low"), bounds.get("high")
    if low is None or high is None:
        return None
    if low > high:
        problem(f"inverted range: low {low!r} > high {high!r}")
        return None
    if low == high:
        problem(f"empty range: low == high == {low!r}; use a fixed value instead (write just {low!r})")
        return None
    if log and low <= 0:
        problem(f"a log scale needs low > 0, got low {low!r}", "low")
    if step is not None and not log:
        d_low, d_high, d_step = (decimal.Decimal(str(v)) for v in (low, high, step))
        if (d_high - d_low) % d_step != 0:
            fitted = (d_high - d_low) // d_step * d_step + d_low
            problem(f"high - low ({d_high - d_low}) is not a multiple of step {step!r}; "
                    f"Optuna would quietly lower high to {fitted}: write high: {fitted}", "high")
    if kind == "int" and step == 1:
        step = None  # Optuna's default unit step: one spelling for one space
    return Param(kind, low=low, high=high, log=log, step=step)  # type: ignore[arg-type]


def _bound(kind: str, name: str, value: Any, problem) -> float | int | None:
    value = as_number(value)
    if not _is_number(value) or not math.isfinite(value):
        problem(f"{name!r} must be a finite number, got {brief(value)}", name)
        return None
    if kind == "int":
        if float(value) != int(value):
            problem(f"type int needs whole numbers; {name!r} is {brief(value)}", name)
            return None
        return int(value)
    return float(value)


# -- Optuna -----------------------------------------------------------------------


def to_optuna(space: Mapping[str, Param]) -> dict[str, od.BaseDistribution]:
    """Optuna distributions of the searched parameters (fixed ones are left out)."""
    out: dict[str, od.BaseDistribution] = {}
    for name, p in space.items():
        if p.kind == "float":
            out[name] = od.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        elif p.kind == "int":
            out[name] = od.IntDistribution(p.low, p.high, log=p.log, step=p.step or 1)
        elif p.kind == "categorical":
            out[name] = od.CategoricalDistribution(list(p.choices))
    return out


def fixed_values(space: Mapping[str, Param]) -> dict:
    """The fixed parameters as a nested dict (constants of Tune's ``param_space``)."""
    return nest({name: p.value for name, p in space.items() if p.kind == "fixed"})


# -- helpers ----------------------------------------------------------------------


def nest(flat: Mapping[str, Any]) -> dict:
    """``{"scn/beta": 1}`` -> ``{"scn": {"beta": 1}}``."""
    out: dict = {}
    for name, value in flat.items():
        *groups, leaf = name.split("/")
        node = out
        for i, group in enumerate(groups):
            node = node.setdefault(group, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name!r} is inside {'/'.join(groups[: i + 1])!r}, which is a value")
        if leaf in node:
            raise ValueError(f"{name!r} is both a value and a group")
        node[leaf] = value
    return out


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict:
    """``{"scn": {"beta": 1}}`` -> ``{"scn/beta": 1}``."""
    out: dict = {}
    for key, value in nested.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def upper_bound(param: Param) -> float | int:
    """The largest value a numeric parameter can take (ASHA's ``max_t`` comes from ``epochs``)."""
    if param.kind in ("float", "int"):
        return param.high  # type: ignore[return-value]
    values = list(param.choices) if param.kind == "categorical" else [param.value]
    if not values or not all(_is_number(v) for v in values):
        raise TypeError(f"no numeric upper bound: values are {values!r}")
    return max(values)
