"The command line, run as a user runs it: in a fresh process."
import json
from conftest import run_cli, shared_dir
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
    r = run_cli('data', 'stats', image_set, '--min', '11', '--json')
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st['counts'] == {'Cirrus': 14, 'Cumulus': 12, 'rocks': 10}
    assert st['low'] == ['rocks'] and st['total'] == 36
    r = run_cli('data', 'stats', image_set, '--min', '11')
    assert 'rocks' in r.stdout and 'too few' in r.stdout and 'Cumulus' in r.stdout

def test_data_stats_merges_folders_of_one_genus(image_set):
    (image_set/'Cu').rename(image_set/'cumulus')
    r = run_cli('data', 'stats', image_set, '--json', '--classes', 'Cu', 'Ci')
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
    assert 'does not exist' in _error(run_cli('data', 'stats', tmp_path/'missing'))
    (tmp_path/'flat').mkdir(); (tmp_path/'flat'/'a.jpg').write_bytes(b'x')
    assert 'has no class folders' in _error(run_cli('data', 'stats', tmp_path/'flat'))
    assert 'class Stratus not found' in _error(run_cli('data', 'stats', image_set, '--classes', 'St'))
    assert 'is a file' in _error(run_cli('data', 'stats', tmp_path/'flat'/'a.jpg'))
    assert sorted(p.name for p in image_set.rglob('*')) == before

@pytest.mark.skipif(not shared_dir('data', 'ccsn'), reason='../shared/data/ccsn is not here')
def test_data_stats_on_ccsn():
    r = run_cli('data', 'stats', shared_dir('data', 'ccsn'), '--json')
    st = json.loads(r.stdout)
    assert st['total'] == 2001 and st['counts']['Cumulus'] == 135

def test_choices_match_the_library():
    "The commands offer exactly the choices the library accepts (they are spelled out so that --help needs no torch)."
    from cloud_classifier import cli
    from cloud_classifier.data import BALANCES
    from cloud_classifier.core import AUGMENTATIONS
    from cloud_classifier.predict import ENGINES
    want, seen = {'--balance': set(BALANCES), '--aug': set(AUGMENTATIONS), '--engine': set(ENGINES)}, set()
    for name, c in cli._COMMANDS.items():
        for names, kw in c['args']:
            if names[0] in want:
                assert set(kw['choices']) == want[names[0]], f"{name} {names[0]}"
                seen.add(names[0])
    assert seen == set(want)

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
