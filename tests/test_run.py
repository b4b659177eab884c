"The main job, `cloud-classifier run`, end to end in fresh processes: offline from a local folder, and stopped at every stage and run again."
import csv, io, json, os, re, select, shutil, signal, subprocess, sys, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import ROOT, run_cli, run_main
from cloud_classifier.data import synthetic_image_set

FAST = ['--arch', 'resnet18', '--weights', 'none', '--size', '32', '--epochs-frozen', '1', '--epochs', '1',
        '--lr', '1e-3', '--bs', '8']

def _listing(d):
    "Every entry under `d` with its modification time, links not followed (the folder holds a link loop)."
    return sorted((os.path.relpath(os.path.join(r, n), d), os.lstat(os.path.join(r, n)).st_mtime_ns)
                  for r, ds, fs in os.walk(d) for n in ds + fs)

def _with_duplicates_and_loops(data):
    "A copy within a class, one photo filed under two classes, a class the run leaves out, and two link loops."
    shutil.copy(data/'Cu'/'Cu-0000.png', data/'Cu'/'copy.png')
    shutil.copy(data/'Cb'/'Cb-0000.png', data/'cirrus'/'also-cb.png')
    synthetic_image_set(data, {'St': 3}, size=32); shutil.copy(data/'St'/'St-0000.png', data/'St'/'copy.png')
    os.symlink('b.png', data/'Cb'/'a.png'); os.symlink('a.png', data/'Cb'/'b.png')  # a loop named like photos
    os.symlink('..', data/'Cu'/'up')  # a folder that leads back up
    return data

def test_run_from_a_local_folder_writes_every_artefact(tmp_path):
    data = _with_duplicates_and_loops(synthetic_image_set(tmp_path/'photos', {'Cu': 14, 'Cb': 14, 'cirrus': 14}, size=32))
    before = _listing(data)
    dest = tmp_path/'run'
    r = run_cli('run', dest, '--data', data, '--classes', 'Cu', 'Cb', 'cirrus', *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    models = dest/'models'
    for f in ['export.pkl', 'model_card.json', 'valid.json', 'confusion_valid.png', 'losses.png', 'top_losses.png']:
        assert (models/f).exists() and (models/f).stat().st_size > 0, f
    card = json.loads((models/'model_card.json').read_text())
    assert card['classes'] == ['Cirrus', 'Cumulonimbus', 'Cumulus'] and card['arch'] == 'resnet18'
    for k in ['image_size', 'normalization', 'metrics', 'data', 'versions', 'export_sha256', 'created_at', 'training_args', 'cloud_check']:
        assert k in card, k
    assert card['data']['n_train'] + card['data']['n_valid'] == 15 + 14 + 15  # the photos; the link loop is no photo
    assert card['cloud_check']['n_train'] == card['data']['n_train']  # packaged with the check, fitted on the training photos
    valid = json.loads((models/'valid.json').read_text())
    assert valid['n'] > 0 and abs(valid['accuracy'] + valid['error_rate'] - 1) < 1e-9
    assert len(valid['confusion']['matrix']) == 3
    assert 'validation: error' in r.stdout and 'export.pkl' in r.stdout
    # a log, not a terminal: stage headings, each stage's end, one line per epoch, no progress bar redrawn
    out = r.stdout.splitlines()
    assert '\r' not in r.stdout
    assert [l for l in out if l.startswith('==')] == ['== 1/5 photos ==', '== 2/5 dedupe ==', '== 3/5 train ==', '== 4/5 export ==',
                                                      '== 5/5 cloud check ==']
    assert [l.split(' done in ')[0] for l in out if ' done in ' in l] == ['photos', 'dedupe', 'train', 'export', 'cloud check', 'run']
    assert [l.split(':')[0] for l in out if l.startswith('epoch ')] == ['epoch 1/1 (frozen)', 'epoch 1/1 (unfrozen)']
    assert any(l.startswith('cloud check: ') for l in out)  # said before the check is fitted
    # the duplicates: one line, the full list in a file, the class left out not looked at
    summary = rf"dedupe: \d+ groups, \d+ redundant photos left in place, 1 label conflict; the full list is in {re.escape(str(dest/'duplicates.txt'))}"
    assert sum(bool(re.fullmatch(summary, l)) for l in out) == 1, out
    listed = (dest/'duplicates.txt').read_text()  # (the generated cirrus photos are near copies of each other too)
    assert 'Cu/copy.png' in listed and 'CONFLICT Cirrus / Cumulonimbus: Cb/Cb-0000.png, cirrus/also-cb.png' in listed and 'St/' not in listed
    # the user's folder is read, never changed
    assert _listing(data) == before
    # the export loads in a fresh interpreter, through the hash-checked loader
    img = sorted((data/'Cb').glob('*.png'))[0]
    code = ("from cloud_classifier.export import load_model\n"
            f"learn = load_model({str(models/'export.pkl')!r})\n"
            f"print(list(learn.dls.vocab), learn.predict({str(img)!r})[0])")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "['Cirrus', 'Cumulonimbus', 'Cumulus']" in p.stdout
    # re-running skips every stage, and says so first
    mtime = (models/'export.pkl').stat().st_mtime_ns
    r2 = run_cli('run', dest, '--data', data, '--classes', 'Cu', 'Cb', 'cirrus', *FAST)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert r2.stdout.startswith(f'{dest}: every stage was done before'), r2.stdout[:500]
    assert 'skipped' in r2.stdout and (models/'export.pkl').stat().st_mtime_ns == mtime

def test_a_class_folder_that_loops_back_is_refused_by_run_as_by_train(tmp_path):
    data = synthetic_image_set(tmp_path/'photos', {'Cu': 10, 'Cb': 10}, size=32)
    os.symlink('.', data/'again')  # a class folder that is the data folder itself
    for cmd in (['run', tmp_path/'run', '--data', data], ['train', data, '--out', tmp_path/'models']):
        r = run_main(*cmd, *FAST)
        assert r.returncode == 2 and r.stderr.strip() == f'error: class folder again in {data} has no images: add images or leave the class out with --classes'
    assert not (tmp_path/'run'/'models').exists() and not (tmp_path/'models'/'export.pkl').exists()

def test_run_errors_are_one_line(tmp_path):
    r = run_cli('run', tmp_path/'run', '--data', tmp_path/'missing', *FAST)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and 'does not exist' in r.stderr
    assert r.stdout == '' and not (tmp_path/'run').exists()  # refused before the run's folder or first heading

def test_run_offline_stops_at_the_search_naming_the_offline_route(tmp_path, monkeypatch):
    # every search request goes to a proxy port where nothing listens: the search service is unreachable
    monkeypatch.setenv('DDGS_PROXY', 'http://127.0.0.1:9')
    r = run_cli('run', tmp_path/'run', '--classes', 'Cu', 'Cb', '--per-class', '2', *FAST)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1
    assert 'could not be reached' in line and f'cloud-classifier run {tmp_path/"run"} --data DIR' in line
    assert not list((tmp_path/'run').rglob('*.png'))

def _blocks(seed:int, side:int=64)->Image.Image:
    "A photo of random coloured blocks: its perceptual hash is far from any other's."
    a = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(a).resize((side, side), Image.Resampling.NEAREST)

def _png(im:Image.Image)->bytes:
    b = io.BytesIO(); im.save(b, 'PNG'); return b.getvalue()

def _web_photos()->dict:
    "Class -> {name: bytes}: ten photos each, two of them smaller copies of others, and one photo filed under both classes."
    cu = {f'u{i}.png': _png(_blocks(i)) for i in range(7)}
    cb = {f'b{i}.png': _png(_blocks(100 + i)) for i in range(8)}
    cu |= {f'u{i}-small.png': _png(_blocks(i, 48)) for i in (0, 1)} | {'shared.png': cb['b0.png']}
    cb |= {f'b{i}-small.png': _png(_blocks(100 + i, 48)) for i in (1, 2)}
    return {'Cumulus': cu, 'Cumulonimbus': cb}

class _Web(BaseHTTPRequestHandler):
    "The image search (`/search?q=...`: one URL a line) and the photos it finds (`/CLASS/NAME`)."
    def log_message(self, *a): pass
    def do_GET(self):
        u, photos = urllib.parse.urlparse(self.path), self.server.photos
        if u.path == '/search':
            q = urllib.parse.parse_qs(u.query)['q'][0]
            cls = next((c for c in sorted(photos, key=len, reverse=True) if c in q), None)
            body = '\n'.join(f'{self.server.url}/{cls}/{n}' for n in photos.get(cls, {})).encode()
        else:
            cls, _, name = u.path.strip('/').partition('/')
            body = photos.get(cls, {}).get(name)
            if body is None: self.send_response(404); self.send_header('Content-Length', '0'); self.end_headers(); return
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)

@pytest.fixture
def web():
    "A real HTTP server on 127.0.0.1 that answers image searches and serves the photos found."
    srv = ThreadingHTTPServer(('127.0.0.1', 0), _Web)
    srv.daemon_threads, srv.photos, srv.url = True, _web_photos(), f'http://127.0.0.1:{srv.server_port}'
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown(); srv.server_close()

@pytest.fixture
def launch(tmp_path):
    "`launch(args, env)` runs `cloud-classifier ARGS` in a process of its own (see tests/launch.py); a CompletedProcess."
    proc = subprocess.Popen([sys.executable, str(ROOT/'tests'/'launch.py')], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    runs = iter(range(1000))
    def answer():
        ready, _, _ = select.select([proc.stdout], [], [], 600)
        assert ready, 'no answer from tests/launch.py in 10 minutes'
        return proc.stdout.readline()
    assert answer().strip() == 'ready'
    def run(args, env):
        i = next(runs)
        out, err = tmp_path/f'stdout-{i}.txt', tmp_path/f'stderr-{i}.txt'
        proc.stdin.write(json.dumps(dict(argv=list(map(str, args)), env=env, out=str(out), err=str(err))) + '\n'); proc.stdin.flush()
        rc = json.loads(answer())['rc']
        return subprocess.CompletedProcess(args, rc, out.read_text(), err.read_text())
    yield run
    proc.stdin.close(); proc.wait(timeout=60)

EPOCHS = ['--arch', 'resnet18', '--weights', 'none', '--size', '32', '--epochs-frozen', '1', '--epochs', '3', '--lr', '1e-3', '--bs', '8']

def _result(dest:Path)->dict:
    "What a finished run left, in terms that do not depend on its folder or on how its training was cut up."
    data, card = dest/'data', json.loads((dest/'models'/'model_card.json').read_text())
    with open(data/'manifest.csv', newline='') as f: rows = list(csv.DictReader(f))
    return dict(photos=sorted(p.relative_to(data).as_posix() for p in data.glob('*/*.png') if not p.name.startswith('.')),
                trashed=sorted(p.name for p in (data/'.trash').rglob('*.png')),
                manifest=sorted((r['file'] if r['status'] == 'ok' else Path(r['file']).name, r['status']) for r in rows
                                if r['status'] in ('ok', 'trashed')),  # trashed: under the round that moved it
                rejected=sorted(r['reason'] for r in rows if r['status'] == 'failed'),
                duplicates=(dest/'duplicates.txt').read_text().splitlines()[1:],
                classes=card['classes'], data={k: v for k, v in card['data'].items() if k != 'path'},
                args={k: v for k, v in card['training_args'].items() if k != 'data'},
                cloud_check=(card['cloud_check']['n_train'], card['cloud_check']['n_valid']),
                checkpoints=(dest/'models'/'checkpoints').exists())

def test_a_run_stopped_at_every_stage_goes_on_and_ends_as_an_uninterrupted_one(tmp_path, web, launch):
    "Ctrl-C, then a kill, in each stage: the same command goes on from the last finished step, says so, and ends as a run never stopped."
    search = dict(CLOUD_TEST_SEARCH=web.url)
    dest = tmp_path/'run'
    args = ['run', dest, '--classes', 'Cu', 'Cb', '--per-class', '10', *EPOCHS]
    command = 'cloud-classifier ' + ' '.join(map(str, args))
    # (where it is stopped, the stage the run goes on with, what the resume line says it finds done)
    steps = [('download:SIGINT:3', None, None),
             ('download:SIGKILL:3', 'download', r'download \d+ of 20 photos'),
             ('dedupe:SIGINT:2', 'download', r'download \d+ of 20 photos'),
             ('dedupe:SIGKILL:2', 'dedupe', r'download done \(20 photos\), dedupe 1 of 4 copies moved'),
             ('train:SIGINT:1', 'dedupe', r'download done \(20 photos\), dedupe 2 of 4 copies moved'),
             ('train:SIGKILL:1', 'train', r'download done \(20 photos\), dedupe done, training 1 of 1 frozen and 0 of 3 unfrozen epochs done'),
             ('export:SIGINT', 'train', r'dedupe done, training 1 of 1 frozen and 1 of 3 unfrozen epochs done'),
             ('export:SIGKILL', 'export', r'dedupe done, training done'),
             ('cloud-check:SIGINT', 'export', r'dedupe done, training done'),
             ('cloud-check:SIGKILL', 'cloud check', r'dedupe done, training done, export done'),
             (None, 'cloud check', r'dedupe done, training done, export done')]
    stages = ['download', 'dedupe', 'train', 'export', 'cloud check']
    for stop, goes_on, found in steps:
        r = launch(args, search | (dict(CLOUD_TEST_STOP=stop) if stop else {}))
        first = r.stdout.splitlines()[0] if r.stdout else ''
        if goes_on is None: assert not first.startswith('resuming'), first
        else: assert re.fullmatch(rf'resuming {re.escape(str(dest))}: .*{found}; going on with {goes_on}', first), (stop, first)
        if stop is None: assert r.returncode == 0, r.stderr[-3000:]
        elif stop.split(':')[1] == 'SIGKILL': assert r.returncode == -signal.SIGKILL, (stop, r.returncode, r.stderr[-3000:])
        else:
            where = stop.split(':')[0].replace('-', ' ')
            assert r.returncode == 130, (stop, r.returncode, r.stderr[-3000:])
            line = r.stderr.strip().splitlines()[-1]
            assert line.startswith(f'interrupted in stage {stages.index(where) + 1}/5 {where}'), (stop, line)
            assert line.endswith(f'what was finished is kept: resume with the same command: {command}'), (stop, line)
    assert 'export.pkl was made from the same photos with the same settings; skipped' in r.stdout  # not trained again
    ref = launch(['run', tmp_path/'ref', '--classes', 'Cu', 'Cb', '--per-class', '10', *EPOCHS], search)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = ref.stdout
    assert not out.startswith('resuming')
    done, want = _result(dest), _result(tmp_path/'ref')
    assert done == want
    assert len(want['photos']) == 16 and len(want['trashed']) == 4 and want['rejected'] == [] and not want['checkpoints']
    line = next(l for l in out.splitlines() if l.startswith('dedupe: '))
    assert line == f"dedupe: 5 groups, 4 photos removed, 1 label conflict; the full list is in {tmp_path/'ref'/'duplicates.txt'}"
