"""What --input names (pipeline/read.py: match_files, infer_format, format
sniffing; SPEC §4): a file pattern, a directory (every file under it except
names starting with `_` or `.`, as Hadoop and pyarrow.dataset list them, with
or without a trailing slash), or several of these (--input repeated). A file
of the wrong format is "not a TFRecord file" / "not a Parquet file": before
the pipeline runs for the first file (exit 2), while it runs for the others
(exit 1, or an unreadable file under `reject`).
"""

import os
import subprocess
import sys

import pytest

from pipeline.read import InputError, infer_format, match_files, sniff_format
from tests.datafiles import (
    RUN_PIPELINE,
    read_metrics,
    run_cli,
    scores,
    split_rows,
    write_config,
    write_parquet,
    write_tfrecord,
)

SIZES = (300, 200, 400)  # rows of the three data files


@pytest.fixture(scope="module")
def spark_output(tmp_path_factory):
    """A directory as Spark or Hadoop leave it: data files, a nested one, and files to skip."""
    root = tmp_path_factory.mktemp("inputs") / "scores"
    parts = split_rows(scores(sum(SIZES), seed=6), SIZES)
    os.makedirs(root / "region=eu")
    os.makedirs(root / "_temporary" / "0")
    os.makedirs(root / ".hidden")
    files = [
        write_parquet(root / "part-00000.snappy.parquet", parts[0]),
        write_parquet(root / "part-00001.snappy.parquet", parts[1]),
        write_parquet(root / "region=eu" / "part-00002.snappy.parquet", parts[2]),
    ]
    for skipped in ("_SUCCESS", ".part-00000.snappy.parquet.crc", "_temporary/0/part-00003.parquet",
                    ".hidden/part-9.parquet"):
        (root / skipped).write_bytes(b"not data")
    return str(root), files


# ---- which files ---------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_directory_is_every_file_under_it_but_hidden_and_underscore_names(spark_output, slash):
    root, files = spark_output
    assert match_files(root + slash) == sorted(files)


def test_several_inputs_are_all_their_files_each_once(spark_output, tmp_path):
    root, files = spark_output
    other = write_parquet(tmp_path / "more.parquet", scores(10))
    assert match_files([files[1], root, str(tmp_path / "*.parquet")]) == [files[1], files[0], files[2], other]


def test_each_input_must_match_something(spark_output, tmp_path):
    root, _ = spark_output
    with pytest.raises(InputError, match=f"^--input {tmp_path}/nothing-\\*.parquet: no files matched$"):
        match_files([root, str(tmp_path / "nothing-*.parquet")])
    os.makedirs(tmp_path / "empty")
    (tmp_path / "empty" / "_SUCCESS").write_bytes(b"")
    with pytest.raises(InputError, match="no files in the directory \\(names starting with _ or . are skipped\\)"):
        match_files(str(tmp_path / "empty"))


def test_a_directory_and_a_repeated_input_are_read_whole_and_once(spark_output, tmp_path):
    root, files = spark_output
    code = run_cli(["--input", root, "--input", files[0], "--output", tmp_path / "out"])
    assert code == 0
    document = read_metrics(tmp_path / "out")
    assert document["rows_read"] == sum(SIZES)
    assert document["run"]["input"] == [root, files[0]]


# ---- which format ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """The same rows as Parquet and TFRecord, named without extensions, and bytes of neither."""
    root = tmp_path_factory.mktemp("formats")
    columns = scores(120, seed=2)
    return {
        "parquet": write_parquet(root / "part-00000", columns),
        "tfrecord": write_tfrecord(root / "part-r-00000", columns),
        "neither": _write(root / "part-x", b"id,logits,label\n1,0.5,1\n"),
    }


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def test_the_format_of_files_without_an_extension_is_sniffed(formats):
    assert sniff_format(formats["parquet"]) == "parquet"
    assert sniff_format(formats["tfrecord"]) == "tfrecord"
    assert sniff_format(formats["neither"]) is None
    assert infer_format("in/", [formats["tfrecord"]]) == "tfrecord"
    with pytest.raises(InputError, match="cannot infer the format from the file names or the first file's bytes"):
        infer_format("in/", [formats["neither"]])


def test_parquet_and_tfrecord_files_in_one_run_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"both Parquet and TFRecord files \(a.parquet, b.tfrecord\)"):
        infer_format(["a.parquet", "b.tfrecord"], ["a.parquet", "b.tfrecord"])


def test_sniffed_tfrecord_runs_like_named_tfrecord(formats, tmp_path):
    assert run_cli(["--input", formats["tfrecord"], "--output", tmp_path / "out"]) == 0
    document = read_metrics(tmp_path / "out")
    assert (document["run"]["format"], document["rows_read"]) == ("tfrecord", 120)


@pytest.mark.parametrize(
    "given, wrong, expected",
    [("tfrecord", "parquet", "not a TFRecord file (it is a Parquet file: --format parquet)"),
     ("parquet", "tfrecord", "not a Parquet file (it is a TFRecord file: --format tfrecord)")],
)
def test_the_wrong_format_for_the_first_file_is_one_line_and_exit_2(formats, tmp_path, given, wrong, expected):
    done = subprocess.run(
        [sys.executable, RUN_PIPELINE, "--input", formats[wrong], "--format", given, "--output", tmp_path / "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == f"error: {formats[wrong]}: {expected}\n"


@pytest.fixture
def mixed(formats, tmp_path):
    """A TFRecord file first, then a Parquet file and a file of neither format, all .tfrecord."""
    os.makedirs(tmp_path / "in")
    for name, source in (("a", "tfrecord"), ("b", "parquet"), ("c", "neither")):
        os.link(formats[source], tmp_path / "in" / f"{name}.tfrecord")
    return str(tmp_path / "in")


def test_a_later_file_of_another_format_fails_the_run_naming_it(mixed, tmp_path, capsys):
    assert run_cli(["--input", mixed, "--output", tmp_path / "out"]) == 1
    assert capsys.readouterr().err == (
        f"error: {mixed}/b.tfrecord: not a TFRecord file (it is a Parquet file: --format parquet)\n"
    )


def test_under_reject_files_of_another_format_are_unreadable_files(mixed, tmp_path, capsys):
    config = write_config(tmp_path / "reject.yaml", invalid_rows={"policy": "reject", "max_fraction": 1.0})
    assert run_cli(["--input", mixed, "--config", config, "--output", tmp_path / "out"]) == 0
    unreadable = read_metrics(tmp_path / "out")["unreadable_files"]
    assert unreadable == [
        {"file": f"{mixed}/b.tfrecord", "rows_read_before_error": 0,
         "error": "not a TFRecord file (it is a Parquet file: --format parquet)"},
        {"file": f"{mixed}/c.tfrecord", "rows_read_before_error": 0,
         "error": "not a TFRecord file (its first record header fails its CRC check)"},
    ]


def test_bytes_of_neither_format_are_not_a_parquet_file(formats, tmp_path, capsys):
    path = tmp_path / "scores.parquet"
    os.link(formats["neither"], path)
    assert run_cli(["--input", path, "--output", tmp_path / "out"]) == 1
    assert capsys.readouterr().err == (
        f"error: {path}: not a Parquet file (it does not start with Parquet's magic PAR1)\n"
    )
