"Cleaning never loses a photo: refusals, random rounds with undo, a killed apply, the Jupyter cleaner, review."
import csv, hashlib, os, re, shlex, shutil, signal, subprocess, tempfile, time
from collections import Counter
from pathlib import Path
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from cloud_classifier.core import UserError
from cloud_classifier.clean import (REVIEW_COLUMNS, CloudCleaner, apply_cleaner, apply_decisions, check_decisions,
                                    cleaning_status, read_decisions, undo_round)
from cloud_classifier.files import write_csv
from cloud_classifier.data import cloud_dataloaders, synthetic_image_set
from cloud_classifier.journal import Journal
from conftest import CLI, run_cli, run_main

def tree(root):
    "{relative path: bytes} of every file under `root` (trash included), the journal's folder left out."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob('*'))
            if p.is_file() and '.cleaning' not in p.parts}

def dirs(root): return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob('*') if p.is_dir() and '.cleaning' not in p.parts)
def hashes(root): return Counter(hashlib.sha256(b).hexdigest() for b in tree(root).values())
def same_round(t:dict)->dict:
    "`t` with the round number of trash folders blanked, to compare two applies of one plan."
    return {re.sub(r'^\.trash/\d+/', '.trash/R/', k): v for k, v in t.items()}

# ---------------------------------------------------------------- refusals

@pytest.fixture
def small(tmp_path):
    data = synthetic_image_set(tmp_path/'data', {'Cu': 3, 'St': 3}, size=16)
    (tmp_path/'outside.png').write_bytes((data/'Cu'/'Cu-0000.png').read_bytes())
    return data

BAD = {
    'unknown class': ('Cu/Cu-0000.png,Cumulsu\n', "unknown action or class 'Cumulsu'"),
    'missing file': ('Cu/Cu-0099.png,delete\n', 'Cu/Cu-0099.png does not exist'),
    'outside DATA': ('../outside.png,delete\n', '../outside.png is outside'),
    'outside DATA, absolute': ('{tmp}/outside.png,delete\n', 'outside.png is outside'),
    'not in a class folder': ('.trash/x.png,delete\n', 'is not in a class folder'),
    'duplicate rows': ('Cu/Cu-0000.png,delete\nCu/Cu-0000.png,St\n', 'Cu/Cu-0000.png appears twice (also line 3)'),
    'bad action': ('Cu/Cu-0000.png,remove it\n', "unknown action or class 'remove it'"),
    'empty action': ('Cu/Cu-0000.png,\n', 'no action for Cu/Cu-0000.png'),
}

@pytest.mark.parametrize('case', BAD)
def test_each_refusal_says_why_and_moves_nothing(small, case):
    body, msg = BAD[case]
    before = tree(small)
    review = small.parent/'review.csv'
    # one good row first: a refusal must stop it too
    review.write_text('file,action\nSt/St-0001.png,delete\n' + body.format(tmp=small.parent))
    r = run_main('clean', small, '--apply', review)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith('error: 1 problem(s) in the decisions, so nothing was moved'), r.stderr
    assert msg in r.stderr and 'line ' in r.stderr
    assert tree(small) == before
    assert Journal(small).rounds() == []

def test_many_problems_one_line_each(small):
    review = small.parent/'review.csv'
    review.write_text('file,action\nCu/nope.png,delete\nCu/Cu-0000.png,Cumulsu\nCu/Cu-0001.png,delete\nCu/Cu-0001.png,keep\n')
    r = run_main('clean', small, '--apply', review)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == 'error: 3 problem(s) in the decisions, so nothing was moved:'
    assert [l.split(':')[0].strip() for l in lines[1:]] == ['line 2', 'line 3', 'line 5']

@pytest.mark.parametrize('args, msg', [
    (('--apply', 'missing.csv'), 'review file missing.csv does not exist'),
    ((), 'give one of --apply'),
    (('--status', '--undo'), 'give one of --apply'),
    (('--undo', 'abc'), "round 'abc' is not a round number"),
    (('--undo',), 'nothing to undo'),
    (('--undo', '4'), 'no round 4'),
    (('--finish',), 'no interrupted round'),
])
def test_command_refusals(small, args, msg):
    before = tree(small)
    r = run_cli('clean', small, *args, cwd=small.parent)
    assert (r.returncode, r.stdout) == (2, '') and msg in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert tree(small) == before
    assert sorted(p.name for p in small.iterdir()) == ['Cu', 'St']  # no .cleaning folder or lock file left behind

def run_cli_read_only(folder, *args):
    "Run the command line with `folder` read-only: a read-only bind mount for root (whom chmod does not stop), else chmod."
    if os.geteuid() == 0:
        f, cmd = shlex.quote(str(folder)), ' '.join(shlex.quote(str(a)) for a in [*CLI, *args])
        r = subprocess.run(['unshare', '-m', 'sh', '-c', f'mount --bind {f} {f} && mount -o remount,ro,bind {f} && exec {cmd}'],
                           capture_output=True, text=True, timeout=600)
        if r.stderr.startswith(('unshare:', 'mount:')): pytest.skip(f'cannot make a read-only folder here: {r.stderr.strip()}')
        return r
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob('*')]}
    try:
        for p in modes: p.chmod(0o555 if p.is_dir() else 0o444)
        return run_cli(*args)
    finally:
        for p, m in modes.items(): p.chmod(m)

def test_read_only_data_folder_is_one_line(small):
    review = small.parent/'review.csv'
    review.write_text('file,action\nSt/St-0001.png,delete\n')
    before = tree(small)
    r = run_cli_read_only(small, 'clean', small, '--apply', review)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert 'cannot write' in r.stderr and ('read-only' in r.stderr or 'permission denied' in r.stderr)
    assert sorted(p.name for p in small.iterdir()) == ['Cu', 'St']
    assert tree(small) == before

def test_review_file_without_action_column_and_missing_data(small):
    (small.parent/'r.csv').write_text('file,label\nCu/Cu-0000.png,Cumulus\n')
    r = run_main('clean', small, '--apply', small.parent/'r.csv')
    assert r.returncode == 2 and 'has no action column' in r.stderr
    r = run_main('clean', small.parent/'nope', '--status')
    assert r.returncode == 2 and 'does not exist' in r.stderr

# ---------------------------------------------------------------- property test

CLASSES = ['Cu', 'St', 'rocks']
TARGETS = ['Cu', 'Cumulus', 'St', 'rocks', 'Altostratus', 'new:shells']
N = Counter()

class CleaningRounds(RuleBasedStateMachine):
    "Random applies (deletes, relabels, relabels back, name collisions) and undos over a generated image set."
    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.data = self.tmp/'data'
        for i, c in enumerate(CLASSES):
            (self.data/c).mkdir(parents=True)
            for j in range(4):  # the same names in every class, so relabels collide
                (self.data/c/f'{j}.png').write_bytes(f'{c}-{j}'.encode() * 40)
        (self.data/'rocks'/'twin.png').write_bytes(b'Cu-0' * 40)  # two files with one content
        self.original, self.original_dirs, self.hashes = tree(self.data), dirs(self.data), hashes(self.data)
        self.home = {v: k.split('/')[0] for k, v in self.original.items()}  # content -> original class
        N['examples'] += 1

    def files(self): return sorted(k for k in tree(self.data) if not k.startswith('.') and k != 'manifest.csv')
    def live(self): return [s['id'] for s in Journal(self.data).rounds() if s['status'] == 'applied']

    @rule(d=st.data())
    def apply(self, d):
        files = self.files()
        chosen = d.draw(st.lists(st.sampled_from(files), unique=True, min_size=1, max_size=6))
        decisions = []
        for f in chosen:
            a = d.draw(st.sampled_from(['keep', 'delete', 'back', *TARGETS]))
            if a == 'back': a = self.home[(self.data/f).read_bytes()]  # relabel back to where it came from
            decisions.append(dict(file=f, action=a))
        duplicate = d.draw(st.integers(0, 9)) == 0
        if duplicate: decisions.append(dict(decisions[0]))
        before = tree(self.data)
        if duplicate:
            with pytest.raises(UserError, match='appears twice'): apply_decisions(self.data, decisions)
            assert tree(self.data) == before
            N['refused'] += 1; return
        s = apply_decisions(self.data, decisions)
        N['apply'] += 1; N['moves'] += s['moves']
        assert s['moves'] == len(set(tree(self.data)) - set(before))

    @rule()
    def undo_last(self):
        if not self.live(): return
        N['undo'] += 1; N['moves'] += len(undo_round(self.data))

    @rule(d=st.data())
    def undo_any(self, d):
        live = self.live()
        if not live: return
        rid = d.draw(st.sampled_from(live))
        before = tree(self.data)
        try: N['moves'] += len(undo_round(self.data, rid)); N['undo'] += 1
        except UserError as e:  # a later round moved one of its files again
            assert 'first' in str(e) and tree(self.data) == before
            N['refused'] += 1

    @invariant()
    def no_photo_lost(self):
        assert hashes(self.data) == self.hashes
        N['checks'] += 1

    def teardown(self):
        try:
            while self.live(): N['moves'] += len(undo_round(self.data)); N['undo'] += 1
            assert tree(self.data) == self.original
            assert dirs(self.data) == self.original_dirs
        finally: shutil.rmtree(self.tmp)

def test_random_rounds_never_lose_a_photo(capsys):
    N.clear()
    run_state_machine_as_test(CleaningRounds, settings=settings(
        max_examples=int(os.environ.get('CLEAN_PROPERTY_EXAMPLES', 200)), stateful_step_count=10, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    with capsys.disabled():
        print(f"\nproperty test: {N['examples']} examples, {N['apply']} applies, {N['undo']} undos, {N['refused']} refusals, "
              f"{N['moves']} file moves, {N['checks']} hash checks")
    assert N['apply'] > 50 and N['undo'] > 20 and N['moves'] > 200

# ---------------------------------------------------------------- a killed apply

def _big_set(tmp_path):
    data = synthetic_image_set(tmp_path/'data', {'Cu': 60, 'St': 60, 'rocks': 60}, size=16)
    for c in ['St', 'rocks']: shutil.copy(data/'Cu'/'Cu-0000.png', data/c/'Cu-0000.png')  # names that collide
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob('*.png'))
    write_csv(data/'manifest.csv', [dict(file=f, **{'class': f.split('/')[0]}, status='ok', url=f'http://x/{i}')
                                    for i, f in enumerate(files)], ['file', 'class', 'status', 'url'])
    cycle = ['delete', 'St', 'Altostratus', 'keep', 'Cu', 'new:shells']
    write_csv(tmp_path/'review.csv', [dict(file=f, action=cycle[i % len(cycle)]) for i, f in enumerate(files)], ['file', 'action'])
    return data, tmp_path/'review.csv'

def _apply_and_kill(data, review, after):
    "Start `clean --apply` slowed down between moves; SIGKILL it once the journal holds `after` more moves."
    jf = data/'.cleaning/journal.jsonl'
    def n(): return jf.read_text().count('"op": "move"') if jf.exists() else 0
    start = n()
    p = subprocess.Popen([*CLI, 'clean', str(data), '--apply', str(review)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, CLOUD_CLASSIFIER_MOVE_DELAY='0.03'))
    deadline = time.time() + 120
    while n() - start < after and time.time() < deadline and p.poll() is None: time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    return n() - start

def _manifest_matches_disk(data):
    rows = list(csv.DictReader(open(data/'manifest.csv')))
    for r in rows:
        assert (data/r['file']).is_file(), r
        if r['status'] != 'trashed': assert r['file'].split('/')[0] in ('Cu', 'St', 'rocks', 'Altostratus', 'shells')
    return rows

def test_sigkill_midway_detected_undone_and_finished(tmp_path):
    data, review = _big_set(tmp_path)
    n = len(check_decisions(data, read_decisions(review)))
    original, manifest = tree(data), (data/'manifest.csv').read_text()
    moved = _apply_and_kill(data, review, after=30)
    assert 30 <= moved < n
    killed = tree(data)
    assert Counter(killed.values()) == Counter(original.values())  # every photo is somewhere
    # the next command says so and offers both ways out
    r = run_main('clean', data, '--status')
    assert r.returncode == 0 and 'interrupted' in r.stdout
    assert f'--finish' in r.stderr and '--undo 1' in r.stderr
    r = run_main('clean', data, '--apply', review)
    assert r.returncode == 2 and 'only partly' in r.stderr and '--finish | --undo 1' in r.stderr
    assert tree(data) == killed
    # undo restores the tree exactly
    r = run_main('clean', data, '--undo')
    assert r.returncode == 0, r.stderr
    assert tree(data) == original and (data/'manifest.csv').read_text() == manifest
    # the same list applied without a kill
    r = run_main('clean', data, '--apply', review)
    assert r.returncode == 0 and f'moved {n} file(s)' in r.stdout, r.stdout + r.stderr
    full, full_rows = same_round(tree(data)), _manifest_matches_disk(data)
    assert run_main('clean', data, '--undo').returncode == 0
    assert tree(data) == original
    # killed again, then finished: the same result as the apply that ran through
    _apply_and_kill(data, review, after=40)
    r = run_main('clean', data, '--finish')
    assert r.returncode == 0 and f'is applied: {n} file(s) moved' in r.stdout, r.stdout + r.stderr
    assert {k: v for k, v in same_round(tree(data)).items() if k != 'manifest.csv'} == {k: v for k, v in full.items() if k != 'manifest.csv'}
    rows = _manifest_matches_disk(data)
    assert [(r['url'], r['class'], r['status']) for r in rows] == [(r['url'], r['class'], r['status']) for r in full_rows]
    st = cleaning_status(data)
    assert [(s['status'], s['planned'], s['moved'], s['pending']) for s in st][-1] == ('applied', n, n, 0)
    assert run_main('clean', data, '--undo').returncode == 0
    assert tree(data) == original

# ---------------------------------------------------------------- the Jupyter cleaner and review

@pytest.fixture(scope='module')
def learned(tmp_path_factory):
    "A resnet18 (random weights) fitted for one epoch on 32-pixel generated images, and its data folder."
    from fastai.vision.all import vision_learner, resnet18
    data = synthetic_image_set(tmp_path_factory.mktemp('learned')/'data', {'Cu': 14, 'St': 14, 'rocks': 14}, size=32)
    dls = cloud_dataloaders(data, size=32, bs=8, item_tfms='resize', batch_tfms=None, seed=0, balance='none', valid_pct=0.3)
    learn = vision_learner(dls, resnet18, pretrained=False)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    return learn, data

def _dropdowns(cleaner): return [box.children[1] for box in cleaner.iw.widget.children]
def _show(cleaner, cat, ds): cleaner.dd_cats.value, cleaner.dd_ds.value = cat, ds

def test_cleaner_keeps_decisions_across_views_and_applies_them(learned, tmp_path, monkeypatch):
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    learn, data = learned
    original = tree(data)
    with learn.no_bar(): cleaner = CloudCleaner(learn)
    assert cleaner.path == data.resolve()
    def shown(cat, ds): _show(cleaner, cat, ds); return len(_dropdowns(cleaner))
    valid_cat = next(c for c in ['Cumulus', 'Stratus', 'rocks'] if shown(c, 'Valid'))
    train_cats = [c for c in ['Cumulus', 'Stratus', 'rocks'] if c != valid_cat][:2]
    views, want = {}, {}
    def mark(cat, ds, i, value):
        _show(cleaner, cat, ds)
        dd = _dropdowns(cleaner)[i]
        dd.value = value
        want[str(cleaner.iw.fns[i])] = value
        views[str(cleaner.iw.fns[i])] = (cat, ds, i)
    mark(train_cats[0], 'Train', 0, '<Delete>')
    mark(train_cats[0], 'Train', 1, valid_cat)
    mark(train_cats[1], 'Train', 0, train_cats[0])
    mark(train_cats[1], 'Train', 2, '<Delete>')
    mark(valid_cat, 'Valid', 0, '<Delete>')
    mark(train_cats[1], 'Train', 3, '<Delete>')
    mark(train_cats[1], 'Train', 3, '<Keep>')  # changed my mind: not a decision any more
    want.pop(str(cleaner.iw.fns[3]))
    assert cleaner.pending.value.startswith('5 decision(s) pending: 3 delete, 2 relabel')
    # back and forth: every mark is still shown where it was made
    for cat, ds in [(valid_cat, 'Train'), (train_cats[0], 'Valid'), (train_cats[0], 'Train'), (train_cats[1], 'Valid'),
                    (train_cats[1], 'Train'), (valid_cat, 'Valid'), (train_cats[0], 'Train')]:
        _show(cleaner, cat, ds)
        for f, (c, d, i) in views.items():
            if (c, d) == (cat, ds): assert _dropdowns(cleaner)[i].value == want.get(f, '<Keep>'), (f, cat, ds)
    assert {d['file']: d['action'] for d in cleaner.decisions()} == {f: ('delete' if v == '<Delete>' else v) for f, v in want.items()}
    s = apply_cleaner(cleaner)
    assert s['moves'] == 5 and cleaner.marks == {} and cleaner.pending.value.startswith('0 decision(s)')
    folder = {'Cumulus': 'Cu', 'Stratus': 'St', 'rocks': 'rocks'}
    for f, v in want.items():
        f = Path(f)
        assert not f.exists()
        if v == '<Delete>': assert (data/'.trash'/str(s['id'])/f.parent.name/f.name).read_bytes() == original[f'{f.parent.name}/{f.name}']
        else: assert (data/folder[v]/f.name).read_bytes() == original[f'{f.parent.name}/{f.name}']
    assert Counter(tree(data).values()) == Counter(original.values())
    # the views no longer offer the moved files
    _show(cleaner, train_cats[0], 'Train')
    assert not set(map(str, cleaner.iw.fns)) & set(want)
    undo_round(data)
    assert tree(data) == original

def test_cleaner_orders_each_view_by_the_queue(learned, tmp_path, monkeypatch):
    "By default each view shows its photos most likely mislabelled first; rank='loss' keeps fastai's ordering by loss."
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    learn, data = learned
    with learn.no_bar(): cleaner = CloudCleaner(learn)
    queue = list(cleaner.queue)
    assert len(queue) == 42 and all('reason' in r and 'suggested' in r for r in cleaner.queue.values())
    for cat in ['Cumulus', 'Stratus', 'rocks']:
        _show(cleaner, cat, 'Train')
        shown = [str(Path(f).resolve()) for f in cleaner.iw.fns]
        assert shown and shown == sorted(shown, key=queue.index)
    with learn.no_bar(): by_loss = CloudCleaner(learn, rank='loss')
    assert by_loss.queue == {}
    with pytest.raises(UserError, match='unknown ranking'): CloudCleaner(learn, rank='lose')

def test_cleaner_with_turns_ranks_on_the_turned_features(learned, tmp_path, monkeypatch):
    "turns=True (photos with no up): the queue comes from the body's features averaged over eight turns and mirror images, cached apart, and the order line says so."
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    learn, data = learned
    with learn.no_bar(): plain, turned = CloudCleaner(learn), CloudCleaner(learn, turns=True)
    assert sorted(p.name.endswith('-turns-flip.npz') for p in (tmp_path/'features').glob('*.npz')) == [False, True]
    assert set(turned.queue) == set(plain.queue) and [r['score'] for r in turned.queue.values()] != [r['score'] for r in plain.queue.values()]
    assert 'eight turns' in turned.order.value and 'eight turns' not in plain.order.value
    queue = list(turned.queue)
    for cat in ['Cumulus', 'rocks']:
        _show(turned, cat, 'Train')
        shown = [str(Path(f).resolve()) for f in turned.iw.fns]
        assert shown and shown == sorted(shown, key=queue.index)
    with pytest.raises(UserError, match="leave out turns=True"): CloudCleaner(learn, rank='loss', turns=True)

def sha_tree(root):
    "{relative path: sha256} of every file under `root` (trash included), the journal's folder left out."
    return {k: hashlib.sha256(v).hexdigest() for k, v in tree(root).items()}

def test_cleaner_mark_shown_apply_undo(learned, tmp_path, monkeypatch):
    "Drive the widget as a person does: marks by dropdown and by `mark`, the counts on the buttons, Apply and Undo by click."
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    learn, data = learned
    original = sha_tree(data)
    with learn.no_bar(): cleaner = CloudCleaner(learn, rank='loss')
    assert cleaner.order.value == 'Photos in each view: <b>highest loss first</b>.'
    assert (cleaner.dd_cats.description, cleaner.dd_ds.description) == ('label', 'split')
    assert (cleaner.apply_button.description, cleaner.apply_button.disabled) == ('Apply 0 moves', True)
    assert (cleaner.undo_button.description, cleaner.undo_button.disabled) == ('Undo last round', True)
    _show(cleaner, 'Stratus', 'Train')
    view = list(cleaner.shown)
    assert len(view) >= 3 and all(isinstance(f, Path) and f.parent.name == 'St' for f in view)
    losses = [cleaner.photos[str(f)]['loss'] for f in view]
    assert losses == sorted(losses, reverse=True)  # highest loss first
    # each photo's caption: file name, label, guess with probability, loss
    for f, box in zip(view, cleaner.iw.widget.children):
        cap = box.children[2].value
        p = cleaner.photos[str(f)]
        assert f.name in cap and 'label Stratus' in cap and f"loss {p['loss']:.2f}" in cap
        assert re.search(r'guess (Cumulus|Stratus|rocks) \(\d\.\d\d\)', cap) and 'score' not in cap
        assert {'cc-photo'} <= set(box._dom_classes) and 'cc-mark' in box.children[1]._dom_classes
    gone, relabelled = view[0], view[1]
    cleaner.mark(gone, 'delete')
    cleaner.mark(f'St/{relabelled.name}', 'Cu')  # relative to the data folder, by abbreviation
    assert [d.value for d in _dropdowns(cleaner)[:2]] == ['<Delete>', 'Cumulus']  # the dropdowns on screen follow
    _dropdowns(cleaner)[2].value = 'rocks'
    assert cleaner.apply_button.description == 'Apply 3 moves (1 delete, 2 relabel)'
    cleaner.mark(view[2], 'keep')  # changed my mind
    _dropdowns(cleaner)[3].value = 'Stratus'  # its own label: nothing to move
    assert cleaner.marks == {str(gone): '<Delete>', str(relabelled): 'Cumulus'}
    assert (cleaner.apply_button.description, cleaner.apply_button.disabled) == ('Apply 2 moves (1 delete, 1 relabel)', False)
    assert cleaner.pending.value.startswith('2 decision(s) pending: 1 delete, 1 relabel')
    # refusals: one line each, nothing marked
    for file, label, msg in [('St/nope.png', 'delete', "is not one of this cleaner's photos"),
                             (tmp_path/'elsewhere.png', 'delete', "is not one of this cleaner's photos"),
                             (gone, 'Cumulsu', "unknown label 'Cumulsu'"), (gone, '../x', "unknown label '../x'")]:
        with pytest.raises(UserError, match=re.escape(msg)) as e: cleaner.mark(file, label)
        assert '\n' not in str(e.value)
    assert len(cleaner.marks) == 2
    # switch views and come back: the marks are still shown
    _show(cleaner, 'rocks', 'Valid'); _show(cleaner, 'Cumulus', 'Train'); _show(cleaner, 'Stratus', 'Train')
    assert cleaner.shown == view and [d.value for d in _dropdowns(cleaner)[:3]] == ['<Delete>', 'Cumulus', '<Keep>']
    cleaner.apply_button.click()
    s = cleaner.rounds[-1]
    after = sha_tree(data)
    moved = {k: v for k, v in original.items() if k not in after}
    assert moved == {f'St/{gone.name}': original[f'St/{gone.name}'], f'St/{relabelled.name}': original[f'St/{relabelled.name}']}
    assert {k: v for k, v in after.items() if k not in original} == {
        f".trash/{s['id']}/St/{gone.name}": original[f'St/{gone.name}'], f'Cu/{relabelled.name}': original[f'St/{relabelled.name}']}
    assert cleaner.status.value.startswith(f"Round {s['id']} applied: 2 move(s), 1 deleted")
    assert cleaner.shown == [f for f in view if f not in (gone, relabelled)]  # they left the Stratus view
    assert (cleaner.apply_button.disabled, cleaner.marks) == (True, {})
    assert (cleaner.undo_button.description, cleaner.undo_button.disabled) == ('Undo last round (2 moves)', False)
    _show(cleaner, 'Cumulus', 'Train')
    assert (data/'Cu'/relabelled.name).resolve() in cleaner.shown  # under its new label
    cap = cleaner.iw.widget.children[cleaner.shown.index((data/'Cu'/relabelled.name).resolve())].children[2].value
    assert 'label Cumulus' in cap
    cleaner.undo_button.click()
    assert sha_tree(data) == original  # every photo back, byte for byte
    assert cleaner.status.value == f"Round {s['id']} undone: 2 photo(s) back where they were."
    assert (data/'Cu'/relabelled.name).resolve() not in cleaner.shown
    _show(cleaner, 'Stratus', 'Train')
    assert cleaner.shown == view
    assert (cleaner.undo_button.description, cleaner.undo_button.disabled) == ('Undo last round', True)
    with pytest.raises(UserError, match='this cleaner has applied no round'): cleaner.undo()
    assert Journal(data).summary(s['id'])['status'] == 'undone'

def test_cleaner_refusals_show_in_the_status_line(learned, tmp_path, monkeypatch):
    "A file gone since it was marked, or a round undone elsewhere: the status line says so and nothing moves."
    learn, data = learned
    original = sha_tree(data)
    with learn.no_bar(): cleaner = CloudCleaner(learn, rank='loss')
    _show(cleaner, 'rocks', 'Train')
    a, b = cleaner.shown[:2]
    cleaner.mark(a, 'delete'); cleaner.mark(b, 'delete')
    a.rename(tmp_path/a.name)
    try:
        cleaner.apply_button.click()
        assert 'does not exist' in cleaner.status.value and 'nothing was moved' in cleaner.status.value
        assert Journal(data).rounds() == [] or Journal(data).rounds()[-1]['status'] == 'undone'
    finally: (tmp_path/a.name).rename(a)
    assert sha_tree(data) == original and len(cleaner.marks) == 2
    s = cleaner.apply()
    assert s['moves'] == 2 and cleaner.shown[:2] != [a, b]
    undo_round(data, s['id'])  # from elsewhere: the command line, another cleaner
    assert sha_tree(data) == original
    assert cleaner.undo_button.disabled is False  # the cleaner finds out when asked
    cleaner.undo_button.click()
    assert 'already undone' in cleaner.status.value and sha_tree(data) == original
    cleaner._refresh()
    assert cleaner.undo_button.disabled

def test_cleaner_new_class_and_pages(learned, tmp_path, monkeypatch):
    "A relabel to a genus the model does not know gets its own view; a long view is paged, no photo left out."
    learn, data = learned
    original = sha_tree(data)
    with learn.no_bar(): cleaner = CloudCleaner(learn, rank='loss', max_n=4)
    _show(cleaner, 'Cumulus', 'Train')
    view = [p['file'] for k, p in cleaner.photos.items() if p['label'] == 'Cumulus' and p['split'] == 'Train']
    assert len(view) > 4 and cleaner.dd_page.layout.display is None
    pages = []
    for value in [v for _, v in cleaner.dd_page.options]:
        cleaner.dd_page.value = value
        pages.append(list(cleaner.shown))
    assert all(len(p) <= 4 for p in pages) and sorted(sum(pages, [])) == sorted(view)
    assert cleaner.dd_page.options[0][0] == f'1-4 of {len(view)}'
    f = pages[-1][0]
    cleaner.mark(f, 'Altostatus')  # misspelt, and not a class of the model
    assert cleaner.marks == {str(f): 'Altostratus'} and _dropdowns(cleaner)[0].value == 'Altostratus'
    assert cleaner.decisions() == [dict(file=str(f), action='Altostratus')]
    g = pages[-1][1]
    cleaner.mark(g, 'new:shells')
    assert cleaner.decisions()[1] == dict(file=str(g), action='new:shells')
    s = cleaner.apply()
    assert s['moves'] == 2 and (data/'Altostratus'/f.name).is_file() and (data/'shells'/g.name).is_file()
    assert list(cleaner.dd_cats.options) == ['Cumulus', 'Stratus', 'rocks', 'Altostratus', 'shells']
    _show(cleaner, 'Altostratus', 'Train')
    assert cleaner.shown == [(data/'Altostratus'/f.name).resolve()]
    assert 'loss -' in cleaner.iw.widget.children[0].children[2].value  # the model has no such class
    cleaner.undo()
    assert sha_tree(data) == original and not (data/'Altostratus').exists()
    assert list(cleaner.dd_cats.options) == ['Cumulus', 'Stratus', 'rocks']

def test_review_command_writes_csv_and_contact_sheet(learned, tmp_path, monkeypatch):
    from cloud_classifier.export import export_model
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    learn, data = learned
    export_model(learn, tmp_path)
    twin = data/'St'/'twin-of-Cu.png'
    shutil.copy(data/'Cu'/'Cu-0005.png', twin)  # the same photo filed under two classes: a label conflict
    try:
        out = tmp_path/'review.csv'
        r = run_main('review', tmp_path/'export.pkl', data, '--out', out, '--top', 7)
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(open(out)))
        assert list(rows[0]) == REVIEW_COLUMNS == ['file', 'label', 'predicted', 'probability', 'loss', 'score', 'suggested', 'reason', 'action']
        assert {r['action'] for r in rows} == {'keep'}
        assert {r['file'] for r in rows[:2]} == {'Cu/Cu-0005.png', 'St/twin-of-Cu.png'}  # the conflict comes first
        assert all(r['reason'].startswith('duplicate conflict with') for r in rows[:2])
        scores = [float(r['score']) for r in rows[2:7]]
        assert scores == sorted(scores)  # then the lowest label quality
        assert len(rows) == 7
        assert all((data/r['file']).is_file() and 0 <= float(r['probability']) <= 1 and r['suggested'] for r in rows)
        page = out.with_suffix('.html').read_text()
        assert page.count('<figure>') == len(rows) and page.count('data:image/jpeg;base64,') == len(rows)
        assert rows[0]['file'] in page and page.count('label conflict') == 2 and 'duplicate conflict with' in page
        # each card shows what the widget shows under a photo: file, label, guess and probability, loss, score, suggestion, reason
        for r, card in zip(rows, page.split('<figure>')[1:]):
            for want in [f"<code>{r['file']}</code>", f"label <b>{r['label']}</b>", f"guess <b>{r['predicted']}</b> ({float(r['probability']):.2f})",
                         f"loss {float(r['loss']):.2f}", f"score {float(r['score']):.2f}, suggested <b>{r['suggested']}</b>", r['reason']]:
                assert want in card, (want, card)
        # the file applies as it is (all keep: nothing moves)
        assert run_main('clean', data, '--apply', out).stdout.startswith('nothing to move')
        r = run_main('review', tmp_path/'export.pkl', data, '--out', tmp_path/'all.csv', '--top', 0)
        assert r.returncode == 0 and len(list(csv.DictReader(open(tmp_path/'all.csv')))) == 43
        # --rank loss keeps the model's highest loss first, the conflicts listed whatever their loss
        r = run_main('review', tmp_path/'export.pkl', data, '--out', tmp_path/'loss.csv', '--top', 7, '--rank', 'loss')
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(open(tmp_path/'loss.csv')))
        losses = [float(r['loss']) for r in rows[:7]]
        assert losses == sorted(losses, reverse=True) and 7 <= len(rows) <= 9
        assert {'Cu/Cu-0005.png', 'St/twin-of-Cu.png'} <= {r['file'] for r in rows}
        assert all(r['reason'] and r['suggested'] == r['predicted'] for r in rows)
        page = (tmp_path/'loss.html').read_text()
        assert 'highest loss first' in page and page.count('guess <b>') == page.count('<br>loss ') == len(rows)
    finally: twin.unlink()
    (tmp_path/'junk.pkl').write_bytes(b'not a pickle')  # beside the model card of export.pkl
    (tmp_path/'alone').mkdir(); (tmp_path/'alone'/'junk.pkl').write_bytes(b'not a pickle')
    for model, extra, msg in [('junk.pkl', (), 'does not match its model card'), ('alone/junk.pkl', (), 'no model_card.json with a hash'),
                              ('alone/junk.pkl', ('--no-hash-check',), 'is not a fastai export')]:
        r = run_main('review', tmp_path/model, data, '--out', tmp_path/'x.csv', *extra)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.count('\n') == 1, r.stderr
        assert not (tmp_path/'x.csv').exists()

def test_review_skips_files_that_are_no_photos(learned, tmp_path, monkeypatch):
    "A truncated JPEG, a text file named .jpg and an empty file stop neither ranking: left out of the CSV, named in one line."
    import io
    from PIL import Image
    from cloud_classifier.export import export_model
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    learn, data = learned
    export_model(learn, tmp_path)
    b = io.BytesIO(); Image.open(data/'Cu'/'Cu-0001.png').convert('RGB').save(b, 'JPEG')
    bad = {'Cu/cut-short.jpg': b.getvalue()[:len(b.getvalue()) // 2], 'St/notes.jpg': b'a text file, not a photo\n', 'rocks/empty.jpg': b''}
    for f, body in bad.items(): (data/f).write_bytes(body)
    try:
        for rank in ['oof', 'loss']:
            out = tmp_path/f'{rank}.csv'
            r = run_main('review', tmp_path/'export.pkl', data, '--out', out, '--rank', rank, '--top', 0)
            assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr
            lines = [l for l in r.stderr.splitlines() if l.startswith('skipped')]
            assert lines == [f'skipped 3 file(s) that cannot be read as photos (left out of {out}): {", ".join(sorted(bad))}; '
                             f'move them aside with: cloud-classifier data check {data.resolve()} --quarantine'], r.stderr
            rows = list(csv.DictReader(open(out)))
            assert len(rows) == 42 and not set(bad) & {r['file'] for r in rows}
            page = out.with_suffix('.html').read_text()
            assert page.count('<figure>') == 42 and all(f in page.split('<figure>')[0] for f in bad)
    finally:
        for f in bad: (data/f).unlink()

def test_review_and_cleaner_work_on_a_model_made_by_train(tmp_path, monkeypatch):
    "`cloud-classifier train` exports a learner without photos: review and the cleaner take it with the data folder."
    monkeypatch.setenv('CLOUD_CLASSIFIER_CACHE', str(tmp_path/'features'))
    import json
    from cloud_classifier.cli import main
    from cloud_classifier.clean import review
    from cloud_classifier.export import load_model
    from cloud_classifier.train import files_hash
    data = synthetic_image_set(tmp_path/'data', {'Cu': 12, 'St': 12, 'rocks': 12}, size=32)
    assert main(['train', str(data), '--out', str(tmp_path/'models'), '--arch', 'resnet18', '--weights', 'none', '--size', '32',
                 '--epochs-frozen', '1', '--epochs', '1', '--lr', '1e-3', '--bs', '8']) == 0
    model, card = tmp_path/'models'/'export.pkl', json.loads((tmp_path/'models'/'model_card.json').read_text())
    rows = review(model, data, tmp_path/'review.csv', top=5)
    assert len(rows) == 5 and {r['label'] for r in rows} <= {'Cumulus', 'Stratus', 'rocks'}
    original = tree(data)
    with pytest.raises(UserError, match=re.escape("CloudCleaner('models/export.pkl', path=DATA)")): CloudCleaner(load_model(model), path=data)
    cleaner = CloudCleaner(model, path=data)
    assert cleaner.path == data.resolve()
    # the views hold every photo, split as training split them
    train, valid = ([p['file'] for p in cleaner.photos.values() if p['split'] == split] for split in ('Train', 'Valid'))
    assert (len(train), len(valid)) == (card['data']['n_train'], card['data']['n_valid']) and len(train) + len(valid) == 36
    assert files_hash(train, data) == card['data']['train_files_sha256']
    cat = next(c for c in ['Cumulus', 'Stratus', 'rocks'] if _show(cleaner, c, 'Valid') or _dropdowns(cleaner))
    gone = cleaner.iw.fns[0]
    _dropdowns(cleaner)[0].value = '<Delete>'
    _show(cleaner, 'rocks', 'Train'); _show(cleaner, cat, 'Valid')
    assert _dropdowns(cleaner)[0].value == '<Delete>'
    s = cleaner.apply()
    assert s['moves'] == 1 and not Path(gone).exists()
    undo_round(data)
    assert tree(data) == original
    # a file that is no photo, put there after training: left out of the views, and said so
    (data/'St'/'notes.jpg').write_text('a text file, not a photo')
    cleaner = CloudCleaner(model, path=data, rank='loss')
    assert cleaner.skipped == ['St/notes.jpg'] and cleaner.status.value == 'Left out 1 file(s) that cannot be read as photos: St/notes.jpg'
    assert len(cleaner.photos) == 36
