"""The README says what the program does: its examples run as written."""

import json
import os
import re
import subprocess
import sys

import numpy as np

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(PROJECT_ROOT, "README.md")
NOTEBOOK_LEAD = "`head/` works on its own, e.g. in a notebook:"


def _readme():
    with open(README) as f:
        return f.read()


def _notebook_snippet():
    text = _readme()
    after = text[text.index(NOTEBOOK_LEAD) + len(NOTEBOOK_LEAD):]
    return re.match(r"\s*```python\n(.*?)```", after, re.S).group(1)


def test_the_notebook_snippet_runs_as_written_with_1d_arrays(tmp_path):
    """Run in a fresh interpreter from another directory, as a notebook would (head installed or on the path)."""
    snippet = _notebook_snippet()
    script = tmp_path / "snippet.py"
    script.write_text(snippet + "\nimport json\nprint(json.dumps(h.results(state)))\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=PROJECT_ROOT))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    results = json.loads(done.stdout.splitlines()[-1])
    # Its numbers, recomputed here from the same arrays (1-D, as the snippet makes them).
    namespace = {}
    exec(compile(snippet, "README.md notebook snippet", "exec"), namespace)
    logits, labels, w = namespace["logits"], namespace["labels"], namespace["w"]
    assert logits.ndim == labels.ndim == w.ndim == 1
    correct = (logits > 0) == (labels == 1)
    assert np.isclose(results["accuracy"], np.sum(w * correct) / np.sum(w), rtol=1e-6)
    assert np.isclose(results["label/mean"], np.sum(w * labels) / np.sum(w), rtol=1e-6)
    assert 0.4 < results["auc"] < 0.6  # random scores


def test_the_console_script_is_documented_as_the_same_program():
    text = _readme()
    assert "beam-head-eval" in text
    with open(os.path.join(PROJECT_ROOT, "setup.py")) as f:
        assert '"beam-head-eval=pipeline.cli:main"' in f.read()
    assert re.search(r"console\s+script\s+`beam-head-eval`", text)
