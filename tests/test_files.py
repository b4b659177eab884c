"Atomic writes on a read-only folder and a full disk: one line, the old file intact, no temporary file left."
import os, shlex, subprocess, sys
from pathlib import Path
import pytest

WRITE = "from cloud_classifier.files import atomic_write; atomic_write({path!r}, 'new' * 10_000)"

def _run(code, read_only=None, limit=None):
    "Run `code` in a fresh Python; `read_only`: a folder made read-only for it; `limit`: a file size limit in bytes."
    pre = f"import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n" if limit else ''
    code = pre + "from cloud_classifier.core import UserError\ntry:\n    " + code + "\nexcept UserError as e: print(e); raise SystemExit(2)"
    cmd = [sys.executable, '-c', code]
    if read_only is None: return subprocess.run(cmd, capture_output=True, text=True)
    if os.geteuid() == 0:  # chmod does not stop root: use a read-only bind mount
        f = shlex.quote(str(read_only))
        r = subprocess.run(['unshare', '-m', 'sh', '-c', f"mount --bind {f} {f} && mount -o remount,ro,bind {f} && exec {shlex.join(cmd)}"],
                           capture_output=True, text=True)
        if r.stderr.startswith(('unshare:', 'mount:')): pytest.skip(f'cannot make a read-only folder here: {r.stderr.strip()}')
        return r
    mode = read_only.stat().st_mode
    read_only.chmod(0o555)
    try: return subprocess.run(cmd, capture_output=True, text=True)
    finally: read_only.chmod(mode)

@pytest.mark.parametrize('how', ['read-only folder', 'disk full'])
def test_a_failed_write_is_one_line_and_leaves_the_old_file(tmp_path, how):
    target = tmp_path/'out.json'
    target.write_text('old')
    r = _run(WRITE.format(path=str(target)), **({'read_only': tmp_path} if how == 'read-only folder' else {'limit': 1000}))
    assert r.returncode == 2 and r.stderr == '', r.stderr
    assert r.stdout.startswith(f'cannot write {target}: ') and r.stdout.count('\n') == 1, r.stdout
    assert target.read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.json']

def test_a_full_device_is_one_line_and_stays_a_device():
    r = _run(WRITE.format(path='/dev/full'))
    assert r.returncode == 2 and r.stdout == 'cannot write /dev/full: the disk is full; free some space or choose another disk\n'
    assert Path('/dev/full').is_char_device()
