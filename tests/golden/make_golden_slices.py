"""Golden per-slice, per-model metrics from the REAL tf.estimator.BinaryClassHead.

Runs in the same TF 2.15 environment as make_golden.py (see its docstring;
``make golden`` runs both)::

    .golden-venv/bin/python tests/golden/make_golden_slices.py

It (re)writes ``tests/golden/golden_slices.json`` deterministically: a JSON
list of cases, one per line, each::

    {"name", "covers": text, "rows": n,
     "types": {column: "string" | "int64" | "float32" | "float64" | "bool"
                       | "list<string>" | "list<float32>"},
     "columns": {column: [value or null per row]},
     "config": {"head", "columns", ["models"], "slicing_specs",
                ["min_slice_size"]},     # written as the run's YAML config
     "slices": [{"model", "slice", "slice_name", "example_count",
                 "weighted_example_count", "metrics": {key: float} | null}]}

``slices`` is what metrics.json's ``slices`` must hold (SPEC section 7), in
its order: for every model (config order; without ``models`` one model named
"" scored by columns.logits), the overall slice, then each slicing spec's
slices in spec order, values sorted.  ``metrics`` has every key of the real
head's ``update_metrics`` plus ``loss`` (``head.loss``, as Estimator.evaluate
reports it: never suffixed), each computed by the real head on exactly that
slice's rows in one call; null when example_count < min_slice_size.

Which rows are in which slice is decided here by a plain reference of the
semantics of TFMA's SlicingSpec as SPEC section 5 states them, with loops over
rows: see ``spec_slices``.
"""

import bisect
import itertools
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# The real head, TF set up deterministically, and the case helpers.
from tests.golden import make_golden as mg  # noqa: E402

np = mg.np
OUT_PATH = os.path.join(HERE, 'golden_slices.json')

HEAD_DEFAULTS = {
    'weight_column': None, 'thresholds': None, 'label_vocabulary': None,
    'loss_reduction': 'sum_over_batch_size', 'name': None,
    'regularization_losses': None,
}

# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def nulls(rng, values, fraction):
  """`values` with about `fraction` of them replaced by None."""
  out = list(values)
  for i in np.flatnonzero(rng.random(len(out)) < fraction):
    out[i] = None
  return out


def pick(rng, choices, n, p=None, null=0.0):
  idx = rng.choice(len(choices), size=n, p=p)
  return nulls(rng, [choices[i] for i in idx], null)


def tag_lists(rng, n, tags, null=0.05):
  """0..3 distinct tags per row, some rows null."""
  out = []
  for _ in range(n):
    k = int(rng.integers(0, 4))
    out.append(sorted(rng.choice(tags, size=k, replace=False).tolist()))
  return nulls(rng, out, null)


def weights(rng, n, zeros=3):
  """Positive weights on a 1/1024 grid (their float64 sums are exact)."""
  w = np.round(rng.uniform(0.1, 3.0, size=n) * 1024) / 1024
  w[rng.choice(n, size=zeros, replace=False)] = 0.0
  return mg.f32(w)


def keep_off_edges(logits, thresholds=()):
  """Moves logits whose logistic lies within float32 noise of a Keras AUC
  bucket edge (i/199) or of a threshold: TF's float32 sigmoid is a few ulps
  off the correctly rounded one, which could flip such an example's bucket.
  Exact zeros stay (sigmoid(0) = 0.5 exactly everywhere)."""
  x = mg.f32(logits).copy()
  for _ in range(10):
    p = mg.sigmoid64(x)
    near = np.abs(p * 199 - np.round(p * 199)) < 1e-3
    for t in thresholds:
      near |= np.abs(p - t) < 1e-5
    near &= x != 0
    if not near.any():
      return x
    x[near] += mg.f32(0.01)
  raise AssertionError('could not move logits off the bucket edges')


def scored(rng, n, models=1, thresholds=(), shape=()):
  """A latent score, 0/1 labels drawn from it and `models` noisy logits."""
  z = rng.normal(size=(n,) + shape) * 1.5
  label = (rng.random(z.shape) < mg.sigmoid64(z)).astype(np.int64)
  logits = []
  for m in range(models):
    noise = 0.6 + 0.5 * m
    raw = z * (1.0 - 0.15 * m) + rng.normal(size=z.shape) * noise
    x = keep_off_edges(raw, thresholds)
    x[::41] = 0.0  # a few logits exactly 0: class_id 0, logistic 0.5
    logits.append(x)
  return label, logits


def floats(a):
  return [float(v) for v in np.asarray(a).tolist()]


def rows_of_lists(a):
  return [[float(v) for v in row] for row in np.asarray(a).tolist()]


COUNTRIES = ['DE', 'FR', 'JP', 'US', 'São Tomé']
DEVICES = ['desktop', 'mobile', 'tablet']
TAGS = ['a', 'b', 'c', 'd']


def case_cross_list_nulls():
  rng = np.random.default_rng(901)
  n = 480
  th = [0.3, 0.7]
  label, (logits,) = scored(rng, n, thresholds=th)
  tags = tag_lists(rng, n, TAGS)
  # Repeated values inside a row's list: the row is in that slice once.
  tags[7], tags[77], tags[177] = ['b', 'b'], ['a', 'c', 'a'], ['d', 'd', 'd']
  return {
      'name': 'cross_list_nulls',
      'covers': 'feature_keys on a string column with nulls and a non-ASCII '
                'value; a two-column cross; a list-valued column (0..3 values, '
                'empty lists, nulls, repeated values); a cross of a scalar and '
                'a list column; an int column with nulls; thresholds',
      'types': {'logits': 'float32', 'label': 'int64', 'country': 'string',
                'device': 'string', 'tags': 'list<string>', 'hour': 'int64'},
      'columns': {
          'logits': floats(logits), 'label': label.tolist(),
          'country': pick(rng, COUNTRIES, n, p=[.3, .2, .15, .3, .05], null=.06),
          'device': pick(rng, DEVICES, n, p=[.45, .4, .15], null=.05),
          'tags': tags,
          'hour': pick(rng, [0, 1, 2, 3, 4, 23], n, null=.05),
      },
      'config': {
          'head': {'thresholds': th},
          'columns': {'logits': 'logits', 'label': 'label'},
          'slicing_specs': [
              {'feature_keys': ['country']},
              {'feature_keys': ['country', 'device']},
              {'feature_keys': ['tags']},
              {'feature_keys': ['device', 'tags']},
              {'feature_keys': ['hour']},
          ],
      },
  }


def case_feature_values_weighted():
  rng = np.random.default_rng(902)
  n = 420
  label, (logits,) = scored(rng, n)
  return {
      'name': 'feature_values_weighted',
      'covers': 'feature_values alone, with feature_keys, with two columns, on '
                'a list column, on an int column; YAML values converted to the '
                "column's type (12 -> '12' for a string column, 1 -> 1.0 for a "
                'float column); a value no row has (no slice); {} listed '
                'explicitly (the overall slice still once); weights with zeros',
      'types': {'logits': 'float32', 'label': 'int64', 'weight': 'float32',
                'country': 'string', 'device': 'string', 'store': 'string',
                'hour': 'int64', 'rate': 'float64', 'tags': 'list<string>'},
      'columns': {
          'logits': floats(logits), 'label': label.tolist(),
          'weight': floats(weights(rng, n)),
          'country': pick(rng, COUNTRIES[:4], n, null=.05),
          'device': pick(rng, DEVICES, n, null=.05),
          'store': pick(rng, ['7', '12', '30'], n, null=.05),
          'hour': pick(rng, [1, 2, 3], n, null=.05),
          'rate': pick(rng, [0.5, 1.0, 2.5], n, null=.05),
          'tags': tag_lists(rng, n, TAGS),
      },
      'config': {
          'head': {'weight_column': 'weight', 'thresholds': [0.5]},
          'columns': {'logits': 'logits', 'label': 'label'},
          'slicing_specs': [
              {},
              {'feature_values': {'device': 'mobile'}},
              {'feature_keys': ['country'], 'feature_values': {'device': 'mobile'}},
              {'feature_values': {'store': 12}},
              {'feature_values': {'hour': 3}},
              {'feature_values': {'country': 'DE', 'device': 'desktop'}},
              {'feature_values': {'tags': 'b'}},
              {'feature_keys': ['tags'], 'feature_values': {'hour': 2}},
              {'feature_values': {'rate': 1}},
              {'feature_values': {'country': 'XX'}},
          ],
      },
  }


def case_buckets_bool_sum():
  rng = np.random.default_rng(903)
  n = 400
  th = [0.5]
  label, (logits,) = scored(rng, n, thresholds=th)
  age = rng.integers(5, 81, size=n).tolist()
  age[:6] = [18, 30, 50, 17, 29, 49]  # on and just below the boundaries
  score = (rng.integers(0, 65, size=n) / 64.0).tolist()
  score[:3] = [0.25, 0.5, 0.75]
  return {
      'name': 'buckets_bool_sum',
      'covers': 'bucket_boundaries [lo, hi) on an int and a float column '
                '(values on the boundaries, nulls, an empty range left out, '
                "float boundaries written '[-0.5, 2.0)'); a bucketed column "
                'crossed with a string column; feature_keys on a float and a '
                'bool column; float labels; loss_reduction sum',
      'types': {'logits': 'float32', 'label': 'float32', 'age': 'int64',
                'score': 'float64', 'rate': 'float64', 'flag': 'bool',
                'country': 'string'},
      'columns': {
          'logits': floats(logits), 'label': floats(label),
          'age': nulls(rng, age, .05), 'score': nulls(rng, score, .05),
          'rate': pick(rng, [0.5, 1.0, 2.5], n, null=.05),
          'flag': pick(rng, [False, True], n, null=.05),
          'country': pick(rng, COUNTRIES[:4], n, null=.05),
      },
      'config': {
          'head': {'thresholds': th, 'loss_reduction': 'sum'},
          'columns': {'logits': 'logits', 'label': 'label'},
          'slicing_specs': [
              {'feature_keys': ['age'], 'bucket_boundaries': {'age': [18, 30, 50]}},
              {'feature_keys': ['score'],
               'bucket_boundaries': {'score': [0.25, 0.5, 0.75]}},
              {'feature_keys': ['age', 'country'], 'bucket_boundaries': {'age': [30]}},
              {'feature_keys': ['score'], 'bucket_boundaries': {'score': [-0.5, 2.0]}},
              {'feature_keys': ['rate']},
              {'feature_keys': ['flag']},
          ],
      },
  }


def case_vocab_labels():
  rng = np.random.default_rng(904)
  n = 300
  th = [0.5]
  label, (logits,) = scored(rng, n, thresholds=th)
  vocab = ['ham', 'spam']
  return {
      'name': 'vocab_labels',
      'covers': 'string labels through label_vocabulary; a string and a list '
                'slice column',
      'types': {'logits': 'float32', 'label': 'string', 'country': 'string',
                'tags': 'list<string>'},
      'columns': {
          'logits': floats(logits), 'label': [vocab[i] for i in label],
          'country': pick(rng, COUNTRIES[:4], n, null=.05),
          'tags': tag_lists(rng, n, TAGS),
      },
      'config': {
          'head': {'label_vocabulary': vocab, 'thresholds': th},
          'columns': {'logits': 'logits', 'label': 'label'},
          'slicing_specs': [{'feature_keys': ['country']},
                            {'feature_keys': ['tags']}],
      },
  }


def case_list_logits_min_size():
  rng = np.random.default_rng(905)
  n = 150
  th = [0.25, 0.75]
  label, (logits,) = scored(rng, n, thresholds=th, shape=(3,))
  label = label.astype(np.float32)
  label[::13, 1] = 0.25  # a few soft labels
  countries = ['DE', 'FR', 'US', 'AT', 'BE', 'CH', 'LU', 'NL']
  return {
      'name': 'list_logits_min_size',
      'covers': 'a fixed-length list of 3 logits and labels per row (each '
                'element one example, in its row\'s slices) with a scalar '
                'weight per row; min_slice_size 10 on element counts: slices '
                'of 2-3 rows (6-9 examples) withheld, slices of 4-9 rows shown',
      'types': {'logits': 'list<float32>', 'label': 'list<float32>',
                'weight': 'float32', 'country': 'string', 'device': 'string'},
      'columns': {
          'logits': rows_of_lists(logits), 'label': rows_of_lists(label),
          'weight': floats(weights(rng, n)),
          'country': pick(rng, countries, n,
                          p=[.4, .25, .2, .03, .03, .03, .03, .03], null=.05),
          'device': pick(rng, DEVICES, n, p=[.5, .4, .1]),
      },
      'config': {
          'head': {'weight_column': 'weight', 'thresholds': th},
          'columns': {'logits': 'logits', 'label': 'label'},
          'slicing_specs': [{'feature_keys': ['country']},
                            {'feature_keys': ['country', 'device']}],
          'min_slice_size': 10,
      },
  }


def case_three_models_baseline():
  rng = np.random.default_rng(906)
  n = 500
  th = [0.5]
  label, (v1, v2, v3) = scored(rng, n, models=3, thresholds=th)
  return {
      'name': 'three_models_baseline',
      'covers': 'models: the baseline listed first, then two candidates (diffs '
                'against the baseline; top-level metrics = the first '
                'non-baseline model); weights; min_slice_size 25 withholds a '
                'rare value for every model',
      'types': {'score_v1': 'float32', 'score_v2': 'float32',
                'score_v3': 'float32', 'label': 'int64', 'weight': 'float32',
                'country': 'string', 'device': 'string'},
      'columns': {
          'score_v1': floats(v1), 'score_v2': floats(v2), 'score_v3': floats(v3),
          'label': label.tolist(), 'weight': floats(weights(rng, n)),
          'country': pick(rng, COUNTRIES, n, p=[.3, .2, .2, .27, .03], null=.04),
          'device': pick(rng, DEVICES, n, null=.04),
      },
      'config': {
          'head': {'weight_column': 'weight', 'thresholds': th},
          'columns': {'label': 'label'},
          'models': [
              {'name': 'production', 'logits': 'score_v1', 'is_baseline': True},
              {'name': 'candidate', 'logits': 'score_v2'},
              {'name': 'challenger', 'logits': 'score_v3', 'is_baseline': False},
          ],
          'slicing_specs': [{'feature_keys': ['country']},
                            {'feature_keys': ['device']}],
          'min_slice_size': 25,
      },
  }


def case_named_head_two_models():
  rng = np.random.default_rng(907)
  n = 300
  th = [0.4]
  label, (a, b) = scored(rng, n, models=2, thresholds=th)
  return {
      'name': 'named_head_two_models',
      'covers': "a named head (every metric key suffixed '/my_head', loss "
                'not) with regularization losses and weights; two models, '
                'no baseline (no diffs)',
      'types': {'score_a': 'float32', 'score_b': 'float32', 'label': 'int64',
                'weight': 'float32', 'device': 'string'},
      'columns': {
          'score_a': floats(a), 'score_b': floats(b), 'label': label.tolist(),
          'weight': floats(weights(rng, n)),
          'device': pick(rng, DEVICES, n, null=.05),
      },
      'config': {
          'head': {'weight_column': 'weight', 'thresholds': th,
                   'name': 'my_head', 'regularization_losses': [0.5, 0.25]},
          'columns': {'label': 'label'},
          'models': [{'name': 'a', 'logits': 'score_a'},
                     {'name': 'b', 'logits': 'score_b'}],
          'slicing_specs': [{'feature_keys': ['device']}],
      },
  }


def case_unsorted_cross_keys():
  rng = np.random.default_rng(908)
  n = 240
  label, (logits,) = scored(rng, n)
  return {
      'name': 'unsorted_cross_keys',
      'covers': 'feature_keys listed out of column order ([device, country]): '
                'slice dict and slice_name in sorted column order, and the '
                'slices sorted by their values in that same (sorted column) '
                'order',
      'types': {'logits': 'float32', 'label': 'int64', 'country': 'string',
                'device': 'string'},
      'columns': {
          'logits': floats(logits), 'label': label.tolist(),
          'country': pick(rng, COUNTRIES[:4], n, null=.05),
          'device': pick(rng, DEVICES, n, null=.05),
      },
      'config': {
          'head': {},
          'columns': {'logits': 'logits', 'label': 'label'},
          'slicing_specs': [{'feature_keys': ['device', 'country']}],
      },
  }


CASES = [
    case_cross_list_nulls, case_feature_values_weighted, case_buckets_bool_sum,
    case_vocab_labels, case_list_logits_min_size, case_three_models_baseline,
    case_named_head_two_models, case_unsorted_cross_keys,
]

# ---------------------------------------------------------------------------
# The reference slicer: plain Python over rows.
# ---------------------------------------------------------------------------


def base_type(column_type):
  return column_type[5:-1] if column_type.startswith('list<') else column_type


def cell_values(values, row):
  """A cell as a list of values: a scalar is one value; null: none."""
  v = values[row]
  if v is None:
    return []
  return list(v) if isinstance(v, list) else [v]


def to_column_type(value, column_type):
  """A YAML feature_values value converted to the column's type."""
  t = base_type(column_type)
  if t == 'string':
    return str(value)
  if t == 'int64':
    return int(value)
  if t.startswith('float'):
    return float(value)
  if t == 'bool':
    assert isinstance(value, bool), value
    return value
  raise TypeError(column_type)


def bound_text(b):
  return str(b)  # the YAML number as Python prints it: 18, 0.5, -inf, inf


def bucket_of(value, boundaries):
  """(text, sort key) of the range [lo, hi) holding `value`."""
  i = bisect.bisect_right(boundaries, value)
  lo = boundaries[i - 1] if i else -math.inf
  hi = boundaries[i] if i < len(boundaries) else math.inf
  return '[%s, %s)' % (bound_text(lo), bound_text(hi)), lo


def value_text(v):
  """A slice value in slice_name: TFMA's tf.compat.as_str_any, i.e. str()."""
  return v if isinstance(v, str) else str(v)


def spec_slices(spec, table, types, n):
  """[(slice key, sorted rows)] of one slicing spec, in output order.

  A slice key is a tuple of (column, value, sort key) sorted by column. A
  row is in a spec's slices only if every feature_values column holds the
  given value (any of a list's values) and every feature_keys column has at
  least one value; then it is in one slice per combination of its values
  (the product over the feature_keys columns; a list column contributes each
  of its values; a bucketed column its value's range).
  """
  keys = spec.get('feature_keys', [])
  fixed = {c: to_column_type(v, types[c])
           for c, v in spec.get('feature_values', {}).items()}
  buckets = spec.get('bucket_boundaries', {})
  assert set(buckets) <= set(keys), spec
  members = {}
  for row in range(n):
    if any(v not in cell_values(table[c], row) for c, v in fixed.items()):
      continue
    per_column = []
    for c in keys:
      vals = cell_values(table[c], row)
      if c in buckets:
        per_column.append([(c,) + bucket_of(v, buckets[c]) for v in vals])
      else:
        per_column.append([(c, v, v) for v in vals])
    for combo in itertools.product(*per_column):
      key = tuple(sorted(list(combo) + [(c, v, v) for c, v in fixed.items()]))
      members.setdefault(key, set()).add(row)
  order = sorted(members, key=lambda key: tuple(s for _, _, s in key))
  return [(key, sorted(members[key])) for key in order]


def all_slices(config, table, types, n):
  """The overall slice, then every spec's slices (each slice once)."""
  out = [((), list(range(n)))]
  for spec in config['slicing_specs']:
    for key, rows in spec_slices(spec, table, types, n):
      if key == ():
        continue  # {} is the overall slice, already first
      assert key not in [k for k, _ in out], ('slice made by two specs', key)
      out.append((key, rows))
  return out


def slice_dict(key):
  return {c: v for c, v, _ in key}


def slice_name(key):
  if not key:
    return 'Overall'
  return ('_X_'.join(c for c, _, _ in key) + ':' +
          '_X_'.join(value_text(v) for _, v, _ in key))


# ---------------------------------------------------------------------------
# The real head on each slice's rows.
# ---------------------------------------------------------------------------


def head_spec(config):
  h = dict(HEAD_DEFAULTS)
  h.update(config['head'])
  h['loss_fn'] = None
  if h['regularization_losses'] == []:
    h['regularization_losses'] = None
  return h


def models_of(config):
  if 'models' in config:
    return config['models']
  return [{'name': '', 'logits': config['columns']['logits']}]


def head_inputs(c, h, logits_column, rows):
  """logits [k, 1] or [k, D, 1], labels alike, features {weight: [k] | [k, D]}."""
  cols, types = c['columns'], c['types']
  label_column = c['config']['columns']['label']
  logits = np.array([cols[logits_column][r] for r in rows], np.float32)[..., None]
  raw = [cols[label_column][r] for r in rows]
  if base_type(types[label_column]) == 'string':
    labels = np.array([s.encode() for s in raw], dtype=bytes)[:, None]
  elif base_type(types[label_column]) == 'int64':
    labels = np.array(raw, np.int64)[..., None]
  else:
    labels = np.array(raw, np.float32)[..., None]
  features = {}
  if h['weight_column']:
    w = np.array([cols[h['weight_column']][r] for r in rows], np.float32)
    # A scalar weight per row applies to every element of the row's list.
    features[h['weight_column']] = np.broadcast_to(
        w.reshape(w.shape + (1,) * (logits.ndim - 1 - w.ndim)),
        logits.shape[:-1]).copy()
  return logits, labels, features


def real_head_metrics(c, h, logits_column, rows):
  head = mg.build_head(h)
  logits, labels, features = head_inputs(c, h, logits_column, rows)
  metrics = mg.run_metrics(head, h, [(logits, labels, features)])
  loss = head.loss(labels=labels, logits=logits, features=features,
                   regularization_losses=mg.reg_losses(h))
  metrics['loss'] = float(loss.numpy())
  examples = int(np.prod(logits.shape[:-1]))
  if h['weight_column']:
    weighted = math.fsum(features[h['weight_column']].astype(np.float64).ravel())
  else:
    weighted = float(examples)
  return metrics, examples, weighted


def evaluate_case(c):
  config, types = c['config'], c['types']
  n = len(next(iter(c['columns'].values())))
  assert all(len(v) == n for v in c['columns'].values()), c['name']
  c['rows'] = n
  h = head_spec(config)
  min_size = config.get('min_slice_size', 1)
  slices = all_slices(config, c['columns'], types, n)
  out = []
  for model in models_of(config):
    for key, rows in slices:
      metrics, examples, weighted = real_head_metrics(c, h, model['logits'], rows)
      for k, v in metrics.items():
        assert math.isfinite(v), (c['name'], key, k, v)
      out.append({
          'model': model['name'], 'slice': slice_dict(key),
          'slice_name': slice_name(key), 'example_count': examples,
          'weighted_example_count': weighted,
          'metrics': metrics if examples >= min_size else None,
      })
  c['slices'] = out
  return c


# ---------------------------------------------------------------------------
# What the cases must cover (so an edit cannot silently drop a situation).
# ---------------------------------------------------------------------------


def check_coverage(cases):
  by_name = {c['name']: c for c in cases}
  for c in cases:  # every sliced-on column has nulls, except list_logits' device
    for spec in c['config']['slicing_specs']:
      for col in spec.get('feature_keys', []) + list(spec.get('feature_values', {})):
        if (c['name'], col) != ('list_logits_min_size', 'device'):
          assert None in c['columns'][col], (c['name'], col, 'has no nulls')

  names = lambda c: [s['slice_name'] for s in c['slices']]
  cl = by_name['cross_list_nulls']
  assert [] in cl['columns']['tags']
  assert 'country_X_device:São Tomé_X_mobile' in names(cl)
  assert 'device_X_tags:mobile_X_b' in names(cl)

  fv = by_name['feature_values_weighted']
  fv_names = names(fv)
  assert fv_names.count('Overall') == 1
  for name in ('device:mobile', 'country_X_device:DE_X_mobile', 'store:12',
               'hour:3', 'country_X_device:DE_X_desktop', 'tags:b',
               'hour_X_tags:2_X_a', 'rate:1.0'):
    assert name in fv_names, name
  assert not any('XX' in name for name in fv_names)

  bk = by_name['buckets_bool_sum']
  bk_names = names(bk)
  for name in ('age:[-inf, 18)', 'age:[18, 30)', 'age:[30, 50)', 'age:[50, inf)',
               'score:[0.75, inf)', 'age_X_country:[-inf, 30)_X_DE',
               'score:[-0.5, 2.0)', 'rate:1.0', 'flag:False', 'flag:True'):
    assert name in bk_names, name
  assert 'score:[-inf, -0.5)' not in bk_names and 'score:[2.0, inf)' not in bk_names

  ll = by_name['list_logits_min_size']
  withheld = [s for s in ll['slices'] if s['metrics'] is None]
  shown_small = [s for s in ll['slices']
                 if s['metrics'] is not None and s['example_count'] < 30]
  assert withheld and shown_small, 'min_slice_size must count list elements'

  tm = by_name['three_models_baseline']
  assert any(s['metrics'] is None for s in tm['slices'])
  assert {s['model'] for s in tm['slices']} == {'production', 'candidate', 'challenger'}

  nh = by_name['named_head_two_models']
  assert 'loss' in nh['slices'][0]['metrics']
  assert 'auc/my_head' in nh['slices'][0]['metrics']

  us = by_name['unsorted_cross_keys']
  pairs = [tuple(s['slice'].values()) for s in us['slices'][1:]]
  assert pairs == sorted(pairs) and pairs != sorted(pairs, key=lambda p: p[::-1])


def main():
  cases = [evaluate_case(make()) for make in CASES]
  assert len({c['name'] for c in cases}) == len(cases)
  check_coverage(cases)
  text = mg.dump_cases(cases)
  with open(OUT_PATH, 'w') as f:
    f.write(text)
  print('wrote %d cases, %d slices (%.2f MB) to %s' % (
      len(cases), sum(len(c['slices']) for c in cases), len(text) / 1e6,
      OUT_PATH))


if __name__ == '__main__':
  main()
