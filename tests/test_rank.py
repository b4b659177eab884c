"The review queue on generated photos: flipped labels rise to the top, duplicate conflicts come first, no model needed, accept applies."
import csv, os, shutil
from pathlib import Path
import pytest
import torch, torchvision
from cloud_classifier.rank import rank_folder, QUEUE_COLUMNS
from cloud_classifier.clean import REVIEW_COLUMNS
from cloud_classifier.data import synthetic_image_set
from cloud_classifier.core import Recipe
from conftest import run_cli, run_main

FLIPPED = {'b/a-0003.png': 'a', 'a/c-0004.png': 'c'}  # moved into the wrong class on purpose; not near-duplicates of others
BODY = dict(arch='mobilenet_v2', size=64)  # the pretrained body's recipe fields
RANK = dict(folds=3, C=0.01)

@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    "A local state-dict file, as offline users pass one: a randomly initialised MobileNetV2 (no download)."
    p = tmp_path_factory.mktemp('weights')/'mnv2.pth'
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), p)
    return p

@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    "Features are cached in a folder of this test, not the user's cache."
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    return tmp_path/'features'

def flipped_set(root:Path)->Path:
    "Three generated classes of ten photos, two of them filed under another class."
    data = synthetic_image_set(root/'data', {'a': 10, 'b': 10, 'c': 10}, size=48, seed=2)
    for dst in FLIPPED:
        src = data/Path(dst).name.split('-')[0]/Path(dst).name
        shutil.move(src, data/dst)
    return data

def test_flipped_labels_rise_to_the_top(tmp_path, weights, cache):
    data = flipped_set(tmp_path)
    q = rank_folder(data, recipe=Recipe(weights=weights, **BODY), **RANK)
    assert len(q) == 30 and list(q[0]) == QUEUE_COLUMNS
    assert {r['file']: r['suggested'] for r in q[:2]} == FLIPPED
    assert all(r['reason'].startswith('low label quality') for r in q[:2])
    assert [r['score'] for r in q] == sorted(r['score'] for r in q)
    assert any(cache.glob('mobilenet_v2-w*-64x64*.npz'))  # computed once, cached by file hash
    assert not (data/'.cache').exists()
    assert rank_folder(data, recipe=Recipe(weights=weights, **BODY), **RANK) == q  # from the cache: the same queue

def test_a_duplicate_conflict_comes_first(tmp_path, weights):
    data = flipped_set(tmp_path)
    shutil.copy(data/'b'/'b-0001.png', data/'c'/'copy.png')  # one photo under two labels
    q = rank_folder(data, recipe=Recipe(weights=weights, **BODY), **RANK)
    assert {r['file'] for r in q[:2]} == {'b/b-0001.png', 'c/copy.png'}
    by_file = {r['file']: r for r in q[:2]}
    assert by_file['c/copy.png']['reason'] == 'duplicate conflict with b/b-0001.png (b)'
    assert by_file['b/b-0001.png']['reason'] == 'duplicate conflict with c/copy.png (c)'
    assert {r['suggested'] for r in q[:2]} == {'b'}  # the likelier of the two labels, for both copies
    assert {r['file'] for r in q[2:4]} == set(FLIPPED)

def test_review_without_a_model_then_accept_applies_the_suggestion(tmp_path, weights):
    data = flipped_set(tmp_path)
    (data/'a'/'broken.jpg').write_bytes(b'\xff\xd8\xff not really a jpeg')
    out = tmp_path/'review.csv'
    r = run_cli('review', data, '--arch', 'mobilenet_v2', '--weights', weights, '--size', 64, '--out', out, '--top', 0)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == REVIEW_COLUMNS and len(rows) == 30 and 'a/broken.jpg' not in {r['file'] for r in rows}
    assert (f'skipped 1 file(s) that cannot be read as photos (left out of {out}): a/broken.jpg; '
            f'move them aside with: cloud-classifier data check {data.resolve()} --quarantine') in r.stderr.splitlines()
    page = out.with_suffix('.html').read_text()
    assert 'most likely wrong label first' in page and 'low label quality' in page and 'a/broken.jpg' in page
    top = {r['file']: r for r in rows[:3]}
    assert set(FLIPPED) <= set(top), rows[:5]
    for row in rows:
        if row['file'] in FLIPPED: row['action'] = 'accept'
    with open(out, 'w', newline='') as f:
        w = csv.DictWriter(f, REVIEW_COLUMNS); w.writeheader(); w.writerows(rows)
    r = run_cli('clean', data, '--apply', out)
    assert r.returncode == 0 and 'moved 2 file(s)' in r.stdout, r.stdout + r.stderr
    for f, label in FLIPPED.items(): assert (data/label/Path(f).name).is_file() and not (data/f).exists()

def test_loss_ranking_needs_a_model_and_accept_needs_a_suggestion(tmp_path, weights):
    data = flipped_set(tmp_path)
    r = run_main('review', data, '--rank', 'loss', '--out', tmp_path/'x.csv')
    assert r.returncode == 2 and 'needs a trained model' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    (tmp_path/'bad.csv').write_text('file,action\nb/a-0003.png,accept\n')
    r = run_main('clean', data, '--apply', tmp_path/'bad.csv')
    assert r.returncode == 2 and 'no suggested label' in r.stderr
    r = run_main('review', data, '--weights', 'none', '--out', tmp_path/'x.csv')
    assert r.returncode == 2 and 'pretrained body' in r.stderr and r.stderr.count('\n') == 1, r.stderr

def test_review_with_fine_tuned_folds(tmp_path, weights):
    "`--oof finetune` trains the recipe once per fold (for a GPU; here three small ones on the CPU) and writes the same queue columns; `--oof both` averages it with the probe."
    data = flipped_set(tmp_path)
    out = tmp_path/'review.csv'
    r = run_cli('review', data, '--arch', 'mobilenet_v2', '--weights', weights, '--size', 48, '--bs', 8, '--oof', 'finetune', '--epochs-frozen', 1, '--epochs', 1,
                '--out', out, '--top', 0)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == REVIEW_COLUMNS and len(rows) == 30
    assert [float(r['score']) for r in rows] == sorted(float(r['score']) for r in rows)  # lowest label quality first
    assert all(r['suggested'] in {'a', 'b', 'c'} and r['reason'] for r in rows)
    assert not any((tmp_path/'features').glob('*.npz'))  # no frozen features were needed
    scores = {}
    for oof in ('probe', 'both'):
        r = run_cli('review', data, '--arch', 'mobilenet_v2', '--weights', weights, '--size', 48, '--bs', 8, '--oof', oof, '--epochs-frozen', 1, '--epochs', 1,
                    '--out', tmp_path/f'{oof}.csv', '--top', 0)
        assert r.returncode == 0, r.stderr
        scores[oof] = {r['file']: float(r['score']) for r in csv.DictReader(open(tmp_path/f'{oof}.csv'))}
    tuned = {r['file']: float(r['score']) for r in rows}
    assert scores['both'].keys() == tuned.keys() == scores['probe'].keys()
    assert max(abs(scores['probe'][f] - tuned[f]) for f in tuned) > 0.01  # two different models, so the average is not either one
    # both: each photo's probabilities averaged over the probe and the fine-tuned folds, so its label quality too
    assert all(abs(scores['both'][f] - (scores['probe'][f] + tuned[f]) / 2) < 2e-4 for f in tuned), (scores, tuned)

def test_fine_tuned_folds_refuse_a_model(tmp_path):
    from tiny_model import tiny_model
    models, data, *_ = tiny_model(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    r = run_main('review', models/'export.pkl', data, '--oof', 'finetune', '--out', tmp_path/'x.csv')
    assert r.returncode == 2 and 'start from the pretrained weights' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before

def test_review_with_turns_ranks_on_the_turned_features(tmp_path, weights, cache):
    "`--turns` (photos with no up): the features are averaged over eight turns and mirror images, cached apart; the flipped labels still come first."
    data = flipped_set(tmp_path)
    out = tmp_path/'review.csv'
    r = run_cli('review', data, '--arch', 'mobilenet_v2', '--weights', weights, '--size', 64, '--turns', '--out', out, '--top', 0)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == REVIEW_COLUMNS and len(rows) == 30
    assert set(FLIPPED) <= {r['file'] for r in rows[:3]}, rows[:5]
    assert [p.name.split('-', 2)[-1] for p in cache.glob('*.npz')] == ['64x64-turns-flip.npz']
    before = out.read_bytes()
    r = run_main('review', data, '--weights', weights, '--turns', '--rank', 'loss', '--out', out)
    assert r.returncode == 2 and 'leave out --turns' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    r = run_main('review', data, '--weights', weights, '--turns', '--oof', 'finetune', '--out', out)
    assert r.returncode == 2 and 'give --oof probe or both with --turns' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert out.read_bytes() == before

def test_a_model_is_ranked_on_the_body_it_started_from(tmp_path, weights, cache):
    "A trained body has seen the labels it would rank: `review MODEL DATA` and the widget rank on the frozen body the model started from (the queue and cache of `review DATA` with those weights); `--features model` on its own body."
    from cloud_classifier.clean import CloudCleaner
    data = flipped_set(tmp_path)
    start = tmp_path/'start.pth'
    shutil.copy(weights, start)
    r = run_main('train', data, '--out', tmp_path/'models', '--arch', 'mobilenet_v2', '--weights', start, '--size', 64,
                 '--epochs-frozen', 1, '--epochs', 1, '--lr', 1e-3, '--bs', 8)
    assert r.returncode == 0, r.stderr
    model, out = tmp_path/'models'/'export.pkl', tmp_path/'review.csv'
    def queue(*args):
        r = run_main('review', *args, '--out', out, '--top', 0)
        assert r.returncode == 0, r.stderr
        return {row['file']: float(row['score']) for row in csv.DictReader(open(out))}
    def cached(): return sorted(p.name.split('-')[0] for p in cache.glob('*.npz'))
    started = queue(model, data)
    assert len(started) == 30 and cached() == ['mobilenet_v2']  # the pretrained body's features, nothing of the model's
    assert queue(data, '--arch', 'mobilenet_v2', '--weights', start, '--size', 64) == started  # the same queue as before training
    own = queue(model, data, '--features', 'model')
    assert len(cached()) == 2 and cached()[1].startswith('model') and own.keys() == started.keys()  # its own body's, beside them
    assert max(abs(own[f] - started[f]) for f in own) > 0.01  # the trained body's features rank differently
    def widget(**kw): return {r['file']: r['score'] for r in CloudCleaner(model, path=data, **kw).queue.values()}
    assert all(abs(s - started[f]) < 1e-3 for f, s in widget().items()) and widget().keys() == started.keys()
    assert all(abs(s - own[f]) < 1e-3 for f, s in widget(features='model').items())
    # the weights file has moved: one line that says where to give it, and nothing written; given, the same queue
    moved = tmp_path/'elsewhere.pth'
    start.rename(moved)
    before = out.read_bytes()
    r = run_main('review', model, data, '--out', out)
    assert r.returncode == 2 and f'the weights file {start} this model started from is not here' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert out.read_bytes() == before
    assert queue(model, data, '--weights', moved) == started
    r = run_main('review', data, '--features', 'model', '--out', out)
    assert r.returncode == 2 and 'needs the model: give MODEL' in r.stderr and r.stderr.count('\n') == 1, r.stderr
