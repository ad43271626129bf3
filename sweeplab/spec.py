"""Sweep files: the schema, profiles and ``--set``, and errors a researcher can act on.

A sweep file names the dataset, the methods to compare (each with a search space
and a trial budget), the search algorithm, the scheduler, per-trial resources,
tracking and storage (see ARCHITECTURE.md, "Sweep files"). ``load_sweep`` reads
one, lays the ``--profile`` overlay and the ``--set`` overrides over it, checks
everything it can without starting Ray, and either returns a ``Sweep`` or raises
``SpecError`` listing every problem as ``file: key.path: message``.

Overlay rule of ``--profile``: mappings merge key by key and anything else
(lists included) is replaced, with two exceptions that keep options of
different things apart: a ``dataset`` that names another dataset replaces the
file's ``dataset`` whole, and each hyperparameter under a method's ``overrides``
is replaced whole (as overrides replace the search-space file's top-level keys).
``--set a.b=value`` sets one key after the profile; ``value`` is read as YAML.

``Sweep.document`` is the checked document with every default resolved (absolute
paths, tracking URI, each method's objective); saved with ``to_yaml`` and loaded
again it gives the same ``Sweep``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import ValidationError

from sweeplab import catalog
from sweeplab.method import DataFacts, Hyperparameter, all_hyperparameters, declarations
from sweeplab.search import SAMPLERS, SCHEDULERS
from sweeplab.spaces import Issue, Param, SpecError, brief, collect_space, upper_bound
from sweeplab.sweep_schema import (SECTIONS, CheckpointSpec, ConfirmSpec, FailureSpec, MethodSpec, ModelSpec, ResourcesSpec,
                                   SchedulerSpec, SearchSpec, StorageSpec, SweepSpec, TrackingSpec, lenient,
                                   pydantic_issues)
from sweeplab.tasks import task_family
from sweeplab.tracking import metric_name_problem, resolve_tracking_uri
from sweeplab.yaml_files import parse_yaml, read_yaml

__all__ = ["Issue", "SpecError", "Study", "Sweep", "load_sweep", "validate_files"]

URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

# -- the result -----------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    """One method of a sweep: its trial budget, its (merged, flattened) space and its objective."""

    method: str
    entry: catalog.MethodEntry
    num_samples: int
    space: dict[str, Param]
    space_file: Path
    metric: str | list[str]
    mode: str | list[str]


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    seed: int
    dataset: dict[str, Any]  # the validated dataset options, JSON-ready (absolute paths)
    model: ModelSpec
    methods: dict[str, MethodSpec]
    search: SearchSpec
    scheduler: SchedulerSpec
    resources: ResourcesSpec
    tracking: TrackingSpec
    storage: StorageSpec
    failure: FailureSpec
    checkpoint: CheckpointSpec
    precision: str
    confirm: ConfirmSpec | None
    baseline: str | None
    document: dict[str, Any]  # what to save as the resolved sweep file
    studies: list[Study]
    file: Path = field(compare=False)  # where it was read from: not part of what the sweep is
    profile: str | None = field(default=None, compare=False)

    @classmethod
    def from_document(cls, doc: Any, file: str | Path, profile: str | None = None) -> "Sweep":
        """Check a document (already overlaid; e.g. a saved resolved sweep). Raises ``SpecError``."""
        return _build(doc, Path(file), profile, lambda key: "")

    @property
    def baseline_method(self) -> str | None:
        """The method the others are compared with: ``baseline:``, else the sweep's one method the
        registry calls a baseline (None when there is not exactly one)."""
        if self.baseline:
            return self.baseline
        plain = [s.method for s in self.studies if s.entry.paper == "baseline"]
        return plain[0] if len(plain) == 1 else None

    def precision_of(self, method: str) -> str:
        """The precision ``method``'s trials ask for (``sweeplab.precision``): its own, else the sweep's."""
        return self.methods[method].precision or self.precision

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True)


# -- public entry points --------------------------------------------------------------


def load_sweep(path: str | Path, profile: str | None = None, sets: Sequence[str] = ()) -> Sweep:
    """Read a sweep file, apply ``--profile`` then ``--set``, check it. Raises ``SpecError``."""
    path = Path(path)
    raw, issues = read_yaml(path)
    if issues:
        raise SpecError(issues)
    if not isinstance(raw, dict):
        raise SpecError([Issue(str(path), "(top level)", "not a sweep file: expected a mapping (name, dataset, "
                               f"methods, ...), found {_kind(raw)}")])
    doc, overlay, set_paths, issues = _overlay_profile_and_sets(raw, str(path), profile, sets)
    if issues:
        raise SpecError(issues)

    def origin(key: str) -> str:
        for text, dotted in set_paths:
            if key == dotted or key.startswith(dotted + ".") or key.startswith(dotted + "["):
                return f" (from --set {text})"
        return f" (from profile {profile!r})" if overlay and _has_path(overlay, key) else ""

    return _build(doc, path, profile, origin)


def validate_files(paths: Sequence[str | Path], profile: str | None = None, sets: Sequence[str] = ()) -> list[Issue]:
    """Every problem of every file; without ``profile``, each file's profiles are checked too
    (as written: ``sets`` apply to the file itself, or to ``profile`` when one is named)."""
    issues: list[Issue] = []
    for path in paths:
        raw, _ = read_yaml(Path(path))
        if is_search_space(raw):
            issues += validate_space_file(Path(path))
            continue
        profiles: list[str | None] = [profile]
        if profile is None:
            if isinstance(raw, dict) and isinstance(raw.get("profiles"), dict):
                profiles += list(raw["profiles"])
        for name in profiles:
            try:
                load_sweep(path, name, sets if name == profile else ())
            except SpecError as error:
                issues += [i for i in error.issues if i not in issues]
    return issues


SWEEP_KEYS = frozenset({"name", "methods", "dataset"})


def is_search_space(raw: Any) -> bool:
    """Whether a YAML document reads as a search space (hyperparameter name -> spec) rather than
    a sweep file (which has a name, a dataset and methods)."""
    return isinstance(raw, dict) and bool(raw) and not (SWEEP_KEYS & set(raw))


def validate_space_file(path: Path) -> list[Issue]:
    """The problems of a search-space file on its own, checked against the method it is named
    after (``search_spaces/<method>.yaml``): syntax, names and values the method allows."""
    method = path.stem
    if method not in catalog.entries():
        return [Issue(str(path), "(top level)", f"a search space is checked against the method it is named after "
                      f"(search_spaces/<method>.yaml), and {method!r} is not a method; known methods: "
                      f"{', '.join(catalog.names())}. Validate the sweep file that uses it instead")]
    problems = _Problems(path, lambda key: "")
    entry = catalog.entry(method)
    _method_space(method, MethodSpec(search_space=str(path.resolve())), entry, entry.load(), path, problems)
    return problems.issues


# -- reading, profiles, --set -----------------------------------------------------------


def _kind(value: Any) -> str:
    """What a value is, in words, without showing it (it may be a file's content)."""
    if value is None:
        return "nothing (an empty file)"
    if isinstance(value, str):
        return f"text ({len(value)} characters)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return f"a {type(value).__name__}"


def _overlay_profile_and_sets(raw: dict, file: str, profile: str | None, sets: Sequence[str]):
    issues: list[Issue] = []
    # a YAML alias (``overrides: *recipe``) is one object in two places: copy each place on its
    # own, so that a --set on one of them does not change the other
    doc = _unshared({k: v for k, v in raw.items() if k != "profiles"})
    profiles = raw.get("profiles") or {}
    overlay: dict = {}
    if not isinstance(profiles, dict):
        issues.append(Issue(file, "profiles", f"must be a mapping of profile name -> overlay, got {brief(profiles)}"))
        profiles = {}
    for name, body in profiles.items():
        if not isinstance(body, dict):
            message = f"a profile must be a mapping laid over the file, got {brief(body)}"
            issues.append(Issue(file, f"profiles.{name}", message))
        elif "profiles" in body:
            issues.append(Issue(file, f"profiles.{name}.profiles", "a profile may not contain 'profiles'"))
    if profile is not None:
        if profile not in profiles:
            known = ", ".join(map(str, profiles)) if profiles else "none (the file has no 'profiles')"
            issues.append(Issue(file, "--profile", f"unknown profile {profile!r}; profiles in this file: {known}"))
        elif isinstance(profiles[profile], dict):
            overlay = profiles[profile]
            doc = _merge(doc, overlay)
    set_paths = []
    for text in sets:
        dotted, problem = _apply_set(doc, text)
        if problem:
            issues.append(Issue(file, "--set", f"{text!r}: {problem}"))
        else:
            set_paths.append((text, dotted))
    return doc, overlay, set_paths, issues


def _unshared(node: Any) -> Any:
    """A copy of a YAML document in which no mapping or list appears twice."""
    if isinstance(node, dict):
        return {k: _unshared(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshared(v) for v in node]
    return node


def _merge(base: Mapping, over: Mapping, path: tuple = ()) -> dict:
    out = dict(base)
    for key, value in over.items():
        here = path + (key,)
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping) and not _replaced_whole(here, old, value):
            out[key] = _merge(old, value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _replaced_whole(path: tuple, old: Mapping, new: Mapping) -> bool:
    if path == ("dataset",):
        return "name" in new and new["name"] != old.get("name")
    return len(path) == 4 and path[0] == "methods" and path[2] == "overrides"


def _apply_set(doc: dict, text: str) -> tuple[str, str | None]:
    """Set one key in place; returns ``(dotted key, problem or None)``."""
    if "=" not in text:
        return "", "no '='; write --set key.path=value (e.g. methods.ce.num_samples=4)"
    dotted, _, value_text = text.partition("=")
    parts = dotted.strip().split(".")
    if not all(parts):
        return "", f"{dotted!r} is not a dotted key path (e.g. search.sampler)"
    if parts[0] == "profiles":
        return "", "--set cannot change profiles; use --profile NAME"
    value, issues = parse_yaml(value_text, "--set")
    if issues:
        return "", f"the value is not valid YAML: {issues[0].message}"
    node = doc
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            return "", f"{'.'.join(parts[: i + 1])!r} is {brief(child)}, not a mapping, so it has no key {parts[i + 1]!r}"
        node = child
    node[parts[-1]] = value
    return ".".join(parts), None


def _has_path(mapping: Mapping, dotted: str) -> bool:
    node: Any = mapping
    for part in re.sub(r"\[\d+\]", "", dotted).split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


# -- the checks -------------------------------------------------------------------------------------


class _Problems:
    def __init__(self, file: Path, origin):
        self.file, self.origin, self.issues = str(file), origin, []

    def add(self, key: str, message: str, file: str | None = None) -> None:
        issue = Issue(file, key, message) if file else Issue(self.file, key, message + self.origin(key))
        if issue not in self.issues:
            self.issues.append(issue)

    def extend(self, issues: list[Issue]) -> None:
        for i in issues:
            self.add(i.key, i.message, None if i.file == self.file else i.file)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _find(given: str, base: Path) -> tuple[Path | None, list[Path]]:
    """A file named in a sweep file: absolute, else next to the sweep file, else in the cwd."""
    path = Path(given).expanduser()
    candidates = [path] if path.is_absolute() else list(dict.fromkeys([base.resolve() / path, Path.cwd() / path]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve(), candidates
    return None, candidates


def _build(doc: Any, file: Path, profile: str | None, origin) -> Sweep:
    problems = _Problems(file, origin)
    if not isinstance(doc, dict):
        raise SpecError([Issue(str(file), "(top level)", f"a sweep file must be a mapping, found {_kind(doc)}")])
    try:
        spec = SweepSpec.model_validate(doc)
    except ValidationError as error:
        problems.extend(pydantic_issues(error, str(file), SweepSpec))
        spec = None
    sections = {name: getattr(spec, name) if spec else lenient(cls, doc.get(name)) for name, cls in SECTIONS.items()}
    dataset = _check_dataset(doc.get("dataset"), problems)
    weights = _check_weights(sections["model"], file, problems)
    search, scheduler = sections["search"], sections["scheduler"]
    if search and search.n_startup_trials is not None and not SAMPLERS[search.sampler].startup_trials:
        takers = [n for n, e in SAMPLERS.items() if e.startup_trials]
        problems.add("search.n_startup_trials", f"sampler {search.sampler!r} does not use it; "
                     f"only {', '.join(takers)} do (remove it or set null)")
    studies = []
    methods = doc.get("methods")
    for name, raw in (methods.items() if isinstance(methods, dict) else ()):
        study = _check_method(str(name), raw, search, scheduler, dataset, sections["model"], file, problems)
        if study is not None:
            studies.append(study)
    own_metrics = [(lenient(MethodSpec, raw) or MethodSpec()).metric
                   for name, raw in (methods.items() if isinstance(methods, dict) else ())
                   if name in catalog.entries()]
    _check_workers(doc.get("resources"), sections["resources"], studies, problems)
    baseline = doc.get("baseline")
    if isinstance(baseline, str) and isinstance(methods, dict) and baseline not in methods:
        problems.add("baseline", f"{baseline!r} is not one of the sweep's methods; allowed: "
                     f"{', '.join(map(str, methods))}")
    if search and any(isinstance(m if m is not None else search.metric, list) for m in own_metrics):
        if not SAMPLERS[search.sampler].multi_objective:
            several = [n for n, e in SAMPLERS.items() if e.multi_objective]
            problems.add("search.sampler", f"sampler {search.sampler!r} optimises one objective but a metric list "
                         f"asks for several; allowed: {', '.join(several)}")
    if problems.issues or spec is None or dataset is None:
        raise SpecError(problems.issues)
    return _resolved(spec, dataset, weights, studies, file, profile)


def _check_dataset(raw: Any, problems: _Problems):
    from sweeplab.data import DATASETS, parse_dataset_options

    if not isinstance(raw, Mapping):
        return None  # reported by the schema
    try:
        return parse_dataset_options(raw)
    except KeyError:
        what = "missing" if raw.get("name") is None else f"unknown dataset {raw.get('name')!r}"
        problems.add("dataset.name", f"{what}; allowed: {', '.join(sorted(DATASETS))}")
    except ValidationError as error:
        for issue in pydantic_issues(error, problems.file, DATASETS[raw["name"]], "dataset"):
            message = issue.message
            if "does not exist" in message and not Path(str(raw.get(issue.key.split(".")[-1], "/"))).is_absolute():
                message += f" (relative paths resolve against the current directory, {Path.cwd()})"
            problems.add(issue.key, message)
    return None


def _check_weights(model: ModelSpec | None, file: Path, problems: _Problems) -> str | None:
    if model is None or model.weights is None:
        return None
    found, looked = _find(model.weights, file.parent)
    if found is None:
        problems.add("model.weights", f"file not found: {model.weights} (looked at {', '.join(map(str, looked))}); "
                     "give a local state-dict file or null")
        return None
    return str(found)


def _check_method(name, raw, search, scheduler, dataset, model: ModelSpec | None, file: Path,
                  problems: _Problems) -> Study | None:
    key = f"methods.{name}"
    if name not in catalog.entries():
        problems.add(key, f"unknown method {name!r}; known methods: {', '.join(catalog.names())}")
        return None
    entry, spec = catalog.entry(name), lenient(MethodSpec, raw)
    if spec is None:
        return None
    try:
        method_cls = entry.load()
    except Exception as error:  # an import error inside the method's module
        problems.add(key, f"cannot import {entry.target}: {type(error).__name__}: {error}")
        return None
    if dataset is not None and dataset.task != entry.task:
        problems.add(key, f"method {name!r} is a {entry.task} method but dataset {dataset.name!r} is {dataset.task}")
    n_before = len(problems.issues)
    space, space_file = _method_space(name, spec, entry, method_cls, file, problems)
    objective = _objective(name, spec, search, entry, problems, method_cls.loss_parts) if search is not None else None
    if space is not None and scheduler is not None and SCHEDULERS[scheduler.name].grace_period:
        _check_grace_period(name, space, scheduler.grace_period, method_cls, problems)
    _check_metric_names(name, entry, method_cls, dataset.extra_tests if dataset is not None else (), problems)
    if space is not None and dataset is not None and dataset.num_classes:
        _check_smallest_batch(name, space, method_cls, dataset.num_classes, problems)
    if space is not None and dataset is not None:
        _check_data_fit(name, space, method_cls, (model or ModelSpec()).backbone, dataset, problems)
    if len(problems.issues) > n_before or objective is None or space_file is None:
        return None
    return Study(name, entry, spec.num_samples, space, space_file, *objective)


def _method_space(name, spec: MethodSpec, entry: catalog.MethodEntry, method_cls, file: Path, problems: _Problems):
    """The method's search-space file with its overrides merged in (per top-level key), checked."""
    key = f"methods.{name}"
    if spec.search_space is None:
        path, looked = (entry.search_space if entry.search_space.is_file() else None), [entry.search_space]
    else:
        path, looked = _find(spec.search_space, file.parent)
    if path is None:
        problems.add(f"{key}.search_space", f"search-space file not found (looked at {', '.join(map(str, looked))}); "
                     "give a path relative to the sweep file or the current directory, or null for "
                     f"search_spaces/{name}.yaml")
        return None, None
    raw, issues = read_yaml(path)
    shown = _shown(path)
    problems.extend([Issue(shown, i.key, i.message) for i in issues])
    if issues:
        return None, None
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        problems.add("(top level)", f"not a search space (named by {key}.search_space): expected a mapping of "
                     f"hyperparameter name -> spec, found {_kind(raw)}", shown)
        return None, None
    n_before = len(problems.issues)
    space: dict[str, Param] = {}
    where: dict[str, tuple[str | None, str]] = {}  # name -> (file or None for the sweep file, dotted key)
    pieces = [(shown, k, v, "") for k, v in raw.items() if k not in spec.overrides]
    pieces += [(None, k, v, f"{key}.overrides") for k, v in spec.overrides.items()]
    for source, top, value, at in pieces:  # one top-level key at a time: overrides replace whole keys
        part, locations, issues = collect_space({top: value}, source or problems.file, at=at)
        problems.extend(issues)
        for param_name, param in part.items():
            if param_name in space:
                problems.add(locations[param_name], f"hyperparameter {param_name!r} is defined twice", source)
            space[param_name] = param
            where[param_name] = (source, locations[param_name])
    decls = declarations(method_cls)
    for param_name, param in space.items():
        source, at = where[param_name]
        if param_name not in decls:
            problems.add(at, f"unknown hyperparameter {brief(param_name)} for method {name!r}; allowed: "
                         f"{', '.join(sorted(decls))}", source)
        else:
            problem = _declared_problem(param_name, decls[param_name], param)
            if problem:
                problems.add(at, problem, source)
    return space, (path if len(problems.issues) == n_before else None)


def _declared_problem(name: str, decl: Hyperparameter, param: Param) -> str | None:
    """Whether a search-space entry can only give values its declaration allows: a fixed value,
    every choice, or both ends of a range (a whole-number option is searched as type int)."""
    if param.kind in ("float", "int"):
        if decl.categorical:
            return (f"{name!r} is categorical; write a value or {{type: categorical, choices: [...]}} from: "
                    f"{decl.allowed()}")
        if decl.whole and param.kind == "float":
            return f"{name} must be a whole number (type: int, or whole values)"
        values = [param.low, param.high]
    else:
        values = list(param.choices) if param.kind == "categorical" else [param.value]
    for value in values:
        problem = decl.problem(value)
        if problem:
            return f"{name}: {problem}; allowed: {decl.allowed()}"
    return None


def _smallest_batch_size(space: dict[str, Param], method_cls) -> float | None:
    """The smallest batch_size a study's trials may train with (its space's, else the default)."""
    param = space.get("batch_size")
    if param is None:
        values = [all_hyperparameters(method_cls)["batch_size"]]
    else:
        values = {"fixed": [param.value], "categorical": list(param.choices)}.get(param.kind, [param.low])
    return min((v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)), default=None)


def _check_smallest_batch(name: str, space: dict[str, Param], method_cls, num_classes: int, problems: _Problems) -> None:
    smallest, why = method_cls.smallest_batch(num_classes)
    low = _smallest_batch_size(space, method_cls)
    if low is not None and low < smallest:
        problems.add(f"methods.{name}", f"method {name!r} may train with batch_size {low:g}, below {smallest} for "
                     f"the dataset's {num_classes} classes: {why}; allowed: a batch_size of at least {smallest}")


def _space_values(param: Param | None, default: Any) -> list[Any]:
    """The values a search-space entry can give that bound the rest: a fixed value, every choice,
    both ends of a range; the default where the space leaves the hyperparameter out."""
    if param is None:
        return [default]
    return {"fixed": [param.value], "categorical": list(param.choices)}.get(param.kind, [param.low, param.high])


def _check_data_fit(name: str, space: dict[str, Param], method_cls, backbone: str, dataset, problems: _Problems) -> None:
    """Options that depend on the data (a patch on the feature map, a count of the classes) must fit
    what the dataset's options fix (``Method.data_problem``)."""
    from sweeplab.models import feature_map_size

    shape = dataset.input_shape
    feature_map = feature_map_size(backbone, shape) if shape and not method_cls.global_pool else None
    facts = DataFacts(dataset.num_classes, feature_map)
    if facts == DataFacts():
        return
    where = []
    if facts.num_classes:
        where.append(f"the dataset's {facts.num_classes} training classes")
    if feature_map:
        where.append(f"backbone {backbone!r}'s last feature map, {feature_map[0]}x{feature_map[1]} for the "
                     f"dataset's {'x'.join(map(str, shape))} input")
    for param_name, default in all_hyperparameters(method_cls).items():
        for value in _space_values(space.get(param_name), default):
            problem = method_cls.data_problem(param_name, value, facts)
            if problem:
                problems.add(f"methods.{name}", f"{param_name} {brief(value)} does not fit {' and '.join(where)}: "
                             f"{problem}")
                break


def _check_metric_names(name: str, entry: catalog.MethodEntry, method_cls, extra_tests: tuple[str, ...],
                        problems: _Problems) -> None:
    """Every metric name the method reports must be one MLflow accepts: a refused name would
    leave that epoch's metrics out of MLflow (``sweeplab.tracking`` drops a refused batch)."""
    family = task_family(entry.task)
    names = [*family.reported_metrics(extra_tests), *(f"train/loss/{p}" for p in method_cls.loss_parts),
             *(f"train/{m}" for m in method_cls.epoch_metrics)]
    for metric in names:
        problem = metric_name_problem(metric)
        if problem:
            problems.add(f"methods.{name}", f"method {name!r} reports metric {brief(metric)}, which MLflow refuses: "
                         f"{problem}; rename it in the method or its task family")


def _objective(name, spec: MethodSpec, search: SearchSpec, entry: catalog.MethodEntry, problems: _Problems,
               loss_parts: tuple[str, ...] = ()):
    """The method's metric and mode: the method's own, else the sweep's, else the registry's.
    A mode pairs with the metric of its level: a method's own metric takes the method's mode."""
    if spec.metric is not None:
        metric, metric_key, mode = spec.metric, f"methods.{name}.metric", spec.mode
    elif search.metric is not None:
        metric, metric_key = search.metric, "search.metric"
        mode = spec.mode if spec.mode is not None else search.mode
    else:
        metric, metric_key = entry.metric, f"methods.{name}"
        mode = spec.mode if spec.mode is not None else search.mode
    mode_key = f"methods.{name}.mode" if spec.mode is not None or spec.metric is not None else "search.mode"
    if mode is None and metric == entry.metric:
        mode = entry.mode
    n_before = len(problems.issues)
    # an objective must be reported every epoch (schedulers and the searcher follow it)
    allowed = task_family(entry.task).epoch_metrics() + tuple(f"train/loss/{p}" for p in loss_parts)
    for m in metric if isinstance(metric, list) else [metric]:
        if m not in allowed:
            problems.add(metric_key, f"{m!r} is not reported every epoch by method {name!r} ({entry.task}); "
                         f"allowed: {', '.join(allowed)}")
    if mode is None:
        problems.add(mode_key, f"required: metric {brief(metric)} is not the registry's {entry.metric!r}, so say "
                     "whether to maximise or minimise it; allowed: max, min")
    elif isinstance(metric, list) != isinstance(mode, list) or (isinstance(metric, list) and len(metric) != len(mode)):
        problems.add(mode_key, f"mode {brief(mode)} does not match metric {brief(metric)}: give 'max'/'min' for one "
                     "metric, or a list of them of the same length for a list of metrics")
    return (metric, mode) if len(problems.issues) == n_before else None


def _check_workers(raw: Any, resources: ResourcesSpec | None, studies: list[Study], problems: _Problems) -> None:
    """Multi-worker trials: one GPU or none per worker, and a batch to split between the workers."""
    if resources is None or resources.workers == 1:
        return
    raw = raw if isinstance(raw, Mapping) else {}
    if resources.gpus not in (0, 1):
        key = "resources.gpus_per_worker" if raw.get("gpus_per_worker") is not None else "resources.gpus"
        problems.add(key, f"{resources.gpus:g}: with workers > 1 each worker is one data-parallel rank on one GPU "
                     "(NCCL cannot share a GPU between ranks); allowed: 0 or 1")
    for study in studies:
        smallest = _smallest_batch_size(study.space, study.entry.load())
        if smallest is not None and smallest < resources.workers:
            problems.add("resources.workers", f"{resources.workers} workers share each batch, but method "
                         f"{study.method!r} may train with batch_size {smallest:g}; allowed: a batch_size of at "
                         "least the number of workers (batch_size is the global batch of a step)")


def _check_grace_period(name, space: dict[str, Param], grace: int, method_cls, problems: _Problems) -> None:
    param = space.get("epochs")
    if param is None:
        most, where = all_hyperparameters(method_cls)["epochs"], "the default epochs"
    else:
        try:
            most, where = upper_bound(param), "from epochs in its search space"
        except TypeError:
            problems.add("scheduler.grace_period", f"cannot compare with method {name!r}'s epochs, which is not a "
                         f"whole number: {param}")
            return
    if grace > most:
        problems.add("scheduler.grace_period", f"{grace} exceeds the epochs method {name!r} trains ({most}, "
                     f"{where}); allowed: 1 to {most}")


# -- the resolved document ---------------------------------------------------------------------------


def _resolved(spec: SweepSpec, dataset, weights: str | None, studies: list[Study], file: Path, profile) -> Sweep:
    doc = spec.model_dump(mode="json")
    doc["dataset"] = dataset.model_dump(mode="json")
    doc["model"]["weights"] = weights
    for study in studies:
        method = doc["methods"][study.method]
        method.update(search_space=str(study.space_file), metric=study.metric, mode=study.mode)
    doc["tracking"]["uri"] = resolve_tracking_uri(spec.tracking.uri)
    doc["tracking"]["experiment"] = spec.tracking.experiment or spec.name
    if not URI_SCHEME.match(spec.storage.path):
        doc["storage"]["path"] = str(Path(spec.storage.path).expanduser().resolve())
    final = SweepSpec.model_validate(doc)
    sections = {name: getattr(final, name) for name in SweepSpec.model_fields}
    return Sweep(**sections, document=doc, studies=studies, file=file, profile=profile)
