"export.pkl + model card: loads and predicts in a fresh interpreter, refuses tampered files and files that are not exports."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
from fastai.vision.all import Transform
from cloud_classifier.core import UserError
from cloud_classifier.data import cloud_dataloaders, synthetic_image_set
from cloud_classifier.learner import make_learner
from cloud_classifier.train import train_model
from cloud_classifier.export import export_model, load_model, check_exportable
from cloud_classifier.images import file_sha256
from conftest import run_cli

@pytest.fixture(scope='module')
def image_set(tmp_path_factory):
    return synthetic_image_set(tmp_path_factory.mktemp('data'), {'Cu': 12, 'cirrus': 14, 'rocks': 10}, size=32)

@pytest.fixture(scope='module')
def trained(image_set, tmp_path_factory):
    "A small model trained from scratch once, exported with its card."
    out = tmp_path_factory.mktemp('models')
    learn, res = train_model(image_set, out, arch='resnet18', weights=None, size=32, bs=8, epochs_frozen=0, epochs=1, lr=1e-3,
                             balance='none', item_tfms='resize', batch_tfms=None, reports=False)
    return export_model(learn, out, metrics=res['metrics'], data=res['data'], args=res['args']), learn

@pytest.fixture
def exported(trained, tmp_path):
    "A copy of the export and its card that a test may change."
    fname, learn = trained
    for f in (fname, fname.parent/'model_card.json'): shutil.copy(f, tmp_path/f.name)
    return tmp_path/fname.name, learn

def test_card_holds_what_a_user_checks(exported):
    fname, learn = exported
    card = json.loads((fname.parent/'model_card.json').read_text())
    assert card['classes'] == ['Cirrus', 'Cumulus', 'rocks'] and card['arch'] == 'resnet18' and card['image_size'] == [32, 32]
    assert card['normalization'] is None and card['pretrained'] is False  # scratch: no ImageNet statistics
    assert card['export_sha256'] == file_sha256(fname)
    assert set(card['versions']) == {'python', 'torch', 'torchvision', 'fastai', 'cloud_classifier'}
    assert card['metrics']['valid']['n'] == card['data']['n_valid'] and len(card['data']['train_files_sha256']) == 64
    assert sum(card['data']['train_counts'].values()) == card['data']['n_train']
    assert card['training_args']['epochs'] == 1 and card['created_at'].endswith('+00:00')
    assert not list(fname.parent.glob('*.tmp'))

def test_loads_and_predicts_in_a_fresh_interpreter(exported, image_set, tmp_path):
    fname, learn = exported
    img = sorted((image_set/'rocks').iterdir())[0]
    expected = learn.predict(img)[2].tolist()
    code = ("import json, sys\n"
            "from cloud_classifier.export import load_model\n"
            f"learn = load_model({str(fname)!r})\n"
            f"p = learn.predict({str(img)!r})\n"
            "print(json.dumps({'cls': str(p[0]), 'probs': p[2].tolist(), 'vocab': list(learn.dls.vocab)}))\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res['vocab'] == ['Cirrus', 'Cumulus', 'rocks']
    assert res['probs'] == pytest.approx(expected, abs=1e-5)

def test_tampered_file_is_refused_unless_overridden(exported, image_set):
    fname, _ = exported
    data = bytearray(fname.read_bytes()); data[-100] ^= 1
    fname.write_bytes(bytes(data))
    with pytest.raises(UserError, match='does not match its model card'): load_model(fname)
    r = run_cli('evaluate', fname, image_set)
    assert r.returncode == 2 and r.stderr.startswith('error: ') and 'does not match its model card' in r.stderr
    assert r.stderr.count('\n') == 1

def test_files_that_are_not_exports(tmp_path, trained):
    fname, learn = trained
    (tmp_path/'random.pkl').write_bytes(os.urandom(4096))
    (tmp_path/'notes.pkl').write_text('just some text\n')
    torch.save(learn.model.state_dict(), tmp_path/'weights.pkl')
    with pytest.raises(UserError, match='not a fastai export'): load_model(tmp_path/'random.pkl', check_hash=False)
    with pytest.raises(UserError, match='not a fastai export'): load_model(tmp_path/'notes.pkl', check_hash=False)
    with pytest.raises(UserError, match='plain PyTorch state dict, not a fastai export'): load_model(tmp_path/'weights.pkl', check_hash=False)
    with pytest.raises(UserError, match='no model_card.json'): load_model(tmp_path/'weights.pkl')
    with pytest.raises(UserError, match='does not exist'): load_model(tmp_path/'missing.pkl')

def test_learner_with_a_lambda_is_not_exported(exported, tmp_path):
    _, learn = exported
    learn.dls.train.after_item.fs.append(Transform(lambda x: x))
    try:
        with pytest.raises(UserError, match='lambda'): export_model(learn, tmp_path/'out')
    finally: learn.dls.train.after_item.fs.pop(-1)
    assert not (tmp_path/'out'/'export.pkl').exists()
