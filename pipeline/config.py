"""Evaluation configs (configs/*.yaml): load, validate, build the head.

YAML is read with yaml.safe_load, so a config holds data only; the one piece
of code a config can name is `head.loss_fn`, which is imported. Every problem
raises ConfigError naming the field, before any pipeline is built.
"""

import dataclasses
import math

import yaml
from apache_beam.io.filesystems import FileSystems

from head import BinaryClassHead
from head.intervals import METHODS, IntervalSpec
from head.slicing import SliceSpec
from pipeline.errors import UsageError

HEAD_DEFAULTS = {
    "weight_column": None,
    "thresholds": [],
    "label_vocabulary": None,
    "loss_reduction": "sum_over_batch_size",
    "loss_fn": None,
    "name": None,
    "regularization_losses": [],
}
COLUMN_DEFAULTS = {"logits": "logits", "label": "label", "weight": None}
# max_fraction 1.0: under `reject` every rejected row is set aside and counted,
# and the run fails only when asked to (SPEC §9).
INVALID_ROWS_DEFAULTS = {"policy": "fail", "max_fraction": 1.0}
POLICIES = ("fail", "reject")
SLICING_DEFAULTS = {"slicing_specs": None, "min_slice_size": 1, "max_slices": 10000}
MODEL_KEYS = ("name", "logits", "is_baseline")
SLICING_SPEC_KEYS = ("feature_keys", "feature_values", "bucket_boundaries")
INTERVAL_DEFAULTS = {"method": "jackknife", "num_samples": 20, "level": 0.95, "seed": 0}
# What a run writes besides metrics.json: plots.json, report.html (+ plots.png), tfma/.
OUTPUTS_DEFAULTS = {"report": True, "plots": True, "tfma": False, "max_plot_slices": 1000}
PLOT_OUTPUTS = ("report", "plots", "tfma")
TOP_LEVEL = ("head", "columns", "models", *SLICING_DEFAULTS, "confidence_intervals", "outputs", "invalid_rows",
             "validation")


class ConfigError(UsageError):
    """A config field that cannot be used: the message names the field."""


@dataclasses.dataclass(frozen=True)
class Model:
    """One model's scores: evaluated with the same head, labels and weights."""

    name: str
    logits: str  # the column of its logits
    is_baseline: bool = False


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    head: dict
    columns: dict
    models: tuple = ()  # of Model; () means one model named "" scored by columns.logits
    slicing_specs: tuple = (SliceSpec(),)  # the overall slice first, always
    min_slice_size: int = 1
    max_slices: int = 10000
    confidence_intervals: IntervalSpec = None  # None: no intervals
    invalid_rows: dict = dataclasses.field(default_factory=lambda: dict(INVALID_ROWS_DEFAULTS))
    outputs: dict = dataclasses.field(default_factory=lambda: dict(OUTPUTS_DEFAULTS))
    validation: object = None  # pipeline.validation.ValidationConfig; parse_config always sets it

    @property
    def writes_plots(self):
        """Whether any output shows plots (and so the states keep calibration sums)."""
        return any(self.outputs[key] for key in PLOT_OUTPUTS)

    @property
    def rejects_rows(self):
        """True when bad rows are set aside instead of stopping the job."""
        return self.invalid_rows["policy"] == "reject"

    @property
    def weight_column(self):
        return self.head["weight_column"]

    @property
    def evaluated_models(self):
        """The models to evaluate: the configured ones, or one named "" on columns.logits."""
        return self.models or (Model("", self.columns["logits"]),)

    @property
    def baseline(self):
        """The index of the baseline model, or None."""
        return next((i for i, m in enumerate(self.evaluated_models) if m.is_baseline), None)

    def build_head(self):
        return BinaryClassHead(**self.head)

    def as_dict(self):
        return {
            "head": dict(self.head),
            "columns": dict(self.columns),
            "models": [dataclasses.asdict(m) for m in self.models],
            "slicing_specs": [_spec_as_dict(s) for s in self.slicing_specs],
            "min_slice_size": self.min_slice_size,
            "max_slices": self.max_slices,
            "confidence_intervals": self.confidence_intervals and self.confidence_intervals.as_dict(),
            "outputs": dict(self.outputs),
            "invalid_rows": dict(self.invalid_rows),
            "validation": self.validation.as_dict() if self.validation is not None else None,
        }


def _spec_as_dict(spec):
    out = {}
    if spec.feature_keys:
        out["feature_keys"] = list(spec.feature_keys)
    if spec.feature_values:
        out["feature_values"] = dict(spec.feature_values)
    if spec.bucket_boundaries:
        out["bucket_boundaries"] = {c: list(b) for c, b in spec.bucket_boundaries}
    return out


def _check_keys(section, allowed, where):
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(section).__name__}")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(allowed)})"
        )


def _check_type(value, types, field, what):
    if value is not None and not isinstance(value, types):
        raise ConfigError(f"{field}: must be {what}, got {value!r}")


def parse_config(raw):
    """Validates a config mapping (as loaded from YAML) into an EvalConfig."""
    raw = {} if raw is None else raw
    _check_keys(raw, TOP_LEVEL, "config")
    head = dict(HEAD_DEFAULTS)
    head_raw = raw.get("head") or {}
    _check_keys(head_raw, tuple(HEAD_DEFAULTS), "head")
    head.update(head_raw)
    columns = dict(COLUMN_DEFAULTS)
    columns_raw = raw.get("columns") or {}
    _check_keys(columns_raw, tuple(COLUMN_DEFAULTS), "columns")
    columns.update(columns_raw)

    for key in ("weight_column", "loss_fn", "name"):
        _check_type(head[key], str, f"head.{key}", "a string or null")
    _check_type(head["loss_reduction"], str, "head.loss_reduction", "a string")
    for key in ("thresholds", "regularization_losses"):
        value = head[key] if head[key] is not None else []
        _check_type(value, list, f"head.{key}", "a list of numbers")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ConfigError(f"head.{key}: must be a list of numbers, got {item!r}")
        head[key] = value
    vocabulary = head["label_vocabulary"]
    _check_type(vocabulary, list, "head.label_vocabulary", "a list of strings or null")
    if vocabulary is not None:
        if not all(isinstance(v, str) for v in vocabulary):
            raise ConfigError(f"head.label_vocabulary: must be a list of strings, got {vocabulary!r}")
    for key in ("logits", "label", "weight"):
        _check_type(columns[key], str, f"columns.{key}", "a column name")
    if not columns["logits"] or not columns["label"]:
        raise ConfigError("columns: logits and label column names are required")
    # columns.weight is another spelling of the head's weight_column.
    if columns["weight"] and head["weight_column"] and columns["weight"] != head["weight_column"]:
        raise ConfigError(
            f"columns.weight: {columns['weight']!r} differs from head.weight_column "
            f"{head['weight_column']!r}"
        )
    head["weight_column"] = head["weight_column"] or columns["weight"]
    columns["weight"] = head["weight_column"]

    invalid_rows = dict(INVALID_ROWS_DEFAULTS)
    invalid_raw = raw.get("invalid_rows") or {}
    _check_keys(invalid_raw, tuple(INVALID_ROWS_DEFAULTS), "invalid_rows")
    invalid_rows.update(invalid_raw)
    if invalid_rows["policy"] not in POLICIES:
        raise ConfigError(
            f"invalid_rows.policy: must be one of {', '.join(POLICIES)}, got {invalid_rows['policy']!r}"
        )
    fraction = invalid_rows["max_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(f"invalid_rows.max_fraction: must be a number in [0, 1], got {fraction!r}")
    invalid_rows["max_fraction"] = float(fraction)

    outputs = dict(OUTPUTS_DEFAULTS)
    outputs_raw = raw.get("outputs") or {}
    _check_keys(outputs_raw, tuple(OUTPUTS_DEFAULTS), "outputs")
    for key, value in outputs_raw.items():
        if key in PLOT_OUTPUTS and not isinstance(value, bool):
            raise ConfigError(f"outputs.{key}: must be true or false, got {value!r}")
        if key == "max_plot_slices" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"outputs.max_plot_slices: must be a whole number >= 0, got {value!r}")
    outputs.update(outputs_raw)

    models = _parse_models(raw.get("models"))
    specs = _parse_slicing_specs(raw.get("slicing_specs"))
    limits = {}
    for key in ("min_slice_size", "max_slices"):
        value = raw.get(key, SLICING_DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "min_slice_size" else 1):
            raise ConfigError(f"{key}: must be a whole number {'>= 0' if key == 'min_slice_size' else '>= 1'}, got {value!r}")
        limits[key] = value

    config = EvalConfig(head=head, columns=columns, models=models, slicing_specs=specs,
                        confidence_intervals=_parse_intervals(raw.get("confidence_intervals")),
                        invalid_rows=invalid_rows, outputs=outputs, **limits)
    try:
        head_keys = config.build_head().metric_keys()
    except ValueError as e:
        raise ConfigError(f"head.{_field_of(str(e))}: {e}") from e
    from pipeline.validation import parse_validation  # it builds on this module

    validation = parse_validation(raw.get("validation"), head_keys, specs,
                                  intervals_on=config.confidence_intervals is not None)
    return dataclasses.replace(config, validation=validation)


def _parse_models(raw):
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"models: must be a non-empty list of {{name, logits, is_baseline}}, got {raw!r}")
    models = []
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        _check_keys(item, MODEL_KEYS, where)
        for key in ("name", "logits"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ConfigError(f"{where}.{key}: must be a non-empty string, got {item.get(key)!r}")
        baseline = item.get("is_baseline", False)
        if not isinstance(baseline, bool):
            raise ConfigError(f"{where}.is_baseline: must be true or false, got {baseline!r}")
        models.append(Model(item["name"], item["logits"], baseline))
    names = [m.name for m in models]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"models: the name {duplicate!r} is used twice")
    if sum(m.is_baseline for m in models) > 1:
        raise ConfigError("models: at most one model can have is_baseline: true")
    if all(m.is_baseline for m in models):
        raise ConfigError("models: every model is the baseline; nothing to evaluate against it")
    return tuple(models)


def _is_scalar(value):
    return isinstance(value, (str, int, float, bool))


def _parse_slicing_specs(raw):
    """SliceSpecs, the overall slice first (once, whether or not `{}` is listed)."""
    if raw is None:
        return (SliceSpec(),)
    if not isinstance(raw, list):
        raise ConfigError(f"slicing_specs: must be a list of slicing specs, got {raw!r}")
    specs = [SliceSpec()]
    for i, item in enumerate(raw):
        where = f"slicing_specs[{i}]"
        item = {} if item is None else item
        _check_keys(item, SLICING_SPEC_KEYS, where)
        keys = item.get("feature_keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError(f"{where}.feature_keys: must be a list of column names, got {keys!r}")
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{where}.feature_keys: a column is listed twice: {keys!r}")
        values = item.get("feature_values") or {}
        if not isinstance(values, dict) or not all(isinstance(k, str) and _is_scalar(v) for k, v in values.items()):
            raise ConfigError(f"{where}.feature_values: must map column names to single values, got {values!r}")
        boundaries = item.get("bucket_boundaries") or {}
        if not isinstance(boundaries, dict):
            raise ConfigError(f"{where}.bucket_boundaries: must map column names to lists of numbers")
        for column, bounds in boundaries.items():
            field = f"{where}.bucket_boundaries.{column}"
            if column not in keys:
                raise ConfigError(f"{field}: {column!r} is not in feature_keys")
            if not isinstance(bounds, list) or not bounds or not all(
                    isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds):
                raise ConfigError(f"{field}: must be a non-empty list of finite numbers, got {bounds!r}")
            if any(a >= b for a, b in zip(bounds, bounds[1:])):
                raise ConfigError(f"{field}: must be strictly increasing, got {bounds!r}")
        spec = SliceSpec(
            feature_keys=tuple(keys),
            feature_values=tuple(sorted(values.items())),
            bucket_boundaries=tuple(sorted((c, tuple(b)) for c, b in boundaries.items())),
        )
        if spec in specs:
            if spec.is_overall:
                continue  # `{}`: the overall slice, which always comes first
            raise ConfigError(f"{where}: the same slicing spec is listed twice: {spec}")
        specs.append(spec)
    return tuple(specs)


def _parse_intervals(raw):
    if raw is None:
        return None
    _check_keys(raw, tuple(INTERVAL_DEFAULTS), "confidence_intervals")
    spec = dict(INTERVAL_DEFAULTS, **raw)
    if spec["method"] not in METHODS:
        raise ConfigError(f"confidence_intervals.method: must be one of {', '.join(METHODS)}, "
                          f"got {spec['method']!r}")
    samples = spec["num_samples"]
    if isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= 1000:
        raise ConfigError(f"confidence_intervals.num_samples: must be a whole number from 2 to 1000, got {samples!r}")
    level = spec["level"]
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ConfigError(f"confidence_intervals.level: must be a number in (0, 1), got {level!r}")
    seed = spec["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"confidence_intervals.seed: must be a whole number >= 0, got {seed!r}")
    return IntervalSpec(**spec)


def _field_of(message):
    for key in ("thresholds", "label_vocabulary", "loss_reduction", "loss_fn"):
        if key in message:
            return key
    return "arguments"


def load_config(path):
    """Reads a YAML config through Beam's FileSystems (local or gs://)."""
    try:
        with FileSystems.open(path) as f:
            raw = yaml.safe_load(f.read().decode("utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path}: not valid YAML: {e}") from e
    except (OSError, IOError) as e:
        raise ConfigError(f"config {path}: cannot be read: {e}") from e
    try:
        return parse_config(raw)
    except ConfigError as e:
        raise ConfigError(f"config {path}: {e}") from e
