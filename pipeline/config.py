"""Evaluation configs (configs/*.yaml): load, validate, build the head.

YAML is read with yaml.safe_load, so a config holds data only; the one piece
of code a config can name is `head.loss_fn`, which is imported. Every problem
raises ConfigError naming the field, before any pipeline is built.
"""

import dataclasses

import yaml
from apache_beam.io.filesystems import FileSystems

from head import BinaryClassHead

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
INVALID_ROWS_DEFAULTS = {"policy": "fail", "max_fraction": 0.0}
POLICIES = ("fail", "reject")
TOP_LEVEL = ("head", "columns", "invalid_rows")


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    head: dict
    columns: dict
    invalid_rows: dict = dataclasses.field(default_factory=lambda: dict(INVALID_ROWS_DEFAULTS))

    @property
    def rejects_rows(self):
        """True when bad rows are set aside instead of stopping the job."""
        return self.invalid_rows["policy"] == "reject"

    @property
    def weight_column(self):
        return self.head["weight_column"]

    def build_head(self):
        return BinaryClassHead(**self.head)

    def as_dict(self):
        return {
            "head": dict(self.head),
            "columns": dict(self.columns),
            "invalid_rows": dict(self.invalid_rows),
        }


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

    config = EvalConfig(head=head, columns=columns, invalid_rows=invalid_rows)
    try:
        config.build_head()
    except ValueError as e:
        raise ConfigError(f"head.{_field_of(str(e))}: {e}") from e
    return config


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
