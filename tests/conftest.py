import os, subprocess, sys
from pathlib import Path
import pytest
from cloud_classifier.data import synthetic_image_set

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, '-m', 'cloud_classifier.cli']

def run_cli(*args, cwd=None, timeout=600):
    "Run `cloud-classifier ARGS` in a fresh process; return the CompletedProcess."
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)

def shared_dir(*parts):
    "A folder under ../shared (or $CLOUD_CLASSIFIER_DATA for the data), or None when absent."
    if parts[:2] == ('data', 'ccsn') and os.environ.get('CLOUD_CLASSIFIER_DATA'):
        p = Path(os.environ['CLOUD_CLASSIFIER_DATA'])
    else: p = ROOT.parent/'shared'/Path(*parts)
    return p if p.exists() else None

@pytest.fixture
def image_set(tmp_path):
    "A generated three-class image set: Cu and cirrus folders (genera) and rocks (a class of our own)."
    return synthetic_image_set(tmp_path/'data', {'Cu': 12, 'cirrus': 14, 'rocks': 10}, size=32)

def run_main(*args):
    "Run `cloud-classifier ARGS` in this process (no interpreter start-up); a CompletedProcess like `run_cli`'s."
    import contextlib, io
    from cloud_classifier.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main(list(map(str, args)))
        except SystemExit as e: rc = e.code
    return subprocess.CompletedProcess(['cloud-classifier', *map(str, args)], rc, out.getvalue(), err.getvalue())
