#!/usr/bin/env python
"""Evaluate scored examples with tf.estimator.BinaryClassHead semantics on Beam.

    python run_pipeline.py                       # the bundled demo, printed
    python run_pipeline.py --input 'scores/*.parquet' --config configs/default.yaml \
        --output out/ [--format parquet|tfrecord] [any Beam pipeline option]
"""

import sys

from pipeline import startup

if __name__ == "__main__":
    # Before anything imports Beam: a local run skips what it never uses.
    startup.lean_imports(sys.argv[1:])
    startup.keep_freed_memory()
    startup.skip_teardown_at_exit()  # before the drawing child's atexit function
    startup.start_drawing(sys.argv[1:])

from pipeline.cli import main  # noqa: E402

if __name__ == "__main__":
    startup.exit(main())
