"""The sweep file's schema (pydantic models, ``extra="forbid"``) and pydantic errors turned into ``Issue``s.

The models check each key on its own (types, ranges, allowed names); ``sweeplab.spec``
adds the checks that span keys and files (methods, search spaces, metrics).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Mapping, Sequence, get_args, get_origin

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from sweeplab import catalog, search
from sweeplab.models import BACKBONES
from sweeplab.precision import PRECISIONS
from sweeplab.spaces import Issue, brief

SAMPLERS = tuple(search.SAMPLERS)  # the names; what each takes is in sweeplab.search
SCHEDULERS = tuple(search.SCHEDULERS)
MODES = ("max", "min")
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]  (what each means: sweeplab.precision)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# -- schema ---------------------------------------------------------------------------


def none_to_empty(value: Any) -> Any:
    return {} if value is None else value


def _metric(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, list) and value and all(isinstance(m, str) and m for m in value):
        return value
    raise ValueError(f"must be a metric name or a non-empty list of metric names, got {brief(value)}")


def _mode(value: Any) -> Any:
    if value is None or value in MODES:
        return value
    if isinstance(value, list) and value and all(m in MODES for m in value):
        return value
    raise ValueError(f"must be 'max' or 'min' (or a list of them, one per metric), got {brief(value)}")


Metric = Annotated[Any, AfterValidator(_metric)]
Mode = Annotated[Any, AfterValidator(_mode)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Section):
    backbone: str = "small_cnn"
    weights: str | None = None  # a local state-dict file
    # channels-last memory format (NHWC) of the model and its image batches; None: on CUDA, off on CPU
    channels_last: bool | None = None

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value not in BACKBONES:
            raise ValueError(f"unknown backbone {brief(value)}; allowed: {', '.join(BACKBONES)}")
        return value


class MethodSpec(_Section):
    num_samples: int = Field(8, ge=1)
    search_space: str | None = None  # None: the registry's search_spaces/<method>.yaml
    overrides: Annotated[dict[str, Any], BeforeValidator(none_to_empty)] = {}
    metric: Metric = None
    mode: Mode = None
    precision: Precision | None = None  # None: the sweep's ``precision``


class SearchSpec(_Section):
    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    metric: Metric = None  # None: each method's registry metric
    mode: Mode = None
    max_concurrent: int = Field(2, ge=1)
    n_startup_trials: int | None = Field(None, ge=0)


class SchedulerSpec(_Section):
    name: Literal[SCHEDULERS] = "asha"  # type: ignore[valid-type]
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class ResourcesSpec(_Section):
    """Per trial: ``workers`` processes (with more than one, data-parallel on Ray Train), each
    with ``cpus`` CPUs and ``gpus`` GPUs. ``cpus_per_worker`` / ``gpus_per_worker`` are the same
    numbers under explicit names and win over ``cpus`` / ``gpus`` when given; after validation
    ``cpus`` / ``gpus`` hold what each worker gets."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1)
    cpus_per_worker: float | None = Field(None, gt=0)
    gpus_per_worker: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _per_worker(self) -> "ResourcesSpec":
        if self.cpus_per_worker is not None:
            self.cpus = self.cpus_per_worker
        if self.gpus_per_worker is not None:
            self.gpus = self.gpus_per_worker
        return self


TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


class TrackingSpec(_Section):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str | None = None  # None: the sweep's name

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme = value.split("://", 1)[0].split("+", 1)[0] if "://" in value else ""
        if scheme not in TRACKING_SCHEMES:
            shown = brief(re.sub(r"//[^/@]*@", "//***@", value))  # a user:password@ is not repeated
            raise ValueError(
                f"{shown} is not a tracking URI MLflow accepts here; allowed: sqlite:///path/mlflow.db, "
                "http(s)://server:port, or a database URI (postgresql://, mysql://, mssql://); MLflow 3 "
                "refuses plain folders (file stores)"
            )
        return value


class StorageSpec(_Section):
    # a folder (local, or a shared filesystem on a cluster) or an object-store URI (s3://bucket/prefix, ...)
    path: str = Field("sweeplab_results", min_length=1)
    # an object store: seconds between Tune's snapshots of the experiment (uploaded with the Optuna
    # journal); what a driver killed without warning may lose (a folder is snapshotted every second)
    sync_period: int = Field(10, ge=1)

    @field_validator("path")
    @classmethod
    def _folder_or_object_store(cls, value: str) -> str:
        from sweeplab.storage import check_storage_uri, is_uri

        problem = check_storage_uri(value) if is_uri(value) else ""
        if problem:
            raise ValueError(problem)
        return value


class FailureSpec(_Section):
    max_failures: int = Field(1, ge=0)


class CheckpointSpec(_Section):
    """Checkpoints kept per trial: its latest ``keep`` (each holds the best epoch's weights too,
    ``sweeplab.checkpoints``); ``all``: every epoch's."""

    keep: Any = 1

    @field_validator("keep")
    @classmethod
    def _count_or_all(cls, value: Any) -> Any:
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"must be a whole number >= 1 or 'all', got {brief(value)}")

    @property
    def kept(self) -> int | None:
        """``keep`` as Ray takes it (None: all)."""
        return None if self.keep == "all" else self.keep


class ConfirmSpec(_Section):
    """Re-run each method's selected configurations on new seeds when the search ends."""

    seeds: int = Field(3, ge=2, le=100)  # new seeds per configuration (the same seeds for every method)
    top: int = Field(1, ge=1, le=20)  # configurations per method, best first by the objective


SECTIONS = {"model": ModelSpec, "search": SearchSpec, "scheduler": SchedulerSpec, "resources": ResourcesSpec,
            "tracking": TrackingSpec, "storage": StorageSpec, "failure": FailureSpec, "checkpoint": CheckpointSpec}


class SweepSpec(_Section):
    name: str
    description: str = ""
    seed: int = Field(0, ge=0, le=2**31 - 1)
    dataset: dict[str, Any]
    model: ModelSpec = Field(default_factory=ModelSpec)
    methods: dict[str, Annotated[MethodSpec, BeforeValidator(none_to_empty)]] = Field(min_length=1)
    search: SearchSpec = Field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    failure: FailureSpec = Field(default_factory=FailureSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    # training precision of every method (``methods.<m>.precision`` overrides): auto | fp32 | bf16 | fp16
    precision: Precision = "auto"
    confirm: ConfirmSpec | None = None  # None: no confirmation runs (``sweeplab confirm`` adds them later)
    baseline: str | None = None  # the method the report compares the others with (None: the sweep's baseline method)

    @field_validator("confirm", mode="before")
    @classmethod
    def _confirm_defaults(cls, value: Any) -> Any:
        return {} if value is True else value

    @field_validator(*SECTIONS, mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return none_to_empty(value)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError("must start with a letter or digit and use only letters, digits, '_', '.', '-' "
                             f"(it names the MLflow experiment and the storage folder), got {brief(value)}")
        return value


# -- pydantic errors -> issues --------------------------------------------------------------


def _model_at(root: type[BaseModel], loc: Sequence) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc`` under ``root`` (None if not a model)."""
    t: Any = root
    for part in loc:
        while get_origin(t) is Annotated:
            t = get_args(t)[0]
        if isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
            t = t.model_fields[part].annotation
        elif get_origin(t) is dict:
            t = get_args(t)[1]
        else:
            return None
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _key(prefix: str, loc: Sequence) -> str:
    key = prefix
    for part in loc:
        key = f"{key}[{part}]" if isinstance(part, int) else (f"{key}.{part}" if key else str(part))
    return key or "(top level)"


def _allowed(model: type[BaseModel] | None) -> str:
    names = list(model.model_fields) if model else []
    if model is SweepSpec:
        names.append("profiles")
    return ", ".join(names)


def _required_hint(loc: tuple) -> str:
    if loc == ("name",):
        return "; the sweep's name, e.g. name: noisy_digits (names the MLflow experiment and the storage folder)"
    if loc == ("dataset",):
        return "; e.g. dataset: {name: noisy_digits} (the built-in data) or {name: image_folder, root: DIR}"
    if loc == ("methods",):
        return f"; e.g. methods: {{ce: {{num_samples: 8}}}}; known methods: {', '.join(catalog.names())}"
    return ""


def _pydantic_message(error: dict, root: type[BaseModel]) -> str:
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    loc = error["loc"]
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}; allowed: {_allowed(_model_at(root, loc[:-1]))}"
    if kind == "missing":
        return "required key is missing" + _required_hint(tuple(loc))
    if kind in ("model_type", "dict_type"):
        model = _model_at(root, loc)
        return f"must be a mapping{f' with keys: {_allowed(model)}' if model else ''}; got {brief(given)}"
    if kind == "literal_error":
        return f"{brief(given)} is not allowed; allowed: {ctx['expected']}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {brief(given)}"
    if kind.startswith("int_"):
        return f"must be a whole number, got {brief(given)}"
    if kind.startswith("float_"):
        return f"must be a number, got {brief(given)}"
    if kind == "string_type":
        return f"must be text, got {brief(given)}"
    if kind == "too_short" and loc == ("methods",):
        return f"name at least one method; known methods: {', '.join(catalog.names())}"
    return f"{error['msg']}; got {brief(given)}"


def pydantic_issues(error: ValidationError, file: str, root: type[BaseModel], prefix: str = "") -> list[Issue]:
    return [Issue(file, _key(prefix, e["loc"]), _pydantic_message(e, root)) for e in error.errors()]


def lenient(model: type[BaseModel], raw: Any) -> Any:
    """``raw`` validated for the semantic checks, with keys that fail left out (their defaults used);
    None if that is not possible. The failures are reported by the whole document's validation."""
    raw = none_to_empty(raw)
    if not isinstance(raw, Mapping):
        return None
    raw = dict(raw)
    while True:
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            bad = {e["loc"][0] for e in error.errors() if e["loc"]} & raw.keys()
            if not bad:
                return None
            for key in bad:
                del raw[key]
