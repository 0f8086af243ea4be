#!/usr/bin/env python
"""Beam's floor: the whole-process time of the smallest pipeline a local run could be.

    .venv/bin/python benchmarks/beam_floor.py

One element through Create, Map and CombineGlobally, printed, on the runner a
local run of run_pipeline.py gets (runners.create_runner: the in-memory
FnApiRunner) and with its start-up (startup.lean_imports). run_bench.py times
it from outside, like every run: what is left of a pipeline run's wall is
reading, evaluating and writing. No run of ours can take less.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline import startup  # noqa: E402

ARGV = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


def run():
    startup.lean_imports(ARGV)
    import apache_beam as beam

    from pipeline import runners

    options = runners.pipeline_options(ARGV)
    with beam.Pipeline(runner=runners.create_runner(options), options=options) as p:
        _ = (p | "One" >> beam.Create([1]) | "Double" >> beam.Map(lambda x: 2 * x)
             | "Sum" >> beam.CombineGlobally(sum) | "Print" >> beam.Map(print))


if __name__ == "__main__":
    run()
