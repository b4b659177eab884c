"Scrape and download against a real local HTTP server that serves good photos, every bad payload and faults."
import csv, io, json, struct, threading, time, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from ddgs.exceptions import RatelimitException
from conftest import run_cli
from cloud_classifier.images import open_image
from cloud_classifier.manifest import MANIFEST_COLS, read_manifest
from cloud_classifier.scrape import (download_urls, scrape, search_images, SearchStopped,
                                     summary_table, fetch, FetchError)

FAST = dict(timeout=1, max_time=4, max_bytes=2_000_000, n_workers=6, progress=False)

def _photo(w=80, h=60, seed=0):
    "A noisy gradient: a photo-like RGB image."
    rng = np.random.default_rng(seed)
    a = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3)) * rng.uniform(0.3, 1, 3) + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))

def _enc(im, fmt, **kw):
    b = io.BytesIO(); im.save(b, fmt, **kw); return b.getvalue()

def _bomb():
    "A PNG whose header declares 30000x30000 pixels, with a few bytes of data."
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', 30000, 30000, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\x00' * 100)) + chunk(b'IEND', b'')

def _payloads():
    "URL path -> (bytes, the file kept or the manifest reason)."
    ex = Image.Exif(); ex[0x0112] = 6  # rotate 90 degrees: stored 80x60, shown 60x80
    frames = [_photo(seed=s).convert('P') for s in (1, 2)]
    anim = io.BytesIO(); frames[0].save(anim, 'GIF', save_all=True, append_images=frames[1:]); anim = anim.getvalue()
    deep = Image.fromarray((np.arange(80 * 60).reshape(60, 80) * 13).astype(np.uint16))
    good = _enc(_photo(seed=3), 'JPEG', quality=90)
    return {
        'good.jpg': (good, '.jpg'), 'good.png': (_enc(_photo(seed=4), 'PNG'), '.png'),
        'good.webp': (_enc(_photo(seed=5), 'WEBP'), '.webp'), 'misnamed.png': (_enc(_photo(seed=6), 'JPEG'), '.jpg'),
        'big.jpg': (_enc(_photo(2000, 1500, seed=7), 'JPEG'), '.jpg'),
        'cmyk.jpg': (_enc(_photo(seed=8).convert('CMYK'), 'JPEG'), '.jpg'),
        'deep.png': (_enc(deep, 'PNG'), '.png'), 'palette.png': (_enc(_photo(seed=9).convert('P'), 'PNG'), '.png'),
        'rgba.png': (_enc(_photo(seed=10).convert('RGBA'), 'PNG'), '.png'),
        'gray.jpg': (_enc(_photo(seed=11).convert('L'), 'JPEG'), '.jpg'),
        'rotated.jpg': (_enc(_photo(seed=12), 'JPEG', exif=ex), '.jpg'),
        'copy.jpg': (good, 'duplicate'),
        'zero.jpg': (b'', 'empty'), 'truncated.jpg': (_enc(_photo(seed=13), 'JPEG')[:400], 'corrupt'),
        'page.jpg': (b'<!DOCTYPE html>\n<html><head><title>403</title></head><body>Forbidden</body></html>', 'html'),
        'api.jpg': (json.dumps({'error': 'not found'}).encode(), 'json'),
        'drawing.jpg': (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', 'svg'),
        'anim.gif': (anim, 'animated'), 'pixel.png': (_enc(Image.new('RGB', (1, 1)), 'PNG'), 'too-small'),
        'bomb.png': (_bomb(), 'too-large'), 'random.jpg': (np.random.default_rng(0).bytes(5000), 'not-an-image'),
    }

# faults: URL path -> the manifest reason (or the kept extension, for the one good redirect)
FAULTS = {'missing.jpg': 'http-404', 'broken.jpg': 'http-500', 'loop.jpg': 'too-many-redirects', 'stall.jpg': 'timeout',
          'endless.jpg': 'too-big', 'drip.jpg': 'timeout', 'moved.jpg': '.png'}

class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def _send(self, code, body=b'', headers=()):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        name = self.path.lstrip('/')
        self.server.hits.append(name)
        if name in self.server.files: return self._send(200, self.server.files[name][0], [('Content-Type', 'image/jpeg')])
        if name == 'broken.jpg': return self._send(500, b'oops')
        if name == 'loop.jpg': return self._send(302, headers=[('Location', '/loop2.jpg')])
        if name == 'loop2.jpg': return self._send(302, headers=[('Location', '/loop.jpg')])
        if name == 'moved.jpg': return self._send(301, headers=[('Location', '/target.png')])
        if name == 'target.png': return self._send(200, _enc(_photo(seed=20), 'PNG'))
        if name == 'stall.jpg':
            self.send_response(200); self.send_header('Content-Length', '100000'); self.end_headers()
            self.wfile.write(b'\xff\xd8\xff'); self.wfile.flush()
            self.server.stop.wait(3)  # silent past the client's 1 s read timeout
            return
        if name == 'drip.jpg':  # a byte every 0.3 s: never silent for the 1 s read timeout, cut by max_time
            self.send_response(200); self.send_header('Content-Length', '100000'); self.end_headers()
            try:
                while not self.server.stop.wait(0.3): self.wfile.write(b'\xff'); self.wfile.flush()
            except OSError: pass
            return
        if name == 'endless.jpg':
            self.send_response(200); self.send_header('Content-Type', 'image/jpeg'); self.end_headers()
            self.close_connection = True
            try:
                self.wfile.write(b'\xff\xd8\xff\xe0')
                while not self.server.stop.is_set(): self.wfile.write(b'\x00' * 65536)
            except OSError: pass
            return
        self._send(404, b'not found')

@pytest.fixture
def server():
    "A real HTTP server on 127.0.0.1 in a thread; `.url(name)`, `.files`, `.hits`."
    srv = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    srv.daemon_threads, srv.files, srv.hits, srv.stop = True, _payloads(), [], threading.Event()
    srv.url = lambda n: f'http://127.0.0.1:{srv.server_port}/{n}'
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    yield srv
    srv.stop.set(); srv.shutdown(); srv.server_close()

def _all_urls(server): return [server.url(n) for n in [*server.files, *FAULTS]]

def _expected(server):
    "URL -> kept extension or rejection reason."
    return {server.url(n): v for n, (_, v) in server.files.items()} | {server.url(n): v for n, v in FAULTS.items()}

def test_download_keeps_exactly_the_good_images(server, tmp_path):
    dest = tmp_path/'data'
    t0 = time.monotonic()
    st = download_urls(_all_urls(server), dest, 'cu', query='test', **FAST)
    assert time.monotonic() - t0 < 8
    rows = {r['url']: r for r in read_manifest(dest)}
    exp = _expected(server)
    assert set(rows) == set(exp)
    for url, want in exp.items():
        r = rows[url]
        if want.startswith('.'):
            assert (r['status'], r['reason']) == ('ok', ''), (url, r)
            assert r['file'].startswith('Cumulus/') and r['file'].endswith(want), (url, r['file'])
        else: assert (r['status'], r['reason']) == ('failed', want), (url, r)
    kept = sorted((dest/'Cumulus').iterdir())
    assert len(kept) == st['kept'] == sum(v.startswith('.') for v in exp.values()) == 12
    for p in kept:
        r = next(r for r in rows.values() if r['file'] == f'Cumulus/{p.name}')
        im = open_image(p)
        assert im.mode == 'RGB' and max(im.size) <= 1024 and p.name.startswith(r['sha256'][:16])
        assert (int(r['width']), int(r['height'])) == im.size and int(r['bytes']) == p.stat().st_size
    size = lambda n: tuple(int(rows[server.url(n)][k]) for k in ('width', 'height'))
    assert size('big.jpg') == (1024, 768) and size('rotated.jpg') == (60, 80)
    # a plain JPEG is kept byte for byte; a CMYK one is re-encoded as RGB
    assert (dest/rows[server.url('good.jpg')]['file']).read_bytes() == server.files['good.jpg'][0]
    assert Image.open(dest/rows[server.url('cmyk.jpg')]['file']).mode == 'RGB'
    assert st['rejected']['duplicate'] == 1 and sum(st['rejected'].values()) == len(exp) - 12
    # nothing half-written anywhere
    assert [p for p in dest.rglob('*') if p.name.startswith('.') or p.suffix in ('.part', '.tmp')] == []
    assert next(csv.reader(open(dest/'manifest.csv'))) == MANIFEST_COLS

def test_second_run_downloads_nothing_new(server, tmp_path):
    dest = tmp_path/'data'
    download_urls(_all_urls(server), dest, 'Cumulus', **FAST)
    before = sorted(p.name for p in (dest/'Cumulus').iterdir())
    n_rows, hits = len(read_manifest(dest)), len(server.hits)
    st = download_urls(_all_urls(server), dest, 'Cumulus', **FAST)
    assert (st['tried'], st['kept'], st['skipped']) == (0, 0, len(_expected(server)))
    assert len(server.hits) == hits and len(read_manifest(dest)) == n_rows
    assert sorted(p.name for p in (dest/'Cumulus').iterdir()) == before

def test_a_row_cut_by_a_crash_is_ignored_and_the_run_goes_on(server, tmp_path):
    dest = tmp_path/'data'
    download_urls([server.url('good.jpg')], dest, 'Cu', **FAST)
    with open(dest/'manifest.csv', 'a') as f: f.write('Cumulus/abc.jpg,Cumulus,http://half-written')
    assert len(read_manifest(dest)) == 1
    download_urls([server.url('good.png')], dest, 'Cu', **FAST)
    assert [r['url'].rsplit('/', 1)[1] for r in read_manifest(dest)] == ['good.jpg', 'good.png']

def test_target_counts_existing_images(server, tmp_path):
    dest = tmp_path/'data'
    (dest/'Cumulus').mkdir(parents=True)
    _photo(seed=30).save(dest/'Cumulus'/'mine.jpg')
    goods = [server.url(n) for n in ('good.jpg', 'good.png', 'good.webp', 'misnamed.png', 'gray.jpg')]
    st = download_urls(goods, dest, 'Cu', target=3, **FAST)
    assert (st['kept'], st['total']) == (2, 3) and len(list((dest/'Cumulus').iterdir())) == 3
    st = download_urls(goods, dest, 'Cu', target=5, **FAST)
    assert (st['kept'], st['total']) == (2, 5)

class FakeSearch:
    "A search service: raises `fails` errors (of `error`), then returns the server's URLs."
    def __init__(self, urls, fails=0, error=RatelimitException('https://duckduckgo.com/i.js 403 Ratelimit')):
        self.urls, self.fails, self.error, self.calls = urls, fails, error, []
    def __call__(self, query, max_results):
        self.calls.append(query)
        if len(self.calls) <= self.fails: raise self.error
        return self.urls[:max_results]

def test_rate_limited_twice_then_succeeds(server, tmp_path):
    goods = [server.url(n) for n in ('good.jpg', 'good.png', 'good.webp', 'page.jpg', 'cmyk.jpg')]
    search, waits, lines = FakeSearch(goods, fails=2), [], []
    rep = scrape(tmp_path/'data', ['cumulus'], per_class=3, search=search, sleep=waits.append, log=lines.append, **FAST)
    assert len(search.calls) == 3 and search.calls[0] == 'Cumulus clouds'
    assert len(waits) == 2 and 1 <= waits[0] <= 3 and 2 <= waits[1] <= 6  # 2 s then 4 s, with +-50% jitter
    assert rep['Cumulus']['kept'] == 3 and rep['Cumulus']['stopped'] == ''
    assert lines == [summary_table(rep)] and 'Cumulus' in lines[0]

def test_search_that_always_fails_stops_the_class_not_the_run(server, tmp_path):
    goods = [server.url(n) for n in ('good.jpg', 'good.png')]
    failing, waits, lines = FakeSearch(goods, fails=99), [], []
    def search(q, n): return failing(q, n) if 'Stratus' in q else goods[:n]
    rep = scrape(tmp_path/'data', ['St', 'Cu'], per_class=2, search=search, sleep=waits.append, log=lines.append, **FAST)
    assert len(failing.calls) == 4 and len(waits) == 3  # tries=4: three waits, then it stops
    assert all(0.5 * 2 * 2**i <= w <= 1.5 * 2 * 2**i for i, w in enumerate(waits))  # 2, 4, 8 s with jitter
    msg = lines[0]
    assert '\n' not in msg and msg.startswith('Stratus: search') and 'rate-limited 4 times' in msg and 'again to resume' in msg
    assert rep['Stratus']['kept'] == 0 and rep['Cumulus']['kept'] == 2

def test_empty_answers_and_odd_errors_never_crash(tmp_path):
    with pytest.raises(SearchStopped, match='found no images 3 times'):
        search_images('x', 5, search=lambda q, n: [], tries=3, sleep=lambda s: None)
    lines = []
    rep = scrape(tmp_path/'data', ['Cu'], per_class=2, search=FakeSearch([], fails=99, error=ValueError('bad json')),
                 sleep=lambda s: None, log=lines.append, progress=False)
    assert 'failed 4 times (bad json)' in lines[0] and rep['Cumulus']['kept'] == 0

def test_scrape_resumes_without_repeating_urls(server, tmp_path):
    goods = [server.url(n) for n in ('good.jpg', 'good.png', 'good.webp', 'misnamed.png', 'gray.jpg')]
    scrape(tmp_path/'data', ['Cu'], per_class=2, search=FakeSearch(goods), log=lambda s: None, **FAST)
    hits = list(server.hits)
    rep = scrape(tmp_path/'data', ['Cu'], per_class=4, search=FakeSearch(goods), log=lambda s: None, **FAST)
    assert rep['Cumulus']['had'] == 2 and rep['Cumulus']['total'] == 4
    assert not set(server.hits[len(hits):]) & set(hits)

def test_cli_download(server, tmp_path):
    (tmp_path/'urls.txt').write_text('\n'.join([server.url('good.jpg'), server.url('page.jpg'), '', server.url('missing.jpg')]))
    r = run_cli('download', tmp_path/'urls.txt', tmp_path/'data', '--label', 'cb', '--timeout', '2')
    assert r.returncode == 0, r.stderr
    assert 'Cumulonimbus' in r.stdout and 'html 1' in r.stdout and 'http-404 1' in r.stdout
    assert len(list((tmp_path/'data'/'Cumulonimbus').iterdir())) == 1 and len(read_manifest(tmp_path/'data')) == 3

def _error(r):
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]

def test_cli_errors_are_one_line(tmp_path):
    assert 'does not exist' in _error(run_cli('download', tmp_path/'nope.txt', tmp_path/'data', '--label', 'Cu'))
    (tmp_path/'empty.txt').write_text('\n\n')
    assert 'lists no URLs' in _error(run_cli('download', tmp_path/'empty.txt', tmp_path/'data', '--label', 'Cu'))

def test_cli_scrape_offline_says_so_in_one_line(tmp_path, monkeypatch):
    # every search request goes to a proxy port where nothing listens: the search service is unreachable
    monkeypatch.setenv('DDGS_PROXY', 'http://127.0.0.1:9')
    line = _error(run_cli('scrape', tmp_path/'data', '--classes', 'Cu', '--per-class', '2'))
    assert 'could not be reached' in line and 'local folder of photos' in line and str(tmp_path/'data') in line
    assert not (tmp_path/'data').exists()

def test_fetch_goes_through_the_proxy_the_environment_names(monkeypatch):
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        def log_message(self, *a): pass
        def do_GET(self):
            self.server.seen.append(self.path)  # a proxy is asked for the absolute URL
            body = b'via the proxy'
            self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
            self.wfile.write(body)
    srv = ThreadingHTTPServer(('127.0.0.1', 0), Proxy)
    srv.daemon_threads, srv.seen = True, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for k in ('HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy'): monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv('http_proxy', f'http://127.0.0.1:{srv.server_port}')
        monkeypatch.setenv('no_proxy', '127.0.0.1')
        assert fetch('http://photos.example/a.jpg', timeout=2) == b'via the proxy'
        assert srv.seen == ['http://photos.example/a.jpg']
        with pytest.raises(FetchError) as e: fetch('http://127.0.0.1:9/a.jpg', timeout=2)  # NO_PROXY: straight to a closed port
        assert e.value.reason == 'connection-error' and len(srv.seen) == 1
    finally: srv.shutdown(); srv.server_close()
