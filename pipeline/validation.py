"""Gates for nightly jobs (SPEC §8): TFMA's MetricThreshold checked against metrics.json.

`parse_validation` turns the config's `validation:` section into a
ValidationConfig (config.parse_config calls it; every problem is a
ConfigError naming the field). `validate` checks a finished run's metrics.json
document against it and returns the verdict that is written as
validation.json; it runs in the pipeline's commit step, once the results are
known (output.commit), beside an empty BLESSED or NOT_BLESSED file.

Semantics, as TFMA's metrics_validator: a `value_threshold` passes when
lower_bound <= value <= upper_bound; a `change_threshold` compares with the
baseline's value (diff = value - baseline): `higher_is_better` passes when
diff >= absolute and diff / baseline >= relative, `lower_is_better` when
diff <= absolute and diff / baseline <= relative. With
`use_confidence_interval`, a change threshold fails only when the whole
confidence interval of the diff lies on the failing side. Thresholds apply to
every non-baseline model; `min_example_count` to every model's overall slice.
A missing slice, metric or baseline value fails its check, named, and so does
an undefined (null or NaN) value. Slices whose metrics were withheld (below
min_slice_size) are not gated; a slicing spec with no gated slice at all
fails, as TFMA's missing slices do.

Where TFMA differs, on purpose (SPEC §8): its unsliced thresholds apply to
every slice, ours (`thresholds`) to the overall slice; it fails every change
threshold whose baseline value is exactly 0 (the ratio is NaN even with no
`relative` bound), we fail only a `relative` bound then.
"""

import dataclasses
import json
import math
import re

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from head.slicing import _as_column_type
from pipeline.config import ConfigError, _check_keys, _parse_slicing_specs, _spec_as_dict
from pipeline.errors import UsageError

VALIDATION_FILE = "validation.json"
BLESSED, NOT_BLESSED = "BLESSED", "NOT_BLESSED"
DIRECTIONS = ("higher_is_better", "lower_is_better")
COUNT_KEYS = ("example_count", "weighted_example_count")
VALIDATION_KEYS = ("min_example_count", "thresholds", "per_slice_thresholds")
THRESHOLD_KEYS = ("value_threshold", "change_threshold")
VALUE_KEYS = ("lower_bound", "upper_bound")
CHANGE_KEYS = ("direction", "absolute", "relative", "use_confidence_interval")
PER_SLICE_KEYS = ("slicing_specs", "thresholds")
OVERALL_NAME = "Overall"


class BaselineError(UsageError):
    """A baseline that cannot be used (--baseline_run), found before the pipeline runs."""


# ---- the config --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricThreshold:
    """TFMA's MetricThreshold for one metric key: a value and/or a change threshold."""

    metric: str
    field: str  # where it is configured, e.g. validation.thresholds.auc
    lower_bound: float = None
    upper_bound: float = None
    direction: str = None  # None: no change threshold
    absolute: float = None
    relative: float = None
    use_confidence_interval: bool = False

    @property
    def has_value_threshold(self):
        return self.lower_bound is not None or self.upper_bound is not None

    @property
    def has_change_threshold(self):
        return self.direction is not None

    def value_threshold(self):
        """{"value_threshold": {...}} as configured (TFMA's form)."""
        bounds = {k: getattr(self, k) for k in VALUE_KEYS if getattr(self, k) is not None}
        return {"value_threshold": bounds}

    def change_threshold(self):
        """{"change_threshold": {...}} as configured (TFMA's form)."""
        change = {"direction": self.direction}
        change.update({k: getattr(self, k) for k in ("absolute", "relative") if getattr(self, k) is not None})
        if self.use_confidence_interval:
            change["use_confidence_interval"] = True
        return {"change_threshold": change}

    def as_dict(self):
        out = {}
        if self.has_value_threshold:
            out.update(self.value_threshold())
        if self.has_change_threshold:
            out.update(self.change_threshold())
        return out


@dataclasses.dataclass(frozen=True)
class SliceThresholds:
    """One entry of per_slice_thresholds: thresholds for the slices of some slicing specs."""

    specs: tuple  # of head.slicing.SliceSpec, each one of the config's slicing_specs
    thresholds: tuple  # of MetricThreshold
    field: str
    bucketed_columns: frozenset = frozenset()  # columns some config spec buckets


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    min_example_count: int = 1
    thresholds: tuple = ()  # of MetricThreshold, on each model's overall slice
    per_slice_thresholds: tuple = ()  # of SliceThresholds

    def all_thresholds(self):
        yield from self.thresholds
        for group in self.per_slice_thresholds:
            yield from group.thresholds

    def change_thresholds(self):
        return [t for t in self.all_thresholds() if t.has_change_threshold]

    def as_dict(self):
        return {
            "min_example_count": self.min_example_count,
            "thresholds": {t.metric: t.as_dict() for t in self.thresholds},
            "per_slice_thresholds": [
                {"slicing_specs": [_spec_as_dict(s) for s in group.specs],
                 "thresholds": {t.metric: t.as_dict() for t in group.thresholds}}
                for group in self.per_slice_thresholds
            ],
        }


def _number(value, field):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{field}: must be a finite number, got {value!r}")
    return float(value)


def parse_validation(raw, metric_keys, slicing_specs, intervals_on):
    """The `validation:` section -> ValidationConfig; ConfigError names the field.

    `metric_keys` are the head's keys (BinaryClassHead.metric_keys());
    `slicing_specs` the config's (per-slice thresholds must use one of them);
    `intervals_on`: whether the config computes confidence intervals.
    """
    if raw is None:
        return ValidationConfig()
    _check_keys(raw, VALIDATION_KEYS, "validation")
    count = raw.get("min_example_count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"validation.min_example_count: must be a whole number >= 0, got {count!r}")
    valid_keys = tuple(metric_keys) + COUNT_KEYS
    thresholds = _parse_thresholds(raw.get("thresholds") or {}, "validation.thresholds", valid_keys, intervals_on)
    groups_raw = raw.get("per_slice_thresholds") or []
    if not isinstance(groups_raw, list):
        raise ConfigError(f"validation.per_slice_thresholds: must be a list of "
                          f"{{slicing_specs, thresholds}}, got {groups_raw!r}")
    bucketed = frozenset(c for spec in slicing_specs for c, _ in spec.bucket_boundaries)
    groups = []
    for i, group in enumerate(groups_raw):
        field = f"validation.per_slice_thresholds[{i}]"
        _check_keys(group, PER_SLICE_KEYS, field)
        specs_raw = group.get("slicing_specs")
        if not isinstance(specs_raw, list) or not specs_raw:
            raise ConfigError(f"{field}.slicing_specs: must be a non-empty list of slicing specs, got {specs_raw!r}")
        specs = tuple(_parse_spec(item, f"{field}.slicing_specs[{j}]", slicing_specs)
                      for j, item in enumerate(specs_raw))
        if not group.get("thresholds"):
            raise ConfigError(f"{field}.thresholds: must map metric keys to thresholds, got {group.get('thresholds')!r}")
        groups.append(SliceThresholds(
            specs, _parse_thresholds(group["thresholds"], f"{field}.thresholds", valid_keys, intervals_on),
            field, bucketed))
    return ValidationConfig(count, thresholds, tuple(groups))


def _parse_spec(item, field, slicing_specs):
    """One slicing spec of per_slice_thresholds: parsed as the config's are, and one of them."""
    try:
        spec = _parse_slicing_specs([item])[-1]  # [overall, item], or [overall] for {}
    except ConfigError as e:
        raise ConfigError(re.sub(r"^slicing_specs\[0\]", field, str(e))) from None
    if spec not in slicing_specs:
        raise ConfigError(f"{field}: {spec} is not one of the config's slicing_specs (add it there "
                          "so its slices are computed)")
    return spec


def _parse_thresholds(raw, where, valid_keys, intervals_on):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must map metric keys to thresholds, got {raw!r}")
    parsed = []
    for metric, item in raw.items():
        field = f"{where}.{metric}"
        if metric not in valid_keys:
            raise ConfigError(f"{field}: unknown metric key (valid: {', '.join(valid_keys)})")
        _check_keys(item, THRESHOLD_KEYS, field)
        if not item:
            raise ConfigError(f"{field}: needs a value_threshold or a change_threshold")
        kwargs = {}
        if "value_threshold" in item:
            kwargs.update(_parse_value_threshold(item["value_threshold"], f"{field}.value_threshold"))
        if "change_threshold" in item:
            kwargs.update(_parse_change_threshold(item["change_threshold"], f"{field}.change_threshold",
                                                  metric, intervals_on))
        parsed.append(MetricThreshold(metric, field, **kwargs))
    return tuple(parsed)


def _parse_value_threshold(raw, field):
    _check_keys(raw, VALUE_KEYS, field)
    bounds = {k: _number(raw[k], f"{field}.{k}") for k in VALUE_KEYS if raw.get(k) is not None}
    if not bounds:
        raise ConfigError(f"{field}: needs lower_bound or upper_bound")
    if len(bounds) == 2 and bounds["lower_bound"] > bounds["upper_bound"]:
        raise ConfigError(f"{field}: lower_bound {bounds['lower_bound']:g} is above "
                          f"upper_bound {bounds['upper_bound']:g}")
    return bounds


def _parse_change_threshold(raw, field, metric, intervals_on):
    _check_keys(raw, CHANGE_KEYS, field)
    direction = raw.get("direction")
    if not isinstance(direction, str) or direction.lower() not in DIRECTIONS:
        raise ConfigError(f"{field}.direction: must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    change = {"direction": direction.lower()}
    change.update({k: _number(raw[k], f"{field}.{k}") for k in ("absolute", "relative") if raw.get(k) is not None})
    if len(change) == 1:
        raise ConfigError(f"{field}: needs absolute or relative")
    use_interval = raw.get("use_confidence_interval", False)
    if not isinstance(use_interval, bool):
        raise ConfigError(f"{field}.use_confidence_interval: must be true or false, got {use_interval!r}")
    if use_interval and not intervals_on:
        raise ConfigError(f"{field}.use_confidence_interval: needs confidence intervals "
                          "(a `confidence_intervals:` section in the config)")
    if use_interval and metric in COUNT_KEYS:
        raise ConfigError(f"{field}.use_confidence_interval: {metric} has no confidence interval")
    change["use_confidence_interval"] = use_interval
    return change


# ---- baselines -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExternalBaseline:
    """An earlier run's slices, matched by model name and slice_name.

    `source` says which run it is (for messages and validation.json);
    `entries` maps (model, slice_name) to that run's slice entry
    (metrics, example_count, weighted_example_count); `missing` says why
    there is none at all (e.g. a history without an earlier run).
    """

    source: str
    entries: dict
    missing: str = None

    @classmethod
    def from_document(cls, document, source):
        """From an earlier run's metrics.json document."""
        slices = document.get("slices") if isinstance(document, dict) else None
        if not isinstance(slices, list) or not all(
                isinstance(e, dict) and {"model", "slice_name", "metrics"} <= set(e) for e in slices):
            raise BaselineError(f"--baseline_run {source}: not a metrics.json of this pipeline "
                                "(no \"slices\" with model, slice_name and metrics)")
        run = document.get("run") or {}
        described = ", ".join(f"{k} {run[k]}" for k in ("started", "label") if run.get(k))
        return cls(f"{source} ({described})" if described else source,
                   {(e["model"], e["slice_name"]): _baseline_entry(e) for e in slices})


def _baseline_entry(entry):
    return {"metrics": entry.get("metrics"), **{k: entry.get(k) for k in COUNT_KEYS}}


def load_baseline_run(path):
    """--baseline_run PATH: an earlier run's metrics.json, local or gs:// (Beam FileSystems)."""
    try:
        with FileSystems.open(path) as f:
            document = json.loads(f.read().decode("utf-8"))
    except (OSError, IOError) as e:
        raise BaselineError(f"--baseline_run {path}: cannot be read: {e}") from None
    except ValueError as e:
        raise BaselineError(f"--baseline_run {path}: not valid JSON: {e}") from None
    return ExternalBaseline.from_document(document, path)


@dataclasses.dataclass(frozen=True)
class Gates:
    """What the commit step checks: the validation config, the models, the baseline.

    `baseline` is an ExternalBaseline, or None: then the model with
    is_baseline (if any) is the baseline, in the same document.
    """

    validation: ValidationConfig
    models: tuple  # of config.Model, all evaluated models
    baseline: object = None

    @classmethod
    def of(cls, config, baseline=None):
        """The gates of an EvalConfig; BaselineError when a change threshold has no baseline."""
        validation = config.validation or ValidationConfig()
        in_pass = config.baseline is not None
        if in_pass and baseline is not None:
            name = config.evaluated_models[config.baseline].name
            raise BaselineError(f"--baseline_run: the config already has a baseline model ({name!r}, "
                                "is_baseline: true); use one or the other")
        if not in_pass and baseline is None:
            changes = validation.change_thresholds()
            if changes:
                raise BaselineError(f"{changes[0].field}.change_threshold: no baseline to compare with: "
                                    "give a model is_baseline: true, or pass --baseline_run")
        return cls(validation, tuple(config.evaluated_models), baseline)

    def with_history_rows(self, rows):
        """These gates with their baseline read by the pipeline (a history's rows) resolved."""
        return dataclasses.replace(self, baseline=self.baseline.resolve(rows))

    @property
    def baseline_model(self):
        return next((m.name for m in self.models if m.is_baseline), None)

    def describe_baseline(self):
        if self.baseline is not None:
            return self.baseline.source
        name = self.baseline_model
        return None if name is None else f"model {name!r} (is_baseline)"


# ---- the checks ----------------------------------------------------------------------


def _num(x, digits=6):
    return f"{x:d}" if isinstance(x, int) and not isinstance(x, bool) else f"{x:.{digits}g}"


def _apart(x, bound):
    """x and a bound it is compared with, as text: 6 digits, more when those look equal."""
    for digits in (6, 9, 12, 17):
        texts = _num(x, digits), _num(bound, digits)
        if texts[0] != texts[1] or x == bound:
            break
    return texts


def _where(model, slice_name):
    return f"{model}, {slice_name}" if model else slice_name


def _matches(spec, slice_key, bucketed_columns):
    """Whether a metrics.json slice (its `slice` dict) is one of `spec`'s slices.

    The slice's columns are the spec's; its feature_values are the spec's
    (compared in the column's type, as slicing does); a bucketed column's
    value is one of the spec's ranges, and a column bucketed elsewhere holds
    a number (its raw value) in a spec that does not bucket it.
    """
    if set(slice_key) != set(spec.columns):
        return False
    for column, wanted in spec.feature_values:
        if not _same_value(slice_key[column], wanted):
            return False
    for column in spec.feature_keys:
        value, boundaries = slice_key[column], spec.boundaries(column)
        if boundaries is not None:
            if not _in_buckets(value, boundaries):
                return False
        elif column in bucketed_columns and isinstance(value, str):
            return False
    return True


_ARROW_TYPE_OF = ((bool, pa.bool_()), (int, pa.int64()), (float, pa.float64()), (str, pa.string()))


def _same_value(value, wanted):
    arrow_type = next((t for kind, t in _ARROW_TYPE_OF if isinstance(value, kind)), None)
    try:
        converted = _as_column_type(wanted, arrow_type)
    except (TypeError, ValueError):
        return False
    return type(converted) is type(value) and converted == value


def _in_buckets(value, boundaries):
    """'[18, 30)' is a range of boundaries (18, 30, 50); so are '[-inf, 18)' and '[50, inf)'."""
    match = re.fullmatch(r"\[(\S+), (\S+)\)", value) if isinstance(value, str) else None
    if match is None:
        return False
    try:
        lo, hi = float(match.group(1)), float(match.group(2))
    except ValueError:
        return False
    edges = (-math.inf, *boundaries, math.inf)
    return (lo, hi) in set(zip(edges, edges[1:]))


def _value_of(entry, metric):
    """(value, why it is missing): a metric or count of a slice entry."""
    if metric in COUNT_KEYS:
        value = entry.get(metric)
    else:
        metrics = entry.get("metrics")
        if metrics is None:
            return None, "metrics withheld (slice below min_slice_size)"
        if metric not in metrics:
            return None, f"no metric {metric}"
        value = metrics[metric]
    if value is None or math.isnan(value):  # NaN compares false: it would pass a change threshold
        return None, f"{metric} is undefined ({'null' if value is None else 'NaN'})"
    return value, None


class _Verdict:
    """Collects the checks of one run and their failures."""

    def __init__(self):
        self.checks = 0
        self.failures = []

    def check(self, model, entry, metric, threshold, problem, value=None, baseline=None):
        """Counts one check; records a failure when `problem` (its text after the metric) is set."""
        self.checks += 1
        if problem is None:
            return
        slice_name = entry["slice_name"] if entry else None
        self.failures.append({
            "model": model.name,
            "slice": entry["slice"] if entry else None,
            "slice_name": slice_name,
            "metric": metric,
            "value": value,
            "baseline": baseline,
            "threshold": threshold,
            "message": f"{_where(model.name, slice_name or '(no slice)')}: {metric} {problem}",
        })


def validate(document, gates):
    """The verdict on a metrics.json document: validation.json's content.

    {"validation_ok", "checks", "failures": [{model, slice, slice_name, metric,
    value, baseline, threshold, message}], "baseline": which baseline was used}.
    """
    verdict = _Verdict()
    validation = gates.validation
    overall = {e["model"]: e for e in document["slices"] if not e["slice"]}  # every model has one
    by_key = {(e["model"], e["slice_name"]): e for e in document["slices"]}  # for the baseline's slices
    for model in gates.models:
        count = overall[model.name]["example_count"]
        verdict.check(model, overall[model.name], "example_count",
                      {"min_example_count": validation.min_example_count},
                      f"{_num(count)} < min_example_count {validation.min_example_count}"
                      if count < validation.min_example_count else None, value=count)
    for model in gates.models:
        if model.is_baseline:
            continue  # not meaningful to gate the baseline on itself (as TFMA)
        entries = [e for e in document["slices"] if e["model"] == model.name]
        for threshold in validation.thresholds:
            _check_entry(verdict, gates, by_key, model, overall[model.name], threshold)
        for group in validation.per_slice_thresholds:
            for spec in group.specs:
                matched = [e for e in entries if _matches(spec, e["slice"], group.bucketed_columns)]
                gated = [e for e in matched if e["metrics"] is not None]
                for entry in gated:
                    for threshold in group.thresholds:
                        _check_entry(verdict, gates, by_key, model, entry, threshold)
                if not gated:  # as TFMA's missing slices
                    why = ("every slice is below min_slice_size" if matched
                           else "the data has no slice of it")
                    for threshold in group.thresholds:
                        verdict.check(model, None, threshold.metric, threshold.as_dict(),
                                      f"not checked: slicing spec {spec}: {why}")
    return {
        "validation_ok": not verdict.failures,
        "checks": verdict.checks,
        "failures": verdict.failures,
        "baseline": gates.describe_baseline(),
    }


def _check_entry(verdict, gates, by_key, model, entry, threshold):
    metric = threshold.metric
    value, missing = _value_of(entry, metric)
    if threshold.has_value_threshold:
        bounds = threshold.value_threshold()
        if missing:
            verdict.check(model, entry, metric, bounds, f"missing: {missing}")
        else:
            verdict.check(model, entry, metric, bounds, _value_problem(threshold, value), value=value)
    if threshold.has_change_threshold:
        change = threshold.change_threshold()
        base, base_missing = _baseline_value(gates, by_key, model, entry, metric)
        if missing:
            verdict.check(model, entry, metric, change, f"missing: {missing}", baseline=base)
        elif base_missing:
            verdict.check(model, entry, metric, change, f"{_num(value)}: no baseline value: {base_missing}",
                          value=value)
        else:
            interval, interval_missing = (None, None)
            if threshold.use_confidence_interval:
                interval, interval_missing = _diff_interval(gates, entry, metric, base)
            problem = (f"{_num(value)}: {interval_missing}" if interval_missing
                       else _change_problem(threshold, value, base, interval))
            verdict.check(model, entry, metric, change, problem, value=value, baseline=base)


def _value_problem(threshold, value):
    if threshold.lower_bound is not None and not value >= threshold.lower_bound:
        return "{} < lower_bound {}".format(*_apart(value, threshold.lower_bound))
    if threshold.upper_bound is not None and not value <= threshold.upper_bound:
        return "{} > upper_bound {}".format(*_apart(value, threshold.upper_bound))
    return None


def _baseline_value(gates, by_key, model, entry, metric):
    """(the baseline's value of `metric` on the entry's slice, why it is missing)."""
    slice_name = entry["slice_name"]
    if gates.baseline is not None:
        external = gates.baseline
        if external.missing:
            return None, f"{external.source}: {external.missing}"
        other = external.entries.get((model.name, slice_name))
        if other is None:
            return None, f"{external.source} has no slice {slice_name} of model {model.name!r}"
        source = external.source
    else:
        name = gates.baseline_model
        if name is None:
            return None, "no baseline configured"
        other = by_key.get((name, slice_name))
        if other is None:
            return None, f"baseline model {name!r} has no slice {slice_name}"
        source = f"baseline model {name!r}"
    value, missing = _value_of(other, metric)
    return value, (f"{source}, {slice_name}: {missing}" if missing else None)


def _diff_interval(gates, entry, metric, base):
    """((lower, upper) of diff's confidence interval, why it is missing).

    With the baseline model in the same pass: the entry's diff interval
    (diff_confidence_intervals), which accounts for both models' sampling on
    the same rows. With an earlier run as the baseline: the model's own
    interval shifted by the baseline's value, which is a fixed reference.
    """
    key = "confidence_intervals" if gates.baseline is not None else "diff_confidence_intervals"
    interval = (entry.get(key) or {}).get(metric)
    lower, upper = (interval or {}).get("lower"), (interval or {}).get("upper")
    if lower is None or upper is None:
        return None, f"no confidence interval ({key}) for use_confidence_interval"
    if gates.baseline is not None:
        lower, upper = lower - base, upper - base
    return (lower, upper), None


def _change_problem(threshold, value, base, interval):
    """Why a change threshold fails (None: it passes); the diff stated."""
    diff = value - base
    higher = threshold.direction == "higher_is_better"
    fails = (lambda x, bound: x < bound) if higher else (lambda x, bound: x > bound)
    sign = "<" if higher else ">"
    stated = f"{_num(value)} vs baseline {_num(base)}: diff {_num(diff)}"
    how = f"({threshold.direction}{', use_confidence_interval' if interval else ''})"
    if threshold.absolute is not None:
        if interval is not None:
            lower, upper = interval
            nearest = upper if higher else lower  # the interval's end nearest to passing
            if fails(nearest, threshold.absolute):
                return (f"{stated}, diff interval [{_num(lower)}, {_num(upper)}] wholly {sign} "
                        f"absolute {_num(threshold.absolute)} {how}")
        elif fails(diff, threshold.absolute):
            shown_diff, shown_bound = _apart(diff, threshold.absolute)
            return (f"{_num(value)} vs baseline {_num(base)}: diff {shown_diff} {sign} "
                    f"absolute {shown_bound} {how}")
    if threshold.relative is not None:
        if base == 0:
            return f"{stated}: relative change undefined (baseline is 0), relative {_num(threshold.relative)} {how}"
        ratio = diff / base
        if interval is not None:
            ends = sorted((interval[0] / base, interval[1] / base))
            nearest = ends[1] if higher else ends[0]
            if fails(nearest, threshold.relative):
                return (f"{stated}, relative change interval [{_num(ends[0])}, {_num(ends[1])}] wholly "
                        f"{sign} relative {_num(threshold.relative)} {how}")
        elif fails(ratio, threshold.relative):
            shown_ratio, shown_bound = _apart(ratio, threshold.relative)
            return f"{stated}, relative change {shown_ratio} {sign} relative {shown_bound} {how}"
    return None


def marker(verdict):
    """The name of the empty file beside validation.json, as TFX's Evaluator writes."""
    return BLESSED if verdict["validation_ok"] else NOT_BLESSED


def failure_lines(verdict):
    """One line per failure, for stderr."""
    return [f"validation failed: {f['message']}" for f in verdict["failures"]]


def summary(verdict):
    """One line: the verdict and what it rests on."""
    checks = f"{verdict['checks']} check{'s' if verdict['checks'] != 1 else ''}"
    if verdict["validation_ok"]:
        return f"validation: ok, {checks} passed ({BLESSED})"
    return f"validation: FAILED, {len(verdict['failures'])} of {checks} failed ({NOT_BLESSED})"
