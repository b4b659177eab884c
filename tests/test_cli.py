"The command line, run as a user runs it: in a fresh process."
import json
from conftest import run_cli, run_main, shared_dir
import pytest

def test_help_lists_every_command():
    r = run_cli('--help')
    assert r.returncode == 0
    for c in ['genera', 'data']: assert c in r.stdout
    r = run_cli('data', 'stats', '--help')
    assert r.returncode == 0 and '--classes' in r.stdout

def test_genera_prints_the_ten_genera():
    r = run_cli('genera')
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 11
    assert [l.split()[1] for l in lines[1:]] == ['Ci', 'Cc', 'Cs', 'Ac', 'As', 'Ns', 'Sc', 'St', 'Cu', 'Cb']
    assert 'above 6000 m' in lines[1]

def test_data_stats_counts_and_flags(image_set):
    r = run_main('data', 'stats', image_set, '--min', '11', '--json')
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st['counts'] == {'Cirrus': 14, 'Cumulus': 12, 'rocks': 10}
    assert st['low'] == ['rocks'] and st['total'] == 36
    r = run_main('data', 'stats', image_set, '--min', '11')
    assert 'rocks' in r.stdout and 'too few' in r.stdout and 'Cumulus' in r.stdout

def test_data_stats_merges_folders_of_one_genus(image_set):
    (image_set/'Cu').rename(image_set/'cumulus')
    r = run_main('data', 'stats', image_set, '--json', '--classes', 'Cu', 'Ci')
    assert json.loads(r.stdout)['counts'] == {'Cumulus': 12, 'Cirrus': 14}

def _error(r):
    "The one-line error of a failed command."
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == '' and 'Traceback' not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]

def test_data_errors_are_one_line(image_set, tmp_path):
    before = sorted(p.name for p in image_set.rglob('*'))
    assert 'does not exist' in _error(run_main('data', 'stats', tmp_path/'missing'))
    (tmp_path/'flat').mkdir(); (tmp_path/'flat'/'a.jpg').write_bytes(b'x')
    assert 'has no class folders' in _error(run_main('data', 'stats', tmp_path/'flat'))
    assert 'class Stratus not found' in _error(run_main('data', 'stats', image_set, '--classes', 'St'))
    assert 'is a file' in _error(run_main('data', 'stats', tmp_path/'flat'/'a.jpg'))
    assert sorted(p.name for p in image_set.rglob('*')) == before

@pytest.mark.skipif(not shared_dir('data', 'ccsn'), reason='../shared/data/ccsn is not here')
def test_data_stats_on_ccsn():
    r = run_cli('data', 'stats', shared_dir('data', 'ccsn'), '--json')
    st = json.loads(r.stdout)
    assert st['total'] == 2001 and st['counts']['Cumulus'] == 135

def test_choices_match_the_library():
    "The commands offer exactly the choices the library accepts, taken from torch-free modules so that --help needs no torch."
    import subprocess, sys
    code = 'import sys, cloud_classifier.cli; print("torch" in sys.modules)'
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout.strip() == 'False'

    from cloud_classifier import cli
    from cloud_classifier.core import BALANCES, AUGMENTATIONS
    from cloud_classifier.runtime import ENGINES
    want, seen = {'--balance': set(BALANCES), '--aug': set(AUGMENTATIONS), '--engine': set(ENGINES)}, set()
    for name, c in cli._COMMANDS.items():
        for names, kw in c['args']:
            if names[0] in want:
                assert set(kw['choices']) == want[names[0]], f"{name} {names[0]}"
                seen.add(names[0])
    assert seen == set(want)

# ---------------------------------------------------------------- train packages a complete model; cloud-check

FAST = ['--arch', 'resnet18', '--weights', 'none', '--size', '32', '--epochs-frozen', '1', '--epochs', '1', '--lr', '1e-3', '--bs', '8']

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "(model folder, data folder) of a model made by `cloud-classifier train` on a generated set."
    from cloud_classifier.data import synthetic_image_set
    root = tmp_path_factory.mktemp('trained')
    data = synthetic_image_set(root/'data', {'Cu': 14, 'cirrus': 14, 'rocks': 14}, size=40, seed=3)
    r = run_cli('train', data, '--out', root/'models', *FAST, '--onnx')
    assert r.returncode == 0, r.stderr[-3000:]
    return root/'models', data

def test_train_packages_a_complete_model_folder(trained):
    "One packaging step: export.pkl, its card with the cloud check, and (asked with --onnx) model.onnx made from that very export."
    models, _ = trained
    card = json.loads((models/'model_card.json').read_text())
    assert {'export.pkl', 'model_card.json', 'model.onnx'} <= {p.name for p in models.iterdir()}
    assert card['cloud_check']['n_train'] > 0
    assert card['onnx']['source_sha256'] == card['export_sha256']
    assert not (models/'checkpoints').exists()  # a finished run needs none (train --keep-checkpoints keeps them)

def test_train_then_predict_says_a_chart_is_not_a_cloud_photo(trained, tmp_path):
    from tiny_model import chart_png
    models, data = trained
    assert 'cloud_check' in json.loads((models/'model_card.json').read_text())
    chart, photo = chart_png(tmp_path/'chart.png'), sorted((data/'Cu').iterdir())[0]
    r = run_cli('predict', models/'export.pkl', chart, photo, '--top-k', '0')
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f'{chart}: not a cloud photo'), lines
    assert lines[1].startswith(f'{photo}: ') and 'not checked' not in lines[1], lines

def test_cloud_check_command_fits_the_check_of_a_model_without_one(trained, tmp_path):
    import shutil
    models, data = trained
    old = tmp_path/'old'
    shutil.copytree(models, old, ignore=shutil.ignore_patterns('checkpoints', '*.png'))
    card = json.loads((old/'model_card.json').read_text())
    want = card.pop('cloud_check')
    (old/'model_card.json').write_text(json.dumps(card))  # as exported before the check existed
    r = run_main('cloud-check', old/'export.pkl', data)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"fitted on {want['n_train']} training photos" in r.stdout and str(old/'model_card.json') in r.stdout
    new = json.loads((old/'model_card.json').read_text())
    got = new.pop('cloud_check')
    assert new == card  # the rest of the card is as it was
    # the same training and validation photos as `train` used: the same check
    assert {k: got[k] for k in ('method', 'n_train', 'n_valid', 'layer')} == {k: want[k] for k in ('method', 'n_train', 'n_valid', 'layer')}
    assert got['threshold'] == pytest.approx(want['threshold'], rel=1e-3)
    from cloud_classifier.data import synthetic_image_set
    other = synthetic_image_set(tmp_path/'two', {'Cu': 4, 'St': 4}, size=32)
    assert "has no folder for the model's class(es) Cirrus, rocks" in _error(run_main('cloud-check', old, other))
    (old/'model_card.json').unlink()
    assert 'no model card' in _error(run_main('cloud-check', old, data, '--no-hash-check'))
def test_train_help_shows_the_recipe_defaults():
    "The options of `train` and `run` are made from `Recipe`: --help shows its defaults, choices and comments."
    import os, re, subprocess, sys
    from dataclasses import fields
    from cloud_classifier.core import Recipe
    from fastcore.docments import docments
    env = {**os.environ, 'COLUMNS': '400'}  # one line per option
    for cmd in ('train', 'run'):
        out = subprocess.run([sys.executable, '-m', 'cloud_classifier.cli', cmd, '--help'], capture_output=True, text=True, env=env).stdout
        blocks = {}  # option -> its help, joined over the lines argparse splits it into
        for l in out.splitlines():
            if l.startswith('  -'): opt = l.split()[0]; blocks[opt] = l
            elif l.startswith('    ') and blocks: blocks[opt] += ' ' + l.strip()
        docs = docments(Recipe)
        for f in fields(Recipe):
            block = ' '.join(blocks['--' + f.name.replace('_', '-')].split())
            assert block.endswith(f'(default: {getattr(Recipe(), f.name)})'), block
            assert docs[f.name] in block, block

# ---------------------------------------------------------------- numbers are checked where they are parsed

BAD_NUMBERS = [  # (arguments after the data/model paths, the option named in the message)
    (['predict', 'M', 'P', '--bs', '0'], '--bs must be at least 1, not 0'),
    (['predict', 'M', 'P', '--top-k', '-1'], '--top-k must be at least 0, not -1'),
    (['evaluate', 'M', 'D', '--bs', '-3'], '--bs must be at least 1, not -3'),
    (['cloud-check', 'M', 'D', '--bs', '0'], '--bs must be at least 1, not 0'),
    (['dedupe', 'D', '--threshold', '-5'], '--threshold must be at least 0, not -5'),
    (['dedupe', 'D', '--threshold', '65', '--remove'], '--threshold must be at most 64, not 65'),
    (['app', 'M', '--port', '99999'], '--port must be at most 65535, not 99999'),
    (['app', 'M', '--max-mb', '0'], '--max-mb must be more than 0, not 0.0'),
    (['scrape', 'D', '--per-class', '0'], '--per-class must be at least 1, not 0'),
    (['scrape', 'D', '--timeout', '0'], '--timeout must be more than 0, not 0.0'),
    (['download', 'U', 'D', '--label', 'Cu', '--workers', '0'], '--workers must be at least 1, not 0'),
    (['data', 'stats', 'D', '--min', '-1'], '--min must be at least 0, not -1'),
    (['train', 'D', '--lr-slice', '1e-4', '-1'], '--lr-slice must be more than 0, not -1.0'),
    (['run', 'R', '--data', 'D', '--per-class', '-2'], '--per-class must be at least 1, not -2'),
]

@pytest.mark.parametrize('argv,msg', BAD_NUMBERS, ids=[' '.join(a) for a, _ in BAD_NUMBERS])
def test_a_number_out_of_range_is_one_line_before_any_work(argv, msg, image_set, tmp_path, capsys):
    "Exit 2 with one line naming the option and its range; the data folder is unchanged and nothing is written."
    from cloud_classifier.cli import main
    (tmp_path/'urls.txt').write_text('http://127.0.0.1:9/a.jpg\n')
    paths = dict(M=tmp_path/'models', P=image_set/'Cu', D=image_set, U=tmp_path/'urls.txt', R=tmp_path/'run')
    before = {p: p.read_bytes() for p in image_set.rglob('*') if p.is_file()}
    listing = sorted(tmp_path.rglob('*'))
    assert main([str(paths.get(a, a)) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == '' and err.strip().splitlines() == [f'error: {msg}: see --help']
    assert {p: p.read_bytes() for p in image_set.rglob('*') if p.is_file()} == before
    assert sorted(tmp_path.rglob('*')) == listing

@pytest.mark.parametrize('label', ['../../x', 'a/b', '.trash'])
def test_a_class_label_never_leads_out_of_the_data_folder(label, tmp_path, capsys):
    "download --label ../../x once wrote photos outside DEST: now it is one line and nothing is written anywhere."
    from cloud_classifier.cli import main
    (tmp_path/'urls.txt').write_text('http://127.0.0.1:9/a.jpg\n')
    listing = sorted(tmp_path.rglob('*'))
    assert main(['download', str(tmp_path/'urls.txt'), str(tmp_path/'a'/'b'/'dest'), '--label', label]) == 2
    out, err = capsys.readouterr()
    assert out == '' and len(err.strip().splitlines()) == 1 and 'is not a class name' in err, err
    assert sorted(tmp_path.rglob('*')) == listing

@pytest.mark.parametrize('argv', [['review', 'D', '--out', 'NOWHERE/review.csv'], ['review', 'M', 'D', '--out', 'NOWHERE/review.csv'],
                                  ['export-onnx', 'M', '--out', 'NOWHERE/model.onnx'], ['evaluate', 'M', 'D', '--json', 'NOWHERE/eval.json']],
                         ids=['review', 'review-model', 'export-onnx', 'evaluate'])
def test_an_output_in_a_missing_folder_is_refused_before_any_work(argv, image_set, tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    from cloud_classifier.cli import main
    paths = dict(D=image_set, M=tmp_path/'models'/'export.pkl')
    listing = sorted(tmp_path.rglob('*'))
    assert main([str(paths.get(a, a)).replace('NOWHERE', str(tmp_path/'nowhere')) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and 'nowhere does not exist' in err, err
    assert sorted(tmp_path.rglob('*')) == listing
