"""Makes the bundled demo data (data/demo/scores.parquet), deterministically.

100,000 scored examples of a plausible model: a logit, a 0/1 label, a
positive weight, the label as a string (ham/spam), a 3-element multi-task
logit/label pair, an auxiliary feature, country and device columns for
slicing, and the logits of a weaker "production" model (score_v1) to
compare against.

    python data/make_demo.py [--rows N] [--out PATH]
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_table(rows, seed=20261123):
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < 0.35).astype(np.int64)
    # A model with some skill: positives score higher on average.
    logits = (rng.normal(0.0, 1.6, rows) + 1.8 * label - 1.1).astype(np.float32)
    weight = rng.gamma(2.0, 0.8, rows).astype(np.float32)
    multi_label = (rng.random((rows, 3)) < 0.4).astype(np.float32)
    multi_logits = (rng.normal(0.0, 1.5, (rows, 3)) + 1.5 * multi_label - 0.6).astype(np.float32)
    countries = np.array(["de", "fr", "us", "jp", "br"])
    devices = np.array(["mobile", "desktop", "tablet"])
    # The production model: the same signal, more noise.
    score_v1 = (0.8 * logits + rng.normal(0.0, 1.0, rows)).astype(np.float32)
    return pa.table(
        {
            "logits": logits,
            "label": label,
            "weight": weight,
            "label_str": pa.array(np.where(label == 1, "spam", "ham")),
            "multi_logits": pa.FixedSizeListArray.from_arrays(pa.array(multi_logits.ravel()), 3),
            "multi_label": pa.FixedSizeListArray.from_arrays(pa.array(multi_label.ravel()), 3),
            "aux": rng.random(rows).astype(np.float32),
            "country": pa.array(countries[rng.integers(0, len(countries), rows)]),
            "device": pa.array(devices[rng.choice(len(devices), rows, p=[0.6, 0.3, 0.1])]),
            "score_v1": score_v1,
        }
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", default="data/demo/scores.parquet")
    args = parser.parse_args()
    pq.write_table(make_table(args.rows), args.out, row_group_size=50_000)


if __name__ == "__main__":
    main()
