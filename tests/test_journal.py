"The write-ahead journal: rounds, never-overwrite moves, undo, and rounds killed at any point."
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import pytest
from cloud_classifier.core import UserError
from cloud_classifier.images import file_sha256
from cloud_classifier.journal import Journal, move_noreplace

ROOT = Path(__file__).resolve().parent.parent

def tree(root):
    "{relative path: bytes} of every file under `root`, the journal's folder left out."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob('*'))
            if p.is_file() and '.cleaning' not in p.parts}

def dirs(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob('*') if p.is_dir() and '.cleaning' not in p.parts)

@pytest.fixture
def root(tmp_path):
    r = tmp_path/'data'
    for c in ['Cu', 'St']:
        (r/c).mkdir(parents=True)
        for i in range(5): (r/c/f'{i}.jpg').write_bytes(f'{c}-{i}'.encode() * 50)
    return r

def test_round_moves_records_and_undoes(root):
    before, before_dirs = tree(root), dirs(root)
    j = Journal(root)
    with j.round('clean', meta={'why': 'test'}) as r:
        got = [r.move(root/'Cu/0.jpg', root/'St/0.jpg'), r.move(root/'Cu/1.jpg', root/'.trash/1/Cu/1.jpg'),
               r.move(root/'Cu/2.jpg', root/'NewClass/deep/2.jpg')]
    assert [p.relative_to(root).as_posix() for p in got] == ['St/0-1.jpg', '.trash/1/Cu/1.jpg', 'NewClass/deep/2.jpg']
    assert (root/'St/0.jpg').read_bytes() == before['St/0.jpg']
    recs = [json.loads(l) for l in (root/'.cleaning/journal.jsonl').read_text().splitlines()]
    assert [r['op'] for r in recs if r['op'] != 'mkdir'] == ['begin', 'move', 'move', 'move', 'commit']
    assert recs[0]['meta'] == {'why': 'test'}
    moves = [r for r in recs if r['op'] == 'move']
    assert moves[0]['sha256'] == file_sha256(root/'St/0-1.jpg')
    assert j.rounds()[0] | {'time': None} == dict(id=1, kind='clean', status='applied', moves=3, time=None, meta={'why': 'test'}, error=None)
    assert j.undo() == [(root/'Cu/2.jpg', root/'NewClass/deep/2.jpg'), (root/'Cu/1.jpg', root/'.trash/1/Cu/1.jpg'),
                        (root/'Cu/0.jpg', root/'St/0-1.jpg')]
    assert tree(root) == before and dirs(root) == before_dirs
    assert j.rounds()[0]['status'] == 'undone'
    with pytest.raises(UserError, match='nothing to undo'): j.undo()
    with pytest.raises(UserError, match='already undone'): j.undo(1)
    with pytest.raises(UserError, match='no round 7'): j.undo(7)

def test_refusals_move_nothing(root):
    before = tree(root)
    j = Journal(root)
    with j.round('clean') as r:
        with pytest.raises(UserError, match='that name is taken'): r.move(root/'Cu/0.jpg', root/'St/0.jpg', rename=False)
        with pytest.raises(UserError, match='outside'): r.move(root/'Cu/0.jpg', root.parent/'x.jpg')
        with pytest.raises(UserError, match='outside'): r.move(root/'Cu/0.jpg', 'Cu/../../x.jpg')
        with pytest.raises(UserError, match='no such file'): r.move(root/'Cu/9.jpg', root/'St/9.jpg')
    assert tree(root) == before

def test_vacated_names_stay_free_so_rounds_undo_on_their_own(root):
    before = tree(root)
    j = Journal(root)
    with j.round('clean') as r: r.move('Cu/0.jpg', 'St/0.jpg')           # -> St/0-1.jpg, Cu/0.jpg vacated
    with j.round('clean') as r: got = r.move('St/0.jpg', 'Cu/0.jpg')     # Cu/0.jpg is free but vacated
    assert got == root/'Cu/0-1.jpg'
    j.undo(1)                                                            # the older round first: still possible
    j.undo(2)
    assert tree(root) == before

def test_undo_refuses_when_a_later_round_moved_the_file(root):
    j = Journal(root)
    with j.round('clean') as r: r.move('Cu/0.jpg', 'St/x.jpg')
    with j.round('clean') as r: r.move('St/x.jpg', '.trash/2/St/x.jpg')
    snap = tree(root)
    with pytest.raises(UserError, match='undo round 2 first'): j.undo(1)
    assert tree(root) == snap
    j.undo(); j.undo()
    assert (root/'Cu/0.jpg').exists()

def test_a_torn_last_line_is_ignored(root):
    j = Journal(root)
    with j.round('clean') as r: r.move('Cu/0.jpg', 'St/x.jpg')
    with open(j.path, 'a') as f: f.write('{"op": "begin", "round": 2, "ki')   # a write cut off by a kill
    assert [s['id'] for s in j.rounds()] == [1]
    with j.round('clean') as r: r.move('Cu/1.jpg', 'St/y.jpg')
    assert [s['status'] for s in j.rounds()] == ['applied', 'applied']

def _fake_kill(j, root, state):
    "Journal two moves, make the first, and leave the second as a kill would: 'before' the move, or 'linked' halfway."
    j._write(op='begin', round=1, kind='clean', time='t', meta={})
    for seq, (s, d) in enumerate([('Cu/0.jpg', 'St/a.jpg'), ('Cu/1.jpg', 'St/b.jpg')]):
        j._write(op='move', round=1, seq=seq, src=s, dst=d, sha256=file_sha256(root/s), size=1, info={})
        if seq == 0: move_noreplace(root/s, root/d)
        elif state == 'linked': os.link(root/s, root/d)

@pytest.mark.parametrize('state', ['before', 'linked'])
def test_killed_round_can_be_finished_or_undone(root, state):
    before = tree(root)
    j = Journal(root)
    _fake_kill(j, root, state)
    assert [(s['id'], s['status']) for s in j.interrupted()] == [(1, 'interrupted')]
    with pytest.raises(UserError, match=r'--finish \| --undo 1'):
        with j.round('clean'): pass
    j.undo()
    assert tree(root) == before
    Journal(root).path.unlink()
    _fake_kill(j, root, state)
    s = j.finish()
    assert s['status'] == 'applied' and s['moves'] == (2 if state == 'linked' else 1)
    assert not (root/'Cu/0.jpg').exists() and (root/'St/a.jpg').exists()
    assert (root/'Cu/1.jpg').exists() != (state == 'linked')
    assert sorted(tree(root).values()) == sorted(before.values())
    j.undo()
    assert tree(root) == before

def _script(root, n, delay):
    return textwrap.dedent(f'''
        import os, sys, time
        from cloud_classifier.journal import Journal
        root = {str(root)!r}
        with Journal(root).round('dedupe') as r:
            for i in range({n}):
                r.move(f'Cu/{{i}}.jpg', f'.trash/dup/{{i}}.jpg')
                time.sleep({delay})
    ''')

def test_sigkill_midway_then_undo_or_finish(root):
    before = tree(root)
    def start():
        return subprocess.Popen([sys.executable, '-c', _script(root, 5, 0.5)], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    jf = root/'.cleaning/journal.jsonl'
    def n_moves(): return jf.read_text().count('"op": "move"') if jf.exists() else 0
    def kill_after(p, moves):
        moves += n_moves()
        deadline = time.time() + 60
        while time.time() < deadline:
            if n_moves() >= moves: break
            time.sleep(0.02)
        time.sleep(0.1)  # land in the pause after the move, not between its record and the move (a busy machine is slow there)
        os.kill(p.pid, signal.SIGKILL); p.wait()
    p = start()
    # while it runs, its round is 'running', and a second process is refused
    deadline = time.time() + 60
    while time.time() < deadline and not (root/'.cleaning/journal.jsonl').exists(): time.sleep(0.02)
    time.sleep(0.1)
    with pytest.raises(UserError, match='another process'): Journal(root).undo()
    assert Journal(root).rounds()[0]['status'] == 'running'
    kill_after(p, 2)
    j = Journal(root)
    assert j.interrupted()[0]['status'] == 'interrupted'
    j.undo()
    assert tree(root) == before
    p = start(); kill_after(p, 3)
    s = Journal(root).finish()
    assert s['status'] == 'applied' and s['moves'] >= 3
    assert sorted(tree(root).values()) == sorted(before.values())
    Journal(root).undo()
    assert tree(root) == before
