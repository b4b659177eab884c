"""Download benchmark: cloud_classifier's `download_urls` against fastai's `download_images`.

    flock /tmp/cc-bench.lock python bench/download.py [--good 240] [--bad 80] [--rounds 5] [--workers 8]

A local web server (its own process, on 127.0.0.1) serves the same list of URLs to both: photos the
script draws (JPEG, PNG and WebP, a tenth of them larger than 1024 px) and bad payloads with image
names (HTML, JSON, SVG, empty, truncated JPEG, random bytes, animated GIF, 1x1, a decompression bomb
header, 404, 500). Every response is delayed by 50-200 ms, the same delay for a URL in every round.
The two downloaders run in turn, in alternating order, for several rounds, with the same worker
count and timeout. Printed: the wall time of each, the median ratio ours/fastai, and for each how
many good photos were kept and how many bad payloads ended up on disk as image files."""
import argparse, contextlib, hashlib, io, json, multiprocessing as mp, random, shutil, statistics, struct, sys
import tempfile, time, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import numpy as np
from PIL import Image

def _enc(im, fmt, **kw):
    b = io.BytesIO(); im.save(b, fmt, **kw); return b.getvalue()

def _photo(rng, w, h):
    "A photo-like picture: a tinted gradient with soft blobs and noise."
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    a = rng.uniform(60, 200, 3) * (0.6 + 0.4 * yy[..., None])
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, .7), rng.uniform(.05, .3)
        a = a + rng.uniform(-100, 100, 3) * np.exp(-((xx - cx)**2 + (yy - cy)**2) / r**2)[..., None]
    return Image.fromarray((a + rng.normal(0, 6, a.shape)).clip(0, 255).astype(np.uint8))

def _bomb():
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 30000, 30000, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 100)) + chunk(b'IEND', b''))

def make_payloads(n_good, n_bad, seed=0):
    "name -> (status, body); the names of the good ones; a delay in seconds for each name."
    rng = np.random.default_rng(seed)
    files, good = {}, []
    for i in range(n_good):
        big = i % 10 == 0
        w, h = (1600, 1200) if big else (int(rng.integers(320, 800)), int(rng.integers(240, 600)))
        fmt, ext = [('JPEG', 'jpg'), ('JPEG', 'jpg'), ('PNG', 'png'), ('WEBP', 'webp')][i % 4]
        name = f'photo{i:04d}.{ext}'
        files[name] = (200, _enc(_photo(rng, w, h), fmt, **({'quality': 85} if fmt == 'JPEG' else {})))
        good.append(name)
    frames = [_photo(rng, 120, 90).convert('P') for _ in range(3)]
    anim = io.BytesIO(); frames[0].save(anim, 'GIF', save_all=True, append_images=frames[1:])
    bad = [(200, b'<!DOCTYPE html><html><head><title>Not found</title></head><body>' + b'x' * 3000 + b'</body></html>'),
           (200, json.dumps({'error': 'rate limited', 'code': 429}).encode()),
           (200, b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="400"><rect width="9"/></svg>'),
           (200, b''), (200, _enc(_photo(rng, 640, 480), 'JPEG')[:2000]), (200, rng.bytes(20000)),
           (200, anim.getvalue()), (200, _enc(Image.new('RGB', (1, 1)), 'PNG')), (200, _bomb()),
           (404, b'not found'), (500, b'server error')]
    for i in range(n_bad): files[f'bad{i:04d}.jpg'] = bad[i % len(bad)]
    r = random.Random(seed)
    delays = {n: r.uniform(0.05, 0.2) for n in files}
    return files, good, delays

def serve(files, delays, port_q):
    "Serve `files` forever, each response after its delay."
    class H(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'  # keep-alive, as web servers do
        disable_nagle_algorithm = True  # as web servers do: no 40 ms delayed-ACK stall between headers and body
        def log_message(self, *a): pass
        def do_GET(self):
            name = self.path.lstrip('/')
            status, body = files.get(name, (404, b'not found'))
            time.sleep(delays.get(name, 0.1))
            self.send_response(status); self.send_header('Content-Length', str(len(body))); self.end_headers()
            self.wfile.write(body)
    class S(ThreadingHTTPServer):
        daemon_threads = True
        def handle_error(self, request, client_address): pass  # a client closing a kept-alive connection
    srv = S(('127.0.0.1', 0), H)
    port_q.put(srv.server_port); srv.serve_forever()

def run_ours(urls, dest, workers, timeout):
    from cloud_classifier.scrape import download_urls
    download_urls(urls, dest, 'bench', n_workers=workers, timeout=timeout)
    return dest/'bench'

def run_fastai(urls, dest, workers, timeout):
    from fastai.vision.utils import download_images
    download_images(dest, urls=urls, n_workers=workers, timeout=timeout)
    return dest

def count(folder, good_shas):
    "(good photos kept, bad payloads on disk as image files) in `folder`."
    from cloud_classifier.images import image_files, file_sha256
    shas = [file_sha256(p) for p in image_files(folder)]
    g = sum(s in good_shas for s in shas)
    return g, len(shas) - g

def count_ours(folder, dest, good_urls):
    "Ours re-encodes what it normalises (large, non-RGB), so good photos are counted through the manifest."
    from cloud_classifier.scrape import read_manifest
    from cloud_classifier.images import image_files
    on_disk = {p.name for p in image_files(folder)}
    kept_good = {r['file'].split('/')[-1] for r in read_manifest(dest) if r['status'] == 'ok' and r['url'] in good_urls}
    g = len(kept_good & on_disk)
    return g, len(on_disk) - g

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--good', type=int, default=240); p.add_argument('--bad', type=int, default=80)
    p.add_argument('--rounds', type=int, default=5); p.add_argument('--workers', type=int, default=8)
    p.add_argument('--timeout', type=float, default=4, help="seconds (fastai's default)")
    a = p.parse_args()
    import fastai.vision.utils, cloud_classifier.scrape  # imported before timing
    files, good, delays = make_payloads(a.good, a.bad)
    q = mp.Queue(); srv = mp.Process(target=serve, args=(files, delays, q), daemon=True); srv.start()
    base = f'http://127.0.0.1:{q.get(timeout=30)}'
    urls = [f'{base}/{n}' for n in files]
    random.Random(1).shuffle(urls)
    good_urls, good_shas = {f'{base}/{n}' for n in good}, {hashlib.sha256(files[n][1]).hexdigest() for n in good}
    print(f'{len(urls)} URLs ({len(good)} good photos, {len(urls) - len(good)} bad payloads), '
          f'{a.workers} workers, timeout {a.timeout} s, {a.rounds} rounds')
    times, counts = {'ours': [], 'fastai': []}, {}
    try:
        for rnd in range(a.rounds):
            order = ['ours', 'fastai'] if rnd % 2 == 0 else ['fastai', 'ours']
            for who in order:
                dest = Path(tempfile.mkdtemp(prefix=f'bench-{who}-'))
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    folder = (run_ours if who == 'ours' else run_fastai)(urls, dest, a.workers, a.timeout)
                times[who].append(time.perf_counter() - t0)
                counts[who] = count_ours(folder, dest, good_urls) if who == 'ours' else count(folder, good_shas)
                shutil.rmtree(dest)
            print(f"round {rnd + 1}: ours {times['ours'][-1]:.2f} s, fastai {times['fastai'][-1]:.2f} s")
    finally: srv.terminate()
    ratios = [o / f for o, f in zip(times['ours'], times['fastai'])]
    print(f"median wall time: ours {statistics.median(times['ours']):.2f} s, fastai {statistics.median(times['fastai']):.2f} s; "
          f"median ratio ours/fastai {statistics.median(ratios):.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})")
    for who in ('ours', 'fastai'):
        g, b = counts[who]
        print(f'{who}: good photos kept {g}/{len(good)}, bad payloads on disk as images {b}/{len(urls) - len(good)}')

if __name__ == '__main__': main()
