"The ONNX export: written by the command, run without PyTorch, the same answers as the PyTorch model."
import json, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from cloud_classifier.core import UserError
from cloud_classifier.card import read_card
from cloud_classifier.onnx import OnnxCloudClassifier
from cloud_classifier.predict import CloudClassifier
from cloud_classifier.runtime import load_classifier
from conftest import run_cli, ROOT
from tiny_model import tiny_model, chart_png

pytest.importorskip('onnxruntime', reason="needs the onnx extra: pip install 'cloud_classifier[onnx]'")


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    "A model whose learner crops (RandomResizedCrop) and normalises, exported by the command line."
    root = tmp_path_factory.mktemp('onnx')
    models, data, learn, dls = tiny_model(root, item_tfms='crop', normalize=True)
    r = run_cli('export-onnx', models/'export.pkl')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {models/'model.onnx'}")
    return models, data


def test_export_writes_model_and_card(exported):
    models, _ = exported
    card = read_card(models)
    assert (models/'model.onnx').exists() and not list(models.glob('.*'))
    assert card['onnx']['classes'] == ['Cirrus', 'Cumulus', 'rocks']
    assert card['preprocessing']['resize'][0]['kind'] == 'resized_crop' and card['preprocessing']['mean'] is not None
    assert {'cloud_check', 'preprocessing', 'onnx'} <= set(card)


def test_same_answers_as_pytorch(exported, tmp_path):
    models, data = exported
    files = sorted(p for c in ['Cu', 'cirrus', 'rocks'] for p in (data/c).iterdir())
    chart = chart_png(tmp_path/'chart.png')
    wide = tmp_path/'wide.jpg'
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 160, 3), dtype=np.uint8)).save(wide)
    inputs = files + [chart, wide, tmp_path/'missing.jpg']
    onnx_res = list(OnnxCloudClassifier.load(models).predict_many(inputs, bs=7))
    torch_res = list(CloudClassifier.load(models, engine='torch').predict_many(inputs, bs=7))
    assert len(onnx_res) == len(torch_res) == len(files) + 3
    for a, b in zip(onnx_res, torch_res):
        assert a.as_dict().keys() == b.as_dict().keys()
        assert (a.genus, a.is_cloud, a.error, a.file) == (b.genus, b.is_cloud, b.error, b.file)
        if a.error is None:
            assert list(a.probabilities) == list(b.probabilities)  # top-1 and the whole ranking agree
            np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-4)
            assert abs(a.cloud_score - b.cloud_score) <= 1e-2 * max(1, abs(b.cloud_score))
    assert onnx_res[-3].is_cloud is False and onnx_res[-1].error == 'not-found'


def test_runtime_imports_neither_torch_nor_fastai(exported):
    models, data = exported
    photo = sorted((data/'Cu').iterdir())[0]
    code = ("import sys, json\n"
            "from cloud_classifier.onnx import OnnxCloudClassifier\n"
            f"p = OnnxCloudClassifier.load({str(models)!r}).predict({str(photo)!r})\n"
            "print(json.dumps([p.genus, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fastai', 'torchvision'))]))\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    genus, imported = json.loads(r.stdout.strip().splitlines()[-1])
    assert imported == [] and genus in ('Cumulus', 'Cirrus', 'rocks')


def test_cli_predict_on_onnx(exported):
    models, data = exported
    r = run_cli('predict', models/'model.onnx', data/'rocks', '--json')
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 14


def test_load_classifier_chooses_the_engine(exported):
    models, _ = exported
    assert type(load_classifier(models/'model.onnx')) is OnnxCloudClassifier
    assert (load_classifier(models).engine, load_classifier(models, engine='torch').engine) == ('onnx', 'torch')
    with pytest.raises(UserError, match='ONNX Runtime only'): load_classifier(models/'model.onnx', engine='torch')


def test_tampered_or_missing_onnx_refused(exported, tmp_path):
    models, _ = exported
    for name in ['model.onnx', 'model_card.json']: (tmp_path/name).write_bytes((models/name).read_bytes())
    with open(tmp_path/'model.onnx', 'ab') as f: f.write(b'\0')
    with pytest.raises(UserError, match='does not match the sha256'): OnnxCloudClassifier.load(tmp_path/'model.onnx')
    with pytest.raises(UserError, match='export-onnx'): OnnxCloudClassifier.load(tmp_path/'other')
    (tmp_path/'model_card.json').write_text('{}')
    with pytest.raises(UserError, match='has no ONNX entry'): OnnxCloudClassifier.load(tmp_path)


def test_cloud_classifier_runs_on_onnx_runtime_when_its_model_matches(exported, tmp_path):
    models, data = exported
    files = sorted((data/'Cu').iterdir())
    fast, slow = CloudClassifier.load(models), CloudClassifier.load(models, engine='torch')
    assert (fast.engine, slow.engine) == ('onnx', 'torch')
    for a, b in zip(fast.predict_many(files), slow.predict_many(files)):
        assert (a.genus, a.is_cloud) == (b.genus, b.is_cloud)
        np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-4)
    r = run_cli('predict', models, files[0], '--json', '--engine', 'onnx')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]['genus'] == fast.predict(files[0]).genus
    # a changed model.onnx beside the export: auto falls back to PyTorch, --engine onnx says why and stops
    other = tmp_path/'models'
    other.mkdir()
    for p in models.iterdir(): (other/p.name).write_bytes(p.read_bytes())
    with open(other/'model.onnx', 'ab') as f: f.write(b'\0')
    assert CloudClassifier.load(other).engine == 'torch'
    r = run_cli('predict', other, files[0], '--engine', 'onnx')
    assert r.returncode == 2 and r.stdout == ''
    assert len(r.stderr.strip().splitlines()) == 1 and 'on ONNX Runtime' in r.stderr and 'does not match the sha256' in r.stderr
