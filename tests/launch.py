"""Runs of `cloud-classifier`, each a process of its own, with the world outside the machine faked, for tests.

`python tests/launch.py` imports the library once (the few seconds every fresh interpreter spends on PyTorch and
fastai), says `ready`, then for each JSON line on stdin, {"argv": [...], "env": {...}, "out": FILE, "err": FILE},
forks a process that runs `cloud-classifier ARGV` with those environment variables and its output in those files,
and answers {"rc": its exit status, or minus the signal that ended it}. Two settings are read from the environment:

CLOUD_TEST_SEARCH=URL  the image search asks the local server at URL (`URL/search?q=QUERY` answers one image URL a
                       line) instead of DuckDuckGo
CLOUD_TEST_STOP=WHERE:SIGNAL[:N]  the process sends itself SIGNAL (SIGINT, as Ctrl-C does, or SIGKILL) the N-th time
                       (1 when not given) it reaches WHERE: download (a photo recorded), dedupe (a copy about to move),
                       train (an epoch saved), export (the card about to be written), cloud-check (the check about to be fitted)
"""
import json, os, signal, sys, traceback, urllib.parse, urllib.request

def _search(base):
    def search(query, max_results):
        with urllib.request.urlopen(f'{base}/search?q={urllib.parse.quote(query)}', timeout=10) as r:
            return r.read().decode().split()[:max_results]
    return search

def _stop_at(where, sig, n):
    "Wrap the function reached at `where` so that its `n`-th call sends this process `sig`."
    from cloud_classifier import export, journal, manifest, predict, train
    calls = [0]
    def hit():
        calls[0] += 1
        if calls[0] == n: os.kill(os.getpid(), sig)
    def wrap(owner, name, after=False, counts=lambda *a, **k: True):
        f = getattr(owner, name)
        def g(*a, **k):
            if not after and counts(*a, **k): hit()
            r = f(*a, **k)
            if after and counts(*a, **k): hit()
            return r
        setattr(owner, name, g)
    if where == 'download': wrap(manifest.Manifest, 'add', after=True, counts=lambda self, row: row.get('status') == 'ok')
    elif where == 'dedupe': wrap(journal.Round, 'move')
    elif where == 'train': wrap(train.ProgressCheckpoint, 'after_epoch', after=True, counts=lambda self: self.epoch >= self.start_epoch)
    elif where == 'export': wrap(export, 'write_card')
    elif where == 'cloud-check': wrap(predict, 'fit_cloud_check')
    else: raise SystemExit(f'CLOUD_TEST_STOP: unknown place {where!r}')

def _command(argv:list)->int:
    "Run `cloud-classifier ARGV` here, with the settings of the environment."
    from cloud_classifier import cli, scrape
    if base := os.environ.get('CLOUD_TEST_SEARCH'): scrape.ddgs_images = _search(base)
    if stop := os.environ.get('CLOUD_TEST_STOP'):
        where, sig, *n = stop.split(':')
        _stop_at(where, getattr(signal, sig), int(n[0]) if n else 1)
    sys.argv = ['cloud-classifier', *argv]  # the command a stopped run names for going on
    return cli.main(argv)

def _child(req:dict):
    "In the forked process: run the request, then leave without running the parent's exit handlers."
    rc = 1
    try:
        # Ctrl-C at a terminal reaches a program whose SIGINT is not ignored; a shell that starts these tests in the
        # background without job control ignores it, and the child would inherit that
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.update(req.get('env') or {})
        for fd, name in ((1, 'out'), (2, 'err')):
            f = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd); os.close(f)
        rc = _command(req['argv']) or 0
    except SystemExit as e: rc = e.code if isinstance(e.code, int) else 1
    except BaseException: traceback.print_exc()
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(rc)

if __name__ == '__main__':
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot, cloud_classifier.cli, cloud_classifier.pipeline  # the slow imports, once for every run
    print('ready', flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush(); sys.stderr.flush()
        if (pid := os.fork()) == 0: _child(req)
        _, status = os.waitpid(pid, 0)
        print(json.dumps(dict(rc=os.waitstatus_to_exitcode(status))), flush=True)
