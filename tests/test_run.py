"The main job, `cloud-classifier run`, end to end in a fresh process, as a newcomer runs it offline."
import json, subprocess, sys
import pytest
from conftest import run_cli
from cloud_classifier.data import synthetic_image_set

FAST = ['--arch', 'resnet18', '--weights', 'none', '--size', '32', '--epochs-frozen', '1', '--epochs', '1',
        '--lr', '1e-3', '--bs', '8']

def test_run_from_a_local_folder_writes_every_artefact(tmp_path):
    data = synthetic_image_set(tmp_path/'photos', {'Cu': 14, 'Cb': 14, 'cirrus': 14}, size=32)
    before = sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob('*'))
    dest = tmp_path/'run'
    r = run_cli('run', dest, '--data', data, *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    models = dest/'models'
    for f in ['export.pkl', 'model_card.json', 'valid.json', 'confusion_valid.png', 'losses.png', 'top_losses.png']:
        assert (models/f).exists() and (models/f).stat().st_size > 0, f
    card = json.loads((models/'model_card.json').read_text())
    assert card['classes'] == ['Cirrus', 'Cumulonimbus', 'Cumulus'] and card['arch'] == 'resnet18'
    for k in ['image_size', 'normalization', 'metrics', 'data', 'versions', 'export_sha256', 'created_at', 'training_args', 'cloud_check']:
        assert k in card, k
    assert card['cloud_check']['n_train'] == card['data']['n_train']  # packaged with the check, fitted on the training photos
    valid = json.loads((models/'valid.json').read_text())
    assert valid['n'] > 0 and abs(valid['accuracy'] + valid['error_rate'] - 1) < 1e-9
    assert len(valid['confusion']['matrix']) == 3
    assert 'validation: error' in r.stdout and 'export.pkl' in r.stdout
    # the user's folder is read, never changed
    assert sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob('*')) == before
    # the export loads in a fresh interpreter, through the hash-checked loader
    img = sorted((data/'Cb').iterdir())[0]
    code = ("from cloud_classifier.export import load_model\n"
            f"learn = load_model({str(models/'export.pkl')!r})\n"
            f"print(list(learn.dls.vocab), learn.predict({str(img)!r})[0])")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "['Cirrus', 'Cumulonimbus', 'Cumulus']" in p.stdout
    # re-running skips the finished training
    mtime = (models/'export.pkl').stat().st_mtime_ns
    r2 = run_cli('run', dest, '--data', data, *FAST)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert 'skipped' in r2.stdout and (models/'export.pkl').stat().st_mtime_ns == mtime

def test_run_errors_are_one_line(tmp_path):
    r = run_cli('run', tmp_path/'run', '--data', tmp_path/'missing', *FAST)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and 'does not exist' in r.stderr

def test_run_offline_stops_at_the_search_naming_the_offline_route(tmp_path, monkeypatch):
    # every search request goes to a proxy port where nothing listens: the search service is unreachable
    monkeypatch.setenv('DDGS_PROXY', 'http://127.0.0.1:9')
    r = run_cli('run', tmp_path/'run', '--classes', 'Cu', 'Cb', '--per-class', '2', *FAST)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1
    assert 'could not be reached' in line and f'cloud-classifier run {tmp_path/"run"} --data DIR' in line
    assert not list((tmp_path/'run').rglob('*.jpg'))

def _wait_for(cond, proc, timeout=300):
    import time
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < timeout, 'timed out'
        time.sleep(0.05)

def test_an_interrupted_run_resumes_when_the_same_command_is_run_again(tmp_path):
    "Ctrl-C, then a kill, in training lose only the epoch under way: the same command goes on from the last finished one."
    import signal
    from conftest import CLI
    data = synthetic_image_set(tmp_path/'photos', {'Cu': 14, 'Cb': 14, 'cirrus': 14}, size=32)
    dest = tmp_path/'run'
    args = ['run', dest, '--data', data, *FAST[:-6], '--epochs', '24', '--lr', '1e-3', '--bs', '8']
    prog = dest/'models'/'checkpoints'/'progress.json'
    done = {'frozen': 0, 'unfrozen': 0}
    for sig in ('SIGINT', 'SIGKILL'):
        proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: prog.exists() and json.loads(prog.read_text()).get('done', {}).get('unfrozen', 0) > done['unfrozen'], proc)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=300)
        if sig == 'SIGINT':
            assert proc.returncode == 130 and 'resume with the same command: cloud-classifier run' in err, err[-2000:]
        else: assert f"resuming {dest/'models'}: epochs done {done}" in out, out  # the run killed was itself a resumed one
        done = json.loads(prog.read_text())['done']
        assert done['frozen'] == 1 and 1 <= done['unfrozen'] < 24 and not (dest/'models'/'export.pkl').exists()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {dest/'models'}: epochs done {done}" in r.stdout, r.stdout
    card = json.loads((dest/'models'/'model_card.json').read_text())
    assert card['training_args']['epochs'] == 24 and 'cloud_check' in card
    assert not (dest/'models'/'checkpoints').exists()  # removed once the model is packaged
