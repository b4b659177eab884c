"Files that are no usable photos: data check lists and quarantines them, the other commands name them or skip them."
import hashlib, json, os, socket, subprocess, sys
from pathlib import Path
import pytest
from PIL import Image
from conftest import CLI, ROOT, run_main
from cloud_classifier.data import synthetic_image_set, list_classes

def snapshot(root: Path) -> dict:
    "{relative path: sha256} of every file under `root` (symlinks as their target text)."
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath)/f
            body = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            out[p.relative_to(root).as_posix()] = hashlib.sha256(body).hexdigest()
    return out

def changed(before: dict, after: dict) -> set:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}

def outside(paths: set, *named: str) -> set:
    "The changed paths that lie in none of the `named` folders (relative to the snapshot's root)."
    return {p for p in paths if not any(p == n or p.startswith(n + '/') for n in named)}

def gif(path: Path, src: Path):
    "An animated GIF of the photo at `src`: the photo, then the photo flipped."
    im = Image.open(src).convert('RGB')
    im.save(path, save_all=True, append_images=[im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], duration=100)

BAD = {'Cu/empty.jpg': 'empty', 'Cu/page.jpg': 'not-an-image', 'cirrus/cut.png': 'corrupt', 'cirrus/clip.gif': 'animated',
       'rocks/icon.png': 'too-small', 'rocks/notes.jpg': 'not-an-image', 'rocks/zero.png': 'empty'}

@pytest.fixture
def bad_set(tmp_path):
    "Three classes of six photos, and seven files that are no usable photos (BAD)."
    data = synthetic_image_set(tmp_path/'data', {'Cu': 6, 'cirrus': 6, 'rocks': 6}, size=40)
    (data/'Cu'/'empty.jpg').write_bytes(b''); (data/'rocks'/'zero.png').write_bytes(b'')
    (data/'Cu'/'page.jpg').write_text('<html><body>not a photo</body></html>')
    (data/'rocks'/'notes.jpg').write_text('a text file named .jpg\n')
    (data/'cirrus'/'cut.png').write_bytes((data/'cirrus'/'cirrus-0000.png').read_bytes()[:300])
    gif(data/'cirrus'/'clip.gif', data/'cirrus'/'cirrus-0001.png')
    Image.new('RGB', (12, 12), 'white').save(data/'rocks'/'icon.png')
    return data

def test_data_check_lists_each_file_with_its_reason_and_changes_nothing(bad_set, tmp_path):
    before = snapshot(tmp_path)
    r = run_main('data', 'check', bad_set)
    assert r.returncode == 1 and r.stderr == '', r.stderr
    lines = r.stdout.splitlines()
    assert dict(l.split(': ', 1) for l in lines[:7]) == BAD
    assert lines[7] == f'7 of 25 image file(s) in {bad_set} are no usable photos (empty 2, not-an-image 2, animated 1, corrupt 1, too-small 1)'
    assert lines[8] == f'move them aside (journaled, undoable) with: cloud-classifier data check {bad_set} --quarantine'
    assert changed(before, snapshot(tmp_path)) == set()
    r = run_main('data', 'check', bad_set, '--classes', 'Cu')
    assert r.returncode == 1 and r.stdout.startswith('Cu/empty.jpg: empty\nCu/page.jpg: not-an-image\n2 of 8 ')
    good = synthetic_image_set(tmp_path/'good', {'Cu': 2, 'St': 2}, size=40)
    assert run_main('data', 'check', good).stdout == f'all 4 image file(s) in {good} are usable photos\n'
    assert run_main('data', 'check', good).returncode == 0

def test_quarantine_moves_them_aside_and_clean_undo_puts_them_back(bad_set, tmp_path):
    before = snapshot(tmp_path)
    r = run_main('data', 'check', bad_set, '--quarantine')
    assert r.returncode == 1 and r.stdout.splitlines()[-1] == \
        f'moved 7 file(s) to {bad_set/".trash"/"1"}; put them back with: cloud-classifier clean {bad_set} --undo 1'
    after = snapshot(tmp_path)
    assert outside(changed(before, after), 'data') == set()  # nothing written outside the data folder
    assert {p for p in after if p.startswith('data/.trash/')} == {f'data/.trash/1/{f}' for f in BAD}
    assert not {f for fs in list_classes(bad_set).values() for f in fs} & {bad_set/f for f in BAD}  # no longer photos of the set
    assert run_main('data', 'check', bad_set).returncode == 0
    assert json.loads(run_main('data', 'stats', bad_set, '--json').stdout)['unreadable'] == 0
    r = run_main('clean', bad_set, '--undo', '1')
    assert r.returncode == 0 and r.stdout == 'put back 7 file(s)\n'
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith('data/.cleaning/')} == before

def test_quarantine_in_a_read_only_folder_is_one_line(bad_set, tmp_path):
    if os.geteuid() == 0: pytest.skip('root writes into read-only folders')
    before = snapshot(tmp_path)
    mode = bad_set.stat().st_mode
    bad_set.chmod(0o555)
    try: r = run_main('data', 'check', bad_set, '--quarantine')
    finally: bad_set.chmod(mode)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'permission denied' in r.stderr, r.stderr
    assert snapshot(tmp_path) == before

def test_data_stats_counts_only_photos(bad_set):
    r = run_main('data', 'stats', bad_set, '--json')
    st = json.loads(r.stdout)
    # the animated GIF, the icon and the cut-off PNG open as images: only a data check decodes every pixel
    assert r.returncode == 0 and st['counts'] == {'Cirrus': 8, 'Cumulus': 6, 'rocks': 7} and st['unreadable'] == 4
    r = run_main('data', 'stats', bad_set)
    assert '4 file(s) named as images cannot be read and are not counted' in r.stdout
    assert r.stdout.splitlines()[-1] == f'list the unreadable files with: cloud-classifier data check {bad_set}'

def test_train_and_evaluate_name_five_bad_files_and_the_way_out(bad_set, tmp_path):
    for f in ('cirrus/clip.gif', 'rocks/icon.png'): (bad_set/f).unlink()  # usable for training: not named
    for i in range(3): (bad_set/'Cu'/f'more-{i}.jpg').write_bytes(b'\xff\xd8\xff\xe0 cut short')
    before = snapshot(tmp_path)
    r = run_main('train', bad_set, '--out', tmp_path/'m', '--weights', 'none', '--bs', 4)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr == (f'error: 8 image(s) in {bad_set} cannot be read: cirrus/cut.png (corrupt), Cu/empty.jpg (empty), '
                        f'Cu/more-0.jpg (corrupt), Cu/more-1.jpg (corrupt), Cu/more-2.jpg (corrupt) ... and 3 more; list them with '
                        f'their reasons and move them aside (undoably) with: cloud-classifier data check {bad_set} --quarantine (nothing was changed)\n')
    assert snapshot(tmp_path) == before and not (tmp_path/'m').exists()

def test_run_refuses_them_the_same_way(bad_set, tmp_path):
    r = subprocess.run([*CLI, 'run', str(tmp_path/'dest'), '--data', str(bad_set), '--weights', 'none', '--bs', '4'],
                       capture_output=True, text=True, timeout=300)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and 'Traceback' not in r.stderr and last.startswith('error: 5 image(s) in'), r.stderr
    assert '... and' not in last and f'data check {bad_set} --quarantine' in last

def test_dedupe_keeps_the_still_photo_over_its_animated_copy(tmp_path):
    data = synthetic_image_set(tmp_path/'data', {'Cu': 3, 'St': 3}, size=64)
    Image.linear_gradient('L').resize((96, 96)).convert('RGB').save(data/'Cu'/'photo.jpg', quality=90)
    gif(data/'Cu'/'photo.gif', data/'Cu'/'photo.jpg')  # as many pixels, more bytes
    (data/'St'/'notes.jpg').write_text('not a photo')
    r = run_main('dedupe', data, '--remove')
    assert r.returncode == 0, r.stderr
    assert 'keep Cu/photo.jpg; redundant: Cu/photo.gif' in r.stdout, r.stdout
    assert r.stderr == f'note: skipped 1 file(s) that cannot be read as images; list them with: cloud-classifier data check {data}\n'
    assert (data/'Cu'/'photo.jpg').exists() and (data/'.trash'/'1'/'Cu'/'photo.gif').exists()

def test_train_out_naming_a_file_is_refused_before_any_work(bad_set, tmp_path):
    (tmp_path/'model.pkl').write_text('mine')
    before = snapshot(tmp_path)
    r = run_main('train', bad_set, '--out', tmp_path/'model.pkl', '--weights', 'none')
    assert r.returncode == 2 and r.stderr == (f'error: {tmp_path/"model.pkl"} is a file, not a folder: give a folder for the model, '
                                              'its reports and checkpoints (nothing was written)\n')
    assert snapshot(tmp_path) == before

def test_app_on_a_port_in_use_is_one_line(tmp_path):
    pytest.importorskip('gradio')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); s.listen(); port = s.getsockname()[1]
        r = run_main('app', tmp_path/'no-model', '--port', port)
    assert r.returncode == 2 and r.stderr.startswith(f'error: cannot serve on 127.0.0.1:{port}: ') and r.stderr.count('\n') == 1
    r = run_main('app', tmp_path/'no-model', '--port', 99999)
    assert (r.returncode, r.stderr) == (2, 'error: --port must be at most 65535, not 99999: see --help\n')

def test_output_to_a_full_disk_or_a_closed_pipe_is_no_traceback():
    if not Path('/dev/full').exists(): pytest.skip('no /dev/full')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open('/dev/full', 'w') as full:
        r = subprocess.run([*CLI, 'genera'], stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stderr == 'error: cannot write the output: no space left on device; free some space or send the output elsewhere\n'
    rd, wr = os.pipe()
    os.close(rd)  # the reader is gone before the first line
    try: r = subprocess.run([*CLI, 'genera', '--json'], stdout=wr, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally: os.close(wr)
    assert r.returncode == 141 and r.stderr == ''
