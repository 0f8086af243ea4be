"""beam-head-eval: tf.estimator.BinaryClassHead evaluation on Apache Beam.

Installs the `head` (numpy semantics) and `pipeline` (Beam wiring) packages.
Also the --setup_file for Dataflow workers. Versions are pinned so installs
are reproducible.
"""

import setuptools

INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "numpy==2.4.6",
    "pyarrow==25.0.1",
    "pyyaml==6.0.3",
    # Strict JSON with numpy arrays, 30x Python's json (pipeline/strict_json.py).
    "orjson==3.13.0",
    # Student's t quantiles for confidence intervals.
    "scipy==1.17.1",
    # tf.train.Example decoding (tfx-bsl) and TFMA-compatible outputs.
    "tensorflow==2.21.0",
    "tfx-bsl==1.21.0",
    "tensorflow-model-analysis==0.52.0",
    # plots.png next to report.html (the Agg canvas only).
    "matplotlib==3.11.2",
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest==9.2.0",
        "hypothesis==6.170.15",
        "tf-keras==2.21.0",
    ],
    "dask": ["dask[distributed]==2026.8.0"],
}

setuptools.setup(
    name="beam-head-eval",
    version="0.1.0",
    description="Distributed evaluation of binary classifiers with BinaryClassHead semantics on Apache Beam",
    python_requires=">=3.10,<3.13",
    # configs/ and data/demo/ are also installed inside `pipeline` (as
    # pipeline/configs, pipeline/demo), so the defaults (configs/default.yaml,
    # the demo data) work from an installed package, on any working directory.
    packages=["head", "pipeline", "pipeline.configs", "pipeline.demo"],
    package_dir={"pipeline.configs": "configs", "pipeline.demo": "data/demo"},
    package_data={"pipeline": ["report.css", "report.js"], "pipeline.configs": ["*.yaml"],
                  "pipeline.demo": ["scores.parquet"]},
    py_modules=["run_pipeline"],
    # TFRecord framing and tf.train.Example decoding in C (pipeline/tfrecord.py
    # says why): built from the sdist on Dataflow workers too, whose images
    # have a C compiler.
    ext_modules=[
        setuptools.Extension(
            "pipeline._tfrecord",
            ["pipeline/_tfrecord.c", "pipeline/_example.c"],
            depends=["pipeline/_example.h"],
            extra_compile_args=["-O3"],
        )
    ],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["beam-head-eval=pipeline.cli:main"]},
)
