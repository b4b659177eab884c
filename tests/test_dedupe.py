"De-duplication on a set with resized / re-encoded copies and a cross-class copy, through the library and the command line."
import io, json, os
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import run_cli, shared_dir
from cloud_classifier.dedupe import THRESHOLD, find_duplicates, split_groups, remove_duplicates, undo_dedupe, hash_distances
from cloud_classifier.images import image_files, file_sha256
from cloud_classifier.journal import Journal
from cloud_classifier.files import write_csv
from cloud_classifier.manifest import MANIFEST_COLS, read_manifest

def _sky(seed, size=(320, 240)):
    "A smooth generated picture: a gradient with soft coloured blobs."
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]] / max(size)
    a = np.zeros((size[1], size[0], 3)) + rng.uniform(60, 200, 3) * (0.6 + 0.4 * yy[..., None])
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, .75), rng.uniform(.05, .25)
        a += rng.uniform(-120, 120, 3) * np.exp(-((xx - cx)**2 + (yy - cy)**2) / r**2)[..., None]
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))

def _save_jpeg(im, p, q): im.save(p, 'JPEG', quality=q)

@pytest.fixture
def dup_set(tmp_path):
    "Cumulus: photo 1 as PNG, resized, re-encoded, an exact copy; photo 2. Stratus: photo 3, photo 4 (also in Cirrus)."
    root = tmp_path/'data'
    for c in ('Cumulus', 'Stratus', 'Cirrus'): (root/c).mkdir(parents=True)
    one = _sky(1); one.save(root/'Cumulus'/'one.png')
    _save_jpeg(one.resize((160, 120), Image.Resampling.LANCZOS), root/'Cumulus'/'one-small.jpg', 80)
    _save_jpeg(one, root/'Cumulus'/'one-q40.jpg', 40)
    (root/'Cumulus'/'one-copy.png').write_bytes((root/'Cumulus'/'one.png').read_bytes())
    _sky(2).save(root/'Cumulus'/'two.png')
    _sky(3).save(root/'Stratus'/'three.png')
    four = _sky(4); four.save(root/'Stratus'/'four.png')
    _save_jpeg(four.resize((240, 180)), root/'Cirrus'/'four.jpg', 85)
    return root

def _names(root, group): return [str(r.path.relative_to(root)) for r in group.files]

def test_groups_copies_and_reports_a_cross_class_copy(dup_set):
    groups = find_duplicates(dup_set)
    assert [_names(dup_set, g) for g in groups] == [
        ['Cumulus/one.png', 'Cumulus/one-copy.png', 'Cumulus/one-q40.jpg', 'Cumulus/one-small.jpg'],
        ['Stratus/four.png', 'Cirrus/four.jpg']]
    inner, conflict = groups
    assert not inner.conflict and not inner.exact and inner.keep == dup_set/'Cumulus'/'one.png'
    assert conflict.conflict and conflict.classes == ['Cirrus', 'Stratus'] and conflict.redundant == []

def test_exact_copies_alone_form_an_exact_group(dup_set):
    for p in ('one-small.jpg', 'one-q40.jpg'): (dup_set/'Cumulus'/p).unlink()
    g = find_duplicates(dup_set)[0]
    assert g.exact and len(g.files) == 2

def test_split_groups_maps_every_grouped_file(dup_set):
    sg = split_groups(dup_set)
    assert len(sg) == 6 and len(set(sg.values())) == 2
    assert sg[str(dup_set/'Cumulus'/'one-small.jpg')] == sg[str(dup_set/'Cumulus'/'one.png')]
    assert sg[str(dup_set/'Cirrus'/'four.jpg')] == sg[str(dup_set/'Stratus'/'four.png')]
    assert str(dup_set/'Cumulus'/'two.png') not in sg

def test_remove_moves_to_trash_and_undo_restores(dup_set):
    before = {str(p.relative_to(dup_set)): file_sha256(p) for p in image_files(dup_set, recurse=True)}
    moved = remove_duplicates(dup_set)
    assert sorted(str(b.relative_to(dup_set)) for a, b in moved) == [
        '.trash/1/Cumulus/one-copy.png', '.trash/1/Cumulus/one-q40.jpg', '.trash/1/Cumulus/one-small.jpg']
    left = sorted(str(p.relative_to(dup_set)) for p in image_files(dup_set, recurse=True))
    assert left == ['Cirrus/four.jpg', 'Cumulus/one.png', 'Cumulus/two.png', 'Stratus/four.png', 'Stratus/three.png']
    assert [s['kind'] for s in Journal(dup_set).rounds()] == ['dedupe']
    assert remove_duplicates(dup_set) == []  # a second run finds nothing more to move
    undo_dedupe(dup_set)
    assert {str(p.relative_to(dup_set)): file_sha256(p) for p in image_files(dup_set, recurse=True)} == before
    assert Journal(dup_set).rounds()[-1]['status'] == 'undone'

def test_cli_dedupe_reports_removes_and_undoes(dup_set):
    r = run_cli('dedupe', dup_set)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('2 duplicate group(s): 1 within a class (3 redundant file(s)), 1 label conflict(s)')
    assert 'CONFLICT Cirrus / Stratus' in r.stdout and len(image_files(dup_set, recurse=True)) == 8
    r = run_cli('dedupe', dup_set, '--remove')
    assert r.returncode == 0 and 'moved 3 file(s)' in r.stdout and len(image_files(dup_set, recurse=True)) == 5
    assert len(list((dup_set/'.trash').rglob('*.*'))) == 3
    r = run_cli('dedupe', dup_set, '--undo')
    assert r.returncode == 0 and 'put back 3 file(s)' in r.stdout and len(image_files(dup_set, recurse=True)) == 8

def test_remove_marks_the_manifest_and_undo_restores_it(dup_set):
    rows = [dict(file=p.relative_to(dup_set).as_posix(), url=f'http://x/{i}', status='ok', fetched_at='t', **{'class': p.parent.name})
            for i, p in enumerate(sorted(image_files(dup_set, recurse=True)))]
    write_csv(dup_set/'manifest.csv', rows, MANIFEST_COLS)
    before = (dup_set/'manifest.csv').read_bytes()
    r = run_cli('dedupe', dup_set, '--remove')
    assert r.returncode == 0, r.stderr
    got = read_manifest(dup_set)
    assert sorted(r['file'] for r in got if r['status'] == 'trashed') == [
        '.trash/1/Cumulus/one-copy.png', '.trash/1/Cumulus/one-q40.jpg', '.trash/1/Cumulus/one-small.jpg']
    assert all((dup_set/r['file']).is_file() for r in got) and len(got) == len(rows)
    r = run_cli('dedupe', dup_set, '--undo')
    assert r.returncode == 0, r.stderr
    assert (dup_set/'manifest.csv').read_bytes() == before

def test_cli_dedupe_errors_are_one_line(tmp_path):
    for args in [(tmp_path/'missing',), (tmp_path, '--undo')]:
        r = run_cli('dedupe', *args)
        assert r.returncode == 2 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'does not exist' in run_cli('dedupe', tmp_path/'missing').stderr
    assert list(tmp_path.iterdir()) == []  # `--undo` with nothing to undo leaves no .cleaning folder behind

def test_remove_in_a_read_only_folder_is_one_line(dup_set):
    from test_clean import run_cli_read_only
    before = {p: p.read_bytes() for p in image_files(dup_set, recurse=True)}
    r = run_cli_read_only(dup_set, 'dedupe', dup_set, '--remove')
    assert r.returncode == 2 and 'Traceback' not in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert 'cannot write' in r.stderr
    assert {p: p.read_bytes() for p in image_files(dup_set, recurse=True)} == before
    assert not (dup_set/'.cleaning').exists() and not (dup_set/'.trash').exists()
