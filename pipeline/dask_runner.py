"""A DaskRunner that runs this pipeline correctly: `--runner=DaskRunner`.

It is Beam's apache_beam.runners.dask.dask_runner.DaskRunner (its options,
overrides and GroupByKey/Flatten translations) with the ParDo, Create,
Reshuffle and CombinePerKey translations replaced, because Beam 2.77's versions
- drop what a DoFn emits in finish_bundle (so sinks write nothing),
- send every tagged output to every consumer (main and tagged outputs mix),
- compute side inputs inside a task with a nested, blocking compute (the
  upstream steps run again, and a small cluster can deadlock),
- treat Reshuffle as a no-op and put up to 128 created elements in one
  partition (all files read by one task),
- group all values of a key on one worker before combining (no combiner
  lifting: every evaluated batch would travel to one process),
- return no metrics (`metrics()` raises NotImplementedError).
Here every ParDo partition is a bundle with its own receivers and metrics
container; side inputs are graph dependencies; Reshuffle repartitions;
CombinePerKey is Beam's LiftedCombinePerKey (partial combine per bundle);
counters come back with the results. Without --dask_client_address a local
cluster (worker processes on 127.0.0.1) is started and closed after the run.

The translations use Beam internals (DoFnInvoker, _OutputHandler, the Dask
runner's overrides), so they are tied to the Beam version they were written
for: DaskRunner checks the installed one first (check_beam_version). Importing
this module needs neither dask nor those internals; DaskRunner is built on
first use.
"""

import contextlib
import logging
import os
import typing

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.runners import RunnerError, export_import_path

# The Beam release (major, minor) whose internals the translations below use.
WRITTEN_FOR_BEAM = (2, 77)
# Partitions per worker thread that Create and Reshuffle aim for on Dask
# (--dask_npartitions overrides), at most MAX_PARTITIONS.
PARTITIONS_PER_THREAD = 4
MAX_PARTITIONS = 512
# dask.distributed logs every worker start, connection and shutdown at INFO:
# warnings and errors only, unless the user sets dask's own variable for it.
QUIET_LEVEL = logging.WARNING
LOG_LEVEL_VARIABLE = "DASK_LOGGING__DISTRIBUTED"


def _quiet():
    return LOG_LEVEL_VARIABLE not in os.environ


# Run by each worker process of the local cluster as it starts (a dask
# "preload" script): Ctrl-C, which the terminal sends to every process of the
# job, is for the launcher, which stops the cluster; a worker would print a
# traceback.
_WORKER_IGNORES_SIGINT = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"


# dask's logging while a run that failed or was interrupted is stopped: the
# cluster's shutdown messages (killed workers, lost tasks, a worker's heartbeat
# that finds the scheduler gone) only repeat what the user was already told.
SILENT = logging.CRITICAL + 1


def _silence_worker():
    """Run on each worker of our own cluster before it is stopped early."""
    logging.getLogger("distributed").setLevel(SILENT)


def _stop_early(client, cluster, futures=()):
    """Stops a run that failed or was interrupted, with dask SILENT in the
    launcher and, first, on our own cluster's workers: their tasks are
    cancelled, then client and cluster closed."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(SILENT)
    try:
        if cluster is not None:
            with contextlib.suppress(Exception):
                client.run(_silence_worker)
        if futures:
            client.cancel(list(futures))
        client.close()
        if cluster is not None:
            cluster.close()
    finally:
        logger.setLevel(level)


def check_beam_version(version=None):
    """Raises RunnerError unless Beam is the release this module was written for."""
    version = version or beam.__version__
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = None
    if major_minor != WRITTEN_FOR_BEAM:
        wanted = ".".join(map(str, WRITTEN_FOR_BEAM))
        raise RunnerError(
            f"--runner=DaskRunner: pipeline/dask_runner.py is written for Apache Beam {wanted} "
            f"(it replaces translations of that release's DaskRunner), but Beam {version} is "
            f"installed; install apache-beam=={wanted}.* or use another runner"
        )


class _Op(typing.NamedTuple):
    """One ParDo of a fused stage; `source` is (index of the op feeding it, tag), None for the root."""

    label: str
    fn: object
    args: tuple
    kwargs: dict
    window_fn: object
    source: typing.Optional[tuple]


class _Bundle(typing.NamedTuple):
    """A stage's run over one partition: exported outputs and metric updates."""

    outputs: dict  # export key -> list of values
    metrics: list  # apache_beam.metrics.execution.MetricUpdates, one per op


def _global_windowed(value):
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.windowed_value import WindowedValue

    if isinstance(value, WindowedValue):
        return value
    return WindowedValue(value, 0, (GlobalWindow(),))


def _run_stage(items, ops, exports, side_specs, side_values):
    """Fused ParDos over one partition, as one bundle each; returns [_Bundle].

    Elements stream from op to op (as in Beam's fused stages); only the
    outputs other steps consume (`exports`: (op index, tag) -> key) are kept.
    Side inputs belong to the root op (ops with side inputs start a stage).
    """
    from apache_beam.metrics.execution import MetricsContainer
    from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
    from apache_beam.runners.worker import statesampler
    from apache_beam.transforms.sideinputs import SideInputMap
    from apache_beam.utils import counters as beam_counters

    outputs = {key: [] for key in exports.values()}
    sampler = statesampler.StateSampler("dask", beam_counters.CounterFactory())
    containers = [MetricsContainer(op.label) for op in ops]
    states = [sampler.scoped_state(op.label, "process", metrics_container=c) for op, c in zip(ops, containers)]
    invokers = [None] * len(ops)
    consumers = {}  # (op index, tag) -> [op index]
    for index, op in enumerate(ops):
        if op.source is not None:
            consumers.setdefault(op.source, []).append(index)

    def process(index, windowed_value):
        with states[index]:
            invokers[index].invoke_process(windowed_value)

    class _Receiver(Receiver):
        def __init__(self, index, tag):
            self._next = consumers.get((index, tag), [])
            self._kept = outputs.get(exports.get((index, tag)))

        def receive(self, windowed_value):
            for downstream in self._next:
                process(downstream, windowed_value)
            if self._kept is not None:
                self._kept.append(windowed_value.value)

    for index in range(len(ops) - 1, -1, -1):
        op = ops[index]

        class _Receivers(dict):
            def __missing__(self, tag, index=index):
                self[tag] = _Receiver(index, tag)
                return self[tag]

        receivers = _Receivers()
        side_inputs = [] if index else [
            SideInputMap(view_class, view_options, [_global_windowed(v) for v in values])
            for (view_class, view_options), values in zip(side_specs, side_values)
        ]
        invokers[index] = DoFnInvoker.create_invoker(
            DoFnSignature(op.fn),
            _OutputHandler(
                window_fn=op.window_fn,
                main_receivers=receivers[None],
                tagged_receivers=receivers,
                per_element_output_counter=None,
                output_batch_converter=None,
                process_yields_batches=False,
                process_batch_yields_elements=False,
            ),
            context=DoFnContext(op.label, state=None),
            side_inputs=side_inputs,
            input_args=op.args,
            input_kwargs=op.kwargs,
            user_state_context=None,
            bundle_finalizer_param=beam.DoFn.BundleFinalizerParam(),
        )
    previous = statesampler.get_current_tracker()
    statesampler.set_current_tracker(sampler)
    try:
        for index, invoker in enumerate(invokers):
            with states[index]:
                invoker.invoke_setup()
                invoker.invoke_start_bundle()
        for item in items:
            process(0, _global_windowed(item))
        for index, invoker in enumerate(invokers):  # upstream first: its last outputs flow down
            with states[index]:
                invoker.invoke_finish_bundle()
        for index, invoker in enumerate(invokers):
            with states[index]:
                invoker.invoke_teardown()
    finally:
        statesampler.set_current_tracker(previous)
    return [_Bundle(outputs, [c.get_cumulative() for c in containers])]


def _exported(partition, key):
    return [value for bundle in partition for value in bundle.outputs[key]]


def _bundle_metrics(partition):
    return [updates for bundle in partition for updates in bundle.metrics]


def _as_list(partitions):
    return [value for partition in partitions for value in partition]


def _task_name(label):
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")[:60] or "step"


def _lifting_override():
    from apache_beam.pipeline import PTransformOverride
    from apache_beam.transforms.combiners import LiftedCombinePerKey

    class LiftCombinePerKey(PTransformOverride):
        """CombinePerKey -> partial combine per bundle, GroupByKey, merge."""

        def matches(self, applied):
            return applied.transform.__class__ is beam.CombinePerKey

        def get_replacement_transform_for_applied_ptransform(self, applied):
            transform = applied.transform
            return LiftedCombinePerKey(transform.fn, transform.args, transform.kwargs)

    return LiftCombinePerKey()


class _Stage:
    """ParDos fused into one task per partition: a root and the ops it feeds."""

    def __init__(self, root):
        self.root = root
        self.nodes = [root]
        self.exports = {}  # (op index, tag) -> key
        self.bag = None


def _dask_translation(pipeline, partitions, bag_kwargs):
    """Translates the pipeline's leaf transforms into dask bags.

    Returns (bags to compute, bag of metric updates). A ParDo is fused into
    the stage of the ParDo feeding it when it is the only consumer of that
    output and has no side inputs; other ParDos start a stage.
    """
    import dask
    import dask.bag as db
    from apache_beam.pipeline import PipelineVisitor
    from apache_beam.runners.dask import overrides, transform_evaluator

    class Collect(PipelineVisitor):
        def __init__(self):
            self.nodes = []

        def visit_transform(self, node):
            self.nodes.append(node)

    collect = Collect()
    pipeline.visit(collect)
    nodes = collect.nodes
    main_consumers, side_consumed = {}, set()
    for node in nodes:
        for pcoll in node.inputs:
            if not isinstance(pcoll, beam.pvalue.PBegin):
                main_consumers.setdefault(pcoll, []).append(node)
        for side in node.side_inputs:
            side_consumed.add(side.pvalue)

    def is_pardo(node):
        return node.transform.__class__ is beam.ParDo

    stages, index_in_stage = {}, {}
    for node in nodes:
        if not is_pardo(node):
            continue
        (pcoll,) = [i for i in node.inputs if not isinstance(i, beam.pvalue.PBegin)] or [None]
        producer = pcoll.producer if pcoll is not None else None
        if (producer in stages and not node.side_inputs and pcoll not in side_consumed
                and main_consumers.get(pcoll) == [node]):
            stage = stages[producer]
            stage.nodes.append(node)
        else:
            stage = _Stage(node)
        stages[node] = stage
        index_in_stage[node] = len(stage.nodes) - 1
    for node in nodes:
        if not is_pardo(node):
            continue
        stage = stages[node]
        for tag, pcoll in node.outputs.items():
            fused = [c for c in main_consumers.get(pcoll, []) if stages.get(c) is stage]
            if pcoll in side_consumed or len(fused) < len(main_consumers.get(pcoll, [])):
                stage.exports[(index_in_stage[node], tag)] = f"{index_in_stage[node]}:{tag}"

    bags = {}  # PCollection -> Bag
    metric_bags = []

    def bag_of(pcoll):
        if pcoll not in bags:
            producer = pcoll.producer
            stage = stages[producer]
            key = stage.exports[(index_in_stage[producer], pcoll.tag)]
            bags[pcoll] = stage.bag.map_partitions(_exported, key, token=f"out-{_task_name(producer.full_label)}")
        return bags[pcoll]

    def create(values):
        values = list(values)
        if bag_kwargs.get("partition_size"):
            return db.from_sequence(values, partition_size=bag_kwargs["partition_size"])
        npartitions = bag_kwargs.get("npartitions") or min(len(values), partitions)
        return db.from_sequence(values, npartitions=max(1, npartitions))

    def window_fn_of(node):
        main_input = next(iter(node.main_inputs.values()), None)
        return main_input.windowing.windowfn if hasattr(main_input, "windowing") else None

    def realize(stage):
        root = stage.root
        inputs = [i for i in root.inputs if not isinstance(i, beam.pvalue.PBegin)]
        input_bag = bag_of(inputs[0]) if inputs else db.from_sequence([None], npartitions=1)
        side_specs, side_values = [], []
        for side in root.side_inputs:
            side_specs.append((type(side), side._view_options()))
            side_values.append(dask.delayed(_as_list)(bag_of(side.pvalue).to_delayed(optimize_graph=False)))
        ops = []
        for node in stage.nodes:
            source = None
            if node is not root:
                (pcoll,) = [i for i in node.inputs if not isinstance(i, beam.pvalue.PBegin)]
                source = (index_in_stage[pcoll.producer], pcoll.tag)
            transform = node.transform
            ops.append(_Op(node.full_label, transform.fn, transform.args, transform.kwargs,
                           window_fn_of(node), source))
        stage.bag = input_bag.map_partitions(
            _run_stage, ops, stage.exports, side_specs, side_values, token=_task_name(root.full_label)
        )
        metric_bags.append(stage.bag.map_partitions(_bundle_metrics, token="metrics"))

    leaves = []
    for node in nodes:
        transform = node.transform
        inputs = [i for i in node.inputs if not isinstance(i, beam.pvalue.PBegin)]
        if is_pardo(node):
            if stages[node].root is node:
                realize(stages[node])
            continue
        if isinstance(transform, overrides._Create):
            bag = create(transform.values)
        elif isinstance(transform, overrides._Reshuffle):
            bag = bag_of(inputs[0])
            bag = bag.repartition(npartitions=partitions) if bag.npartitions < partitions else bag
        elif isinstance(transform, overrides._GroupByKeyOnly):
            bag = transform_evaluator.GroupByKey(node, bag_kwargs=bag_kwargs).apply(bag_of(inputs[0]))
        elif isinstance(transform, overrides._Flatten):
            bag = db.concat([bag_of(i) for i in inputs]) if inputs else db.from_sequence([], npartitions=1)
        elif len(inputs) == 1:  # WindowInto, GroupAlsoByWindow, ...: identity in the global window
            bag = bag_of(inputs[0])
        else:
            raise NotImplementedError(f"DaskRunner cannot run {node.full_label} ({type(transform).__name__})")
        for pcoll in node.outputs.values():
            bags[pcoll] = bag
            if not main_consumers.get(pcoll) and pcoll not in side_consumed:
                leaves.append(bag)
    # Every stage runs for its metrics; other unconsumed results are counted.
    return [leaf.count() for leaf in leaves], _concat_bags(metric_bags)


class _DaskResult(PipelineResult):
    def __init__(self, client, futures, metrics_future, cluster):
        super().__init__(PipelineState.RUNNING)
        self._client = client
        self._futures = futures
        self._metrics_future = metrics_future
        self._cluster = cluster
        self._metrics = None

    def wait_until_finish(self, duration=None):
        import dask.distributed as ddist
        from apache_beam.runners.direct.direct_metrics import DirectMetrics

        if self._state != PipelineState.RUNNING:
            return self._state
        timeout = None if duration is None else duration / 1000
        try:
            try:
                for _ in ddist.as_completed(self._futures + [self._metrics_future], timeout=timeout):
                    pass
            except ddist.TimeoutError:
                return self._state  # still running
            for future in self._futures:
                future.result()  # raises a step's exception here
            metrics = DirectMetrics()
            for updates in self._metrics_future.result():
                metrics.commit_logical(None, updates)
                metrics.commit_physical(None, updates)
            self._metrics = metrics
            self._state = PipelineState.DONE
        except BaseException:  # a step's error, or an interrupt while waiting
            self._state = PipelineState.FAILED
            self._stop_early()
            raise
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        return self._state

    def _stop_early(self):
        _stop_early(self._client, self._cluster, self._futures + [self._metrics_future])

    def cancel(self):
        self._stop_early()
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self):
        if self._metrics is None:
            raise NotImplementedError("metrics are available once the run has finished")
        return self._metrics


class LocalDaskOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--dask_local_workers", type=int, default=None,
            help="DaskRunner without --dask_client_address: worker processes of the "
            "local cluster it starts (one thread each; default: dask's choice for this machine)",
        )


def _make_dask_runner():
    check_beam_version()
    try:
        from apache_beam.runners.dask import dask_runner
    except ImportError as e:
        raise RunnerError(
            f"--runner=DaskRunner needs dask.distributed ({e}): pip install 'beam-head-eval[dask]'"
        ) from e

    class DaskRunner(dask_runner.DaskRunner):
        """Beam's DaskRunner with the translations this pipeline needs (module doc)."""

        def run_pipeline(self, pipeline, options):
            import dask
            import dask.distributed as ddist
            from apache_beam.runners.dask.overrides import dask_overrides

            if _quiet():
                logging.getLogger("distributed").setLevel(QUIET_LEVEL)
            dask_options = options.view_as(dask_runner.DaskOptions).get_all_options(
                drop_default=True, current_only=True
            )
            bag_kwargs = dask_runner.DaskOptions._extract_bag_kwargs(dask_options)
            cluster = None
            if not dask_options.get("address") and not dask_options.get("scheduler_file"):
                export_import_path()
                workers = options.view_as(LocalDaskOptions).dask_local_workers
                sizes = {} if workers is None else {"n_workers": workers, "threads_per_worker": 1}
                # dask sets MALLOC_TRIM_THRESHOLD_ for its workers, which turns off
                # glibc's adaptive mmap threshold: every record-batch-sized numpy
                # array is then mmapped and faulted in afresh (~40% slower here).
                environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
                environ.pop("MALLOC_TRIM_THRESHOLD_", None)
                if _quiet():
                    environ[LOG_LEVEL_VARIABLE] = logging.getLevelName(QUIET_LEVEL).lower()
                with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                    cluster = ddist.LocalCluster(
                        host="127.0.0.1", processes=True, dashboard_address="127.0.0.1:0",
                        preload=[_WORKER_IGNORES_SIGINT], **sizes,
                    )
                dask_options["address"] = cluster
            client = ddist.Client(**dask_options)
            try:
                threads = sum(client.nthreads().values()) or 1
                partitions = bag_kwargs.get("npartitions") or min(PARTITIONS_PER_THREAD * threads, MAX_PARTITIONS)
                pipeline.replace_all([_lifting_override()])
                pipeline.replace_all(dask_overrides())
                leaves, metrics = _dask_translation(pipeline, partitions, bag_kwargs)
                # One compute for everything, so shared steps run once; results
                # stay on the workers (leaves are counted, not gathered).
                *futures, metrics_future = client.compute(leaves + [metrics])
            except BaseException:
                _stop_early(client, cluster)
                raise
            return _DaskResult(client, futures, metrics_future, cluster)

    return DaskRunner


def _concat_bags(bags):
    import dask.bag as db

    return db.concat(bags) if bags else db.from_sequence([], npartitions=1)


def __getattr__(name):
    # DaskRunner is built on first use, so importing this module needs no dask.
    if name == "DaskRunner":
        runner = _make_dask_runner()
        globals()["DaskRunner"] = runner
        return runner
    raise AttributeError(name)
