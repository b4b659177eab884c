"""Bad inputs: the command line on more than 60 kinds of mistake, each checked for one line and no harm.

    python bench/bad_inputs.py [--keep DIR] [--only SUBSTRING] [--no-results]

Builds, in a temporary folder, a tiny generated data set and a tiny model (resnet18 at 32 px, one
epoch: tests/tiny_model.py), copies of the set with bad files (corrupt, empty, text and animated
"photos", an icon), with symlink loops, with a one-photo class, and read-only ones, then runs
`cloud-classifier` once per case in a fresh process and records:

- the exit code, and the first line of the message (stderr, else stdout);
- whether a Python traceback appeared;
- whether any data folder changed (sha256 of every file under sets/);
- whether a file was written, changed or removed outside the folders the case names as its
  outputs (the temporary folder is the whole world of a case: it is the working directory and HOME;
  the caches of matplotlib and torch and TMPDIR are folders of it that are not looked at, since
  onnxruntime leaves a session file `.ses` in TMPDIR on every start).

A case passes when it has no traceback, changes no data, writes nowhere else, and ends as it should:
a refusal (exit status not 0, at most one line on stderr), a correct exit 0, or, for output into a pipe
closed after its first line, a quiet end (exit 0 or 141, at most one line on stderr). Read-only cases run as
user `nobody` (setpriv) when this script runs as root, since root writes into read-only folders.
The table goes into the "Bad inputs" section of bench/RESULTS.md (replaced, the rest of the file kept).
Takes several minutes: each case starts an interpreter that imports PyTorch.
"""
import argparse, datetime, hashlib, os, platform, shlex, shutil, socket, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'tests'))
NOBODY = 65534
TRACEBACK = 'Traceback (most recent call last)'


# ------------------------------------------------------------------ the world a case runs in

def build(w: Path):
    "The model, the data sets and the other files the cases use, under `w`."
    from PIL import Image
    from tiny_model import tiny_model
    models, data, _, _ = tiny_model(w/'m')  # export.pkl + model card (with its cloud check) of the generated set
    sets = w/'sets'
    shutil.copytree(data, sets/'good')
    bad = shutil.copytree(data, sets/'bad')
    (bad/'Cu'/'empty.jpg').write_bytes(b''); (bad/'rocks'/'zero.png').write_bytes(b'')
    (bad/'Cu'/'page.jpg').write_text('<html><body>not a photo</body></html>')
    (bad/'rocks'/'notes.jpg').write_text('a text file named .jpg\n')
    first = sorted((bad/'cirrus').iterdir())[0]
    (bad/'cirrus'/'cut.png').write_bytes(first.read_bytes()[:300])
    (bad/'cirrus'/'cut-short.jpg').write_bytes(b'\xff\xd8\xff\xe0 cut short')
    im = Image.open(first).convert('RGB')
    im.save(bad/'cirrus'/'clip.gif', save_all=True, append_images=[im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], duration=100)
    Image.new('RGB', (12, 12), 'white').save(bad/'rocks'/'icon.png')
    loop = shutil.copytree(data, sets/'loop')
    os.symlink('.', loop/'Cu'/'again'); os.symlink('loop.jpg', loop/'Cu'/'loop.jpg'); os.symlink(loop, loop/'all')
    one = shutil.copytree(data, sets/'one')
    for f in sorted((one/'rocks').iterdir())[1:]: f.unlink()
    ro = shutil.copytree(data, sets/'ro')
    shutil.copy(ro/'Cu'/'Cu-0000.png', ro/'Cu'/'copy.png')  # a duplicate, so dedupe --remove has a file to move
    (w/'ro-review.csv').write_text('file,action\nCu/Cu-0001.png,delete\n')
    robad = shutil.copytree(data, sets/'robad')
    (robad/'Cu'/'empty.jpg').write_bytes(b'')
    (sets/'emptyclass'/'Cu').mkdir(parents=True); shutil.copytree(data/'rocks', sets/'emptyclass'/'rocks')
    rt = shutil.copytree(bad, sets/'roundtrip')
    (w/'outs').mkdir(); (w/'empty').mkdir(); (w/'rodir').mkdir()
    (w/'notes.txt').write_text('a file, not a folder\n')
    (w/'model.pkl').write_text('an existing file\n')
    (w/'urls.txt').write_text('http://127.0.0.1:9/a.jpg\n')
    (w/'review.csv').write_text('file,action\nCu/Cu-0001.png,delete\n')
    os.symlink(w/'outs'/'target.json', w/'outs'/'link.json')
    for d in ('ro', 'robad'):  # read-only for `nobody`
        for p in sorted((sets/d).rglob('*'), reverse=True) + [sets/d]:
            if p.is_dir(): p.chmod(0o555)
    (w/'rodir').chmod(0o555)
    for d in ('home', 'tmp', 'cache', 'cwd', 'cache/nobody'):
        (w/d).mkdir(exist_ok=True); (w/d).chmod(0o777)
    os.chmod(w, 0o755)
    return dict(M=models, G=sets/'good', B=bad, L=loop, O=one, R=ro, RB=robad, EC=sets/'emptyclass', RT=rt, W=w)


def snapshot(w: Path) -> dict:
    "{path relative to `w`: sha256} of every file (a symlink: its target text), the cache and temporary folders left out."
    out = {}
    for dirpath, dirs, files in os.walk(w):
        rel = Path(dirpath).relative_to(w)
        if rel.parts[:1] in (('cache',), ('tmp',)): dirs[:] = []; continue
        for f in files + [d for d in dirs if (Path(dirpath)/d).is_symlink()]:
            p = Path(dirpath)/f
            try: body = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            except OSError as e: body = f'<{e.strerror}>'.encode()
            out[(rel/f).as_posix()] = hashlib.sha256(body).hexdigest()
    return out


# ------------------------------------------------------------------ the cases

OUTPUTS = ('dest', 'outs', 'rodir')  # the output folders a case may name ({W}/dest, ...): changes there are the case's own

def C(name, argv, expect='refuse', out='pipe', user=None, then=None, allow=()):
    """A case: `argv` after `cloud-classifier` ({M}, {G}, ... stand for the world's paths), what it should do
    ('refuse' or 'ok'), where its stdout goes ('pipe', 'full' for /dev/full, 'closed' for a pipe closed after one
    line), the user (None or 'nobody'), a command run after it (`then`, e.g. the undo of a quarantine), and paths
    allowed to change in the data folders. The output folders it names (`OUTPUTS`) may change."""
    named = tuple(o for o in OUTPUTS if '{W}/' + o in argv)
    return dict(name=name, argv=argv, named=named, expect=expect, out=out, user=user, then=then, allow=allow)

TRAIN = ['--weights', 'none', '--arch', 'resnet18', '--size', '32', '--bs', '4', '--epochs', '1', '--epochs-frozen', '0']

def cases() -> list[dict]:
    numbers = [  # every numeric option, out of its range (or not a number)
        ('train --bs 0', 'train {G} --bs 0'), ('train --bs -4', 'train {G} --bs -4'), ('train --size 0', 'train {G} --size 0'),
        ('train --size -32', 'train {G} --size -32'), ('train --epochs -1', 'train {G} --epochs -1'),
        ('train --epochs 0 --epochs-frozen 0', 'train {G} --epochs 0 --epochs-frozen 0'),
        ('train --epochs-frozen -1', 'train {G} --epochs-frozen -1'), ('train --lr -1', 'train {G} --lr -1'),
        ('train --lr 0', 'train {G} --lr 0'), ('train --lr abc', 'train {G} --lr abc'),
        ('train --valid-pct 1.5', 'train {G} --valid-pct 1.5'), ('train --valid-pct 0', 'train {G} --valid-pct 0'),
        ('train --label-smoothing 1', 'train {G} --label-smoothing 1'), ('train --seed 1.5', 'train {G} --seed 1.5'),
        ('train --lr-slice 1e-4 -1', 'train {G} --lr-slice 1e-4 -1'), ('train --bs nan', 'train {G} --bs nan'),
        ('run --per-class 0', 'run {W}/dest --data {G} --per-class 0'), ('run --bs 0', 'run {W}/dest --data {G} --bs 0'),
        ('run --valid-pct 1.5', 'run {W}/dest --data {G} --valid-pct 1.5'),
        ('scrape --per-class 0', 'scrape {W}/dest --per-class 0'), ('scrape --timeout 0', 'scrape {W}/dest --timeout 0'),
        ('scrape --workers 0', 'scrape {W}/dest --workers 0'),
        ('download --workers 0', 'download {W}/urls.txt {W}/dest --label Cu --workers 0'),
        ('download --timeout -1', 'download {W}/urls.txt {W}/dest --label Cu --timeout -1'),
        ('data stats --min -1', 'data stats {G} --min -1'), ('data check --min-side 0', 'data check {G} --min-side 0'),
        ('dedupe --threshold -5', 'dedupe {G} --threshold -5'), ('dedupe --threshold 65 --remove', 'dedupe {G} --threshold 65 --remove'),
        ('predict --bs 0', 'predict {M} {G} --bs 0'), ('predict --top-k -1', 'predict {M} {G} --top-k -1'),
        ('evaluate --bs 0', 'evaluate {M} {G} --bs 0'), ('cloud-check --bs 0', 'cloud-check {M} {G} --bs 0'),
        ('review --top -3', 'review {M} {G} --top -3 --out {W}/outs/r.csv'), ('review --bs 0', 'review {M} {G} --bs 0 --out {W}/outs/r.csv'),
        ('review --size 0', 'review {G} --size 0 --out {W}/outs/r.csv'),
        ('app --port 99999', 'app {M} --port 99999'), ('app --port 0', 'app {M} --port 0'), ('app --top-k 0', 'app {M} --top-k 0'),
        ('app --max-mb 0', 'app {M} --max-mb 0'),
    ]
    out = [C(n, a) for n, a in numbers]
    out += [  # paths: missing, a file for a folder, a folder for a file, outside their folder
        C('train on a missing folder', 'train {W}/nowhere'), C('train on a file', 'train {W}/notes.txt'),
        C('train --out an existing file', 'train {G} --out {W}/model.pkl'),
        C('train --out in a read-only folder', 'train {G} --out {W}/rodir/m ' + ' '.join(TRAIN), user='nobody'),
        C('train --resume with nothing to resume', 'train {G} --out {W}/outs/m --resume'),
        C('train --resume --restart', 'train {G} --out {W}/outs/m --resume --restart'),
        C('train --classes unknown', 'train {G} --classes Stratus Cu'),
        C('train on a class folder without photos', 'train {EC}'),
        C('data stats on a missing folder', 'data stats {W}/nowhere'), C('data stats on a file', 'data stats {W}/notes.txt'),
        C('data check on a missing folder', 'data check {W}/nowhere'), C('dedupe on a file', 'dedupe {W}/notes.txt'),
        C('predict a missing photo', 'predict {M} {W}/nowhere.jpg'), C('predict with a missing model', 'predict {W}/nowhere {G}'),
        C('predict an empty folder', 'predict {M} {W}/empty'), C('predict with a text file as model', 'predict {W}/notes.txt {G}'),
        C('evaluate on a missing folder', 'evaluate {M} {W}/nowhere'),
        C('evaluate --json in a missing folder', 'evaluate {M} {G} --json {W}/nowhere/eval.json'),
        C('review --out in a missing folder', 'review {M} {G} --out {W}/nowhere/review.csv'),
        C('export-onnx --out in a missing folder', 'export-onnx {M} --out {W}/nowhere/model.onnx'),
        C('export-onnx of a missing model', 'export-onnx {W}/nowhere'), C('cloud-check on a missing folder', 'cloud-check {M} {W}/nowhere'),
        C('download --label ../../x', 'download {W}/urls.txt {W}/dest --label ../../x'),
        C('download --label .trash', 'download {W}/urls.txt {W}/dest --label .trash'),
        C('download a missing URL file', 'download {W}/nowhere.txt {W}/dest --label Cu'),
        C('download into a file', 'download {W}/urls.txt {W}/notes.txt --label Cu'),
        C('run --data on a missing folder', 'run {W}/dest --data {W}/nowhere'),
        C('run into a file', 'run {W}/notes.txt --data {G}'),
        C('clean --undo with nothing to undo', 'clean {G} --undo'), C('clean --finish with nothing to finish', 'clean {G} --finish'),
        C('clean --undo abc', 'clean {G} --undo abc'), C('clean without an action', 'clean {G}'),
        C('clean --apply a missing CSV', 'clean {G} --apply {W}/nowhere.csv'),
        C('an unknown option', 'genera --colour'), C('an unknown command', 'data chek {G}'),
    ]
    out += [  # read-only folders
        C('dedupe --remove in a read-only folder', 'dedupe {R} --remove', user='nobody'),
        C('clean --apply in a read-only folder', 'clean {R} --apply {W}/ro-review.csv', user='nobody'),
        C('data check --quarantine in a read-only folder', 'data check {RB} --quarantine', user='nobody'),
        C('evaluate --json into a read-only folder', 'evaluate {M} {G} --json {W}/rodir/eval.json', user='nobody'),
    ]
    out += [  # special outputs
        C('evaluate --json /dev/full', 'evaluate {M} {G} --json /dev/full'),
        C('evaluate --json to a symlink', 'evaluate {M} {G} --json {W}/outs/link.json', expect='ok'),
        C('genera > /dev/full', 'genera', out='full'), C('predict --json > /dev/full', 'predict {M} {G} --json', out='full'),
        C('data check > /dev/full', 'data check {B}', out='full'),
        C('predict | head -1', 'predict {M} {G}', out='closed', expect='quiet'),
        C('genera --json | head -1', 'genera --json', out='closed', expect='quiet'),
        C('dedupe | head -1', 'dedupe {B}', out='closed', expect='quiet'),
        C('data check | head -1', 'data check {B}', out='closed', expect='quiet'),
    ]
    out += [  # photos that are no photos
        C('data check on corrupt/empty/text/GIF photos', 'data check {B}'),
        C('data stats on corrupt/empty/text/GIF photos', 'data stats {B} --json', expect='ok'),
        C('train on corrupt/empty/text photos', 'train {B} --out {W}/outs/m ' + ' '.join(TRAIN)),
        C('run on corrupt/empty/text photos', 'run {W}/dest --data {B} ' + ' '.join(TRAIN)),
        C('evaluate on corrupt/empty/text photos', 'evaluate {M} {B}'),
        C('review on corrupt/empty/text photos', 'review {M} {B} --out {W}/outs/r.csv', expect='ok'),
        C('dedupe on corrupt/empty/text photos', 'dedupe {B}', expect='ok'),
        C('predict on corrupt/empty/text photos', 'predict {M} {B}'),
        C('data check --quarantine, then clean --undo', 'data check {RT} --quarantine', then='clean {RT} --undo 1', expect='ok',
          allow=('sets/roundtrip/.cleaning/journal.jsonl', 'sets/roundtrip/.cleaning/lock')),  # the journal keeps the record
        C('symlink loops: train', 'train {L} --out {W}/outs/m ' + ' '.join(TRAIN)),
        C('symlink loops: run', 'run {W}/dest --data {L} ' + ' '.join(TRAIN)),
        C('symlink loops: data stats', 'data stats {L}', expect='ok'), C('symlink loops: dedupe', 'dedupe {L}', expect='ok'),
        C('symlink loops: data check', 'data check {L}', expect='ok'),
        C('a one-photo class: train', 'train {O} --out {W}/outs/m ' + ' '.join(TRAIN)),
        C('a one-photo class: run', 'run {W}/dest --data {O} ' + ' '.join(TRAIN)),
        C('app on a port in use', 'app {M} --port {PORT}'),
    ]
    return out


# ------------------------------------------------------------------ running one

def run_case(c: dict, paths: dict, w: Path, env: dict, as_root: bool) -> dict:
    fill = lambda s: [a.format(**{k: str(v) for k, v in paths.items()}) for a in shlex.split(s)]
    argv = [sys.executable, '-m', 'cloud_classifier.cli', *fill(c['argv'])]
    pre = ['setpriv', f'--reuid={NOBODY}', f'--regid={NOBODY}', '--clear-groups'] if c['user'] == 'nobody' and as_root else []
    before = snapshot(w)
    t = time.time()
    if pre: env = dict(env, **{k: v.replace(str(w/'cache'), str(w/'cache'/'nobody')) for k, v in env.items() if str(w/'cache') in v})
    kw = dict(cwd=w/'cwd', env=env, stderr=subprocess.PIPE, text=True)
    if c['out'] == 'closed':
        p = subprocess.Popen(pre + argv, stdout=subprocess.PIPE, **kw)
        first = p.stdout.readline(); p.stdout.close()
        err = p.stderr.read(); rc = p.wait(timeout=600); stdout = first
    else:
        sink = open('/dev/full', 'w') if c['out'] == 'full' else subprocess.PIPE
        r = subprocess.run(pre + argv, stdout=sink, timeout=600, **kw)
        if c['out'] == 'full': sink.close()
        rc, stdout, err = r.returncode, r.stdout or '', r.stderr
    if c['then']:
        r2 = subprocess.run(pre + [sys.executable, '-m', 'cloud_classifier.cli', *fill(c['then'])], stdout=subprocess.PIPE, **kw)
        err += r2.stderr; rc = r2.returncode  # the state the pair leaves is the one judged
    secs = time.time() - t
    after = snapshot(w)
    diff = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} - set(c['allow'])
    data = sorted(k for k in diff if k.startswith('sets/'))
    elsewhere = sorted(k for k in diff if not k.startswith('sets/') and not any(k == n or k.startswith(n + '/') for n in c['named']))
    lines = [l for l in err.splitlines() if l.strip()]
    text = lambda l: l.strip() and not l.startswith(('\u2588', 'epoch ')) and '|--' not in l  # not a progress bar's
    msg = lines[0] if lines else next((l for l in stdout.splitlines() if text(l)), '')
    tb = TRACEBACK in err or TRACEBACK in stdout
    refusal = rc != 0 and not tb and len(lines) <= 1
    quiet = not tb and len(lines) <= 1  # a closed pipe: exit 0 when the output was written before, else 141
    ok = not tb and not data and not elsewhere and {'refuse': refusal, 'ok': rc == 0, 'quiet': quiet}[c['expect']]
    return dict(c, rc=rc, msg=msg, traceback=tb, data=data, elsewhere=elsewhere, refusal=refusal, ok=ok, secs=secs,
                stderr=err, cmd=' '.join(shlex.quote(a) for a in argv[3:]))


# ------------------------------------------------------------------ the report

def table(recs: list[dict], w: Path) -> str:
    short = lambda s: s.replace(str(w) + '/', '').replace('|', '\\|')
    rows = ['| # | case | exit | message (first line) | traceback | data changed | written elsewhere | ok |',
            '|---|---|---|---|---|---|---|---|']
    for i, r in enumerate(recs, 1):
        msg, name = short(r['msg']), r['name'].replace('|', '\\|')
        if len(msg) > 160: msg = msg[:157] + '...'
        rows.append(f"| {i} | {name} | {r['rc']} | {msg or '(none)'} | {'YES' if r['traceback'] else 'no'} | "
                    f"{', '.join(r['data']) or 'no'} | {', '.join(r['elsewhere']) or 'no'} | {'yes' if r['ok'] else '**NO**'} |")
    return '\n'.join(rows)


def summary(recs: list[dict]) -> str:
    n = len(recs)
    return (f"{n} cases: {sum(r['refusal'] for r in recs)} refusals (exit status not 0, one line), "
            f"{sum(r['rc'] == 0 and not r['traceback'] for r in recs)} correct exit-0 cases, {sum(r['traceback'] for r in recs)} tracebacks, "
            f"{sum(bool(r['data']) for r in recs)} data changed, {sum(bool(r['elsewhere']) for r in recs)} written elsewhere; "
            f"{sum(r['ok'] for r in recs)} of {n} as they should be.")


def write_section(recs: list[dict], w: Path, cmd: str, secs: float):
    res = ROOT/'bench'/'RESULTS.md'
    text = res.read_text() if res.exists() else '# Benchmark results\n'
    head = '## Bad inputs: bench/bad_inputs.py'
    sec = '\n'.join([head, '',
        f"`{cmd}` on {datetime.date.today().isoformat()}, {platform.machine()} with {os.cpu_count()} cores "
        f"({human(secs)} in all; every case a fresh `python -m cloud_classifier.cli` process, as user nobody for the read-only folders).",
        'Exit status 2 is a usage mistake (one line `error: ...`), 1 a command that found unreadable inputs or could not write its output, '
        '141 a reader that closed the pipe. "ok" means: no traceback, no data changed, nothing written outside the named folders, '
        'and a refusal in one line, or exit 0 for the cases marked as correct with exit 0.', '',
        f'**{summary(recs)}**', '', table(recs, w), ''])
    lines = text.split('\n')
    starts = [i for i, l in enumerate(lines) if l.startswith(head)]
    if starts:
        i = starts[0]
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith('## ')), len(lines))
        lines[i:j] = sec.split('\n')
        text = '\n'.join(lines)
    else: text = text.rstrip('\n') + '\n\n' + sec
    res.write_text(text.rstrip('\n') + '\n')
    return res


def human(s: float) -> str:
    s = round(s)
    return f'{s // 60} min {s % 60} s' if s >= 60 else f'{s} s'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--keep', type=Path, help='build the world in this folder and keep it (default: a temporary folder, removed)')
    p.add_argument('--only', help='run only the cases whose name holds one of these texts (separated by commas)')
    p.add_argument('--no-results', action='store_true', help='print the table; leave bench/RESULTS.md as it is')
    a = p.parse_args()
    t0 = time.time()
    w = Path(a.keep or tempfile.mkdtemp(prefix='cc-bad-inputs-')).resolve()
    w.mkdir(parents=True, exist_ok=True)
    print(f'building the tiny model and data sets in {w} ...', flush=True)
    paths = build(w)
    as_root = os.geteuid() == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(w/'home'), TMPDIR=str(w/'tmp'), MPLCONFIGDIR=str(w/'cache'/'mpl'),
               XDG_CACHE_HOME=str(w/'cache'), TORCH_HOME=str(w/'cache'/'torch'), CLOUD_CLASSIFIER_CACHE=str(w/'cache'/'features'),
               PYTHONDONTWRITEBYTECODE='1')
    listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen()
    paths['PORT'] = listener.getsockname()[1]  # a port in use for the app case
    todo = [c for c in cases() if not a.only or any(o in c['name'] for o in a.only.split(','))]
    recs = []
    for i, c in enumerate(todo, 1):
        r = run_case(c, paths, w, env, as_root)
        recs.append(r)
        flag = 'ok' if r['ok'] else 'FAIL'
        print(f"[{i}/{len(todo)}] {flag:4} exit {r['rc']:3} {r['secs']:5.1f}s  {c['name']}: {r['msg'][:150]}", flush=True)
        if not r['ok']:
            print('   ' + r['stderr'][-1500:].replace('\n', '\n   '), flush=True)
            if r['data'] or r['elsewhere']: print(f"   data changed: {r['data']}  written elsewhere: {r['elsewhere']}", flush=True)
    listener.close()
    secs = time.time() - t0
    print('\n' + summary(recs))
    if not a.no_results and not a.only:
        print(f"written {write_section(recs, w, 'python bench/bad_inputs.py', secs)}")
    else: print(table(recs, w))
    if not a.keep: shutil.rmtree(w, ignore_errors=True)
    return 0 if all(r['ok'] for r in recs) else 1


if __name__ == '__main__': sys.exit(main())
