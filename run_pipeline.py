#!/usr/bin/env python
"""Evaluate scored examples with tf.estimator.BinaryClassHead semantics on Beam.

    python run_pipeline.py                       # the bundled demo, printed
    python run_pipeline.py --input 'scores/*.parquet' --config configs/default.yaml \
        --output out/ [--format parquet|tfrecord] [any Beam pipeline option]
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
