"""Prediction speed and memory: learn.predict vs predict_many vs the raw network vs ONNX Runtime.

    flock /tmp/cc-bench.lock python bench/predict.py [--model /tmp/cc-predict-bench/models] [--n 500] [--rounds 3]

On the MobileNetV2 model that bench/ood.py trains on CCSN (Zhang et al. 2018, GRL,
doi:10.1029/2018GL077787; trained here when absent), over --n JPEGs from the CCSN folder (generated
JPEGs when it is absent), one invocation, rounds interleaved, medians of images per second:
  (1) a `learn.predict` loop (the learner as `load_learner` gives it),
  (2) `CloudClassifier.predict_many` (opening, resizing, network, results) as `load` gives it: the
      network on ONNX Runtime, since the model folder holds a model.onnx exported from its export.pkl;
      (2t) the same with `engine='torch'`,
  (3) the raw model forward on already opened, already resized tensors (PyTorch, channels-last, the
      layout predict_many's PyTorch engine uses); (3b) the same in fastai's default layout, for reference;
      (3o) the raw network on ONNX Runtime, the ceiling for the engine (2) uses,
  (4) `OnnxCloudClassifier.predict_many` (ONNX Runtime without PyTorch, same work as (2)).
Then the peak memory (ru_maxrss) of predict_many streaming a folder of --big images against one of
--n images, each in a fresh process.
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np

warnings.filterwarnings('ignore')
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'bench'))


def jpegs(data: Path | None, n: int, out: Path):
    "n JPEG paths: CCSN photos (seeded choice) or, without them, generated 400x400 JPEGs."
    if data and data.exists():
        files = sorted(p for p in data.rglob('*.jpg'))
        rng = np.random.default_rng(0)
        return [files[i] for i in rng.permutation(len(files))[:n]] if n <= len(files) else [files[i % len(files)] for i in range(n)]
    from PIL import Image
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    res = []
    for i in range(n):
        p = out/f'gen-{i:05d}.jpg'
        if not p.exists():
            a = np.clip(rng.normal(150, 40, (400, 400, 3)).cumsum(1) / 40 % 255, 0, 255).astype(np.uint8)
            Image.fromarray(a).save(p, quality=90)
        res.append(p)
    return res


def rate(fn, n):
    t = time.perf_counter(); fn(); return n / (time.perf_counter() - t)


def memory_run(model: Path, files: list, n: int, tmp: Path):
    """(RSS after loading, peak RSS while streaming, ru_maxrss) in MiB of a fresh process streaming a folder
    of n images (links to `files`, cycled) through predict_many; RSS sampled every 16 results."""
    folder = tmp/f'folder-{n}'
    if not folder.exists():
        folder.mkdir(parents=True)
        for i in range(n): (folder/f'{i:06d}.jpg').symlink_to(files[i % len(files)])
    code = ("import resource, sys, warnings; warnings.filterwarnings('ignore')\n"
            "from cloud_classifier.predict import CloudClassifier\n"
            f"clf = CloudClassifier.load({str(model)!r})\n"
            "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 2**20\n"
            "base, peak, n = rss(), 0, 0\n"
            f"for i, r in enumerate(clf.predict_many({str(folder)!r}, bs=64)):\n"
            "    n += r.error is None\n"
            "    if i % 16 == 0: peak = max(peak, rss())\n"
            "print(n, base, max(peak, rss()), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                       env=os.environ | {'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr
    done, base, peak, maxrss = r.stdout.split()
    assert int(done) == n, (done, n)
    return float(base), float(peak), float(maxrss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', type=Path, default=Path('/tmp/cc-predict-bench/models'))
    ap.add_argument('--data', type=Path, default=None, help='CCSN folder; ../shared/data/ccsn by default')
    ap.add_argument('--n', type=int, default=500, help='images per timing')
    ap.add_argument('--n-loop', type=int, default=64, help='images for the learn.predict loop (slow)')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--big', type=int, default=5000, help='images for the memory run')
    a = ap.parse_args()
    from ood import shared, real_model
    data = a.data or Path(os.environ.get('CLOUD_CLASSIFIER_DATA') or shared('data', 'ccsn'))
    if not (a.model/'export.pkl').exists():
        if not data.exists(): sys.exit(f'no model at {a.model} and no CCSN photos at {data} to train one')
        real_model(data, a.model.parent)
    import torch
    from fastai.learner import load_learner
    from cloud_classifier.predict import CloudClassifier
    from cloud_classifier.onnx import OnnxCloudClassifier, export_onnx
    from cloud_classifier.runtime import stream_batches, normalize
    from cloud_classifier.card import read_card
    export_onnx(a.model)  # afresh: the card's cloud check decides which features the graph returns
    tmp = Path(tempfile.mkdtemp(prefix='cc-predict-bench-'))
    files = jpegs(data if data.exists() else None, a.n, tmp/'generated')
    source = f'{a.n} CCSN JPEGs' if data.exists() else f'{a.n} generated 400x400 JPEGs'
    clf = CloudClassifier.load(a.model)
    assert clf.engine == 'onnx', clf.engine
    clf_t = CloudClassifier.load(a.model, engine='torch')
    onx = OnnxCloudClassifier.load(a.model)
    learn = load_learner(a.model/'export.pkl', cpu=True)  # as a user gets it: fastai's default memory layout
    arrays = [x for _, arrs in stream_batches(files, clf.spec, a.bs) for x in arrs]
    assert not any(isinstance(x, str) for x in arrays)
    batches = [np.stack(arrays[i:i + a.bs]) for i in range(0, len(arrays), a.bs)]
    tensors = [torch.from_numpy(normalize(b, clf.spec)) for b in batches]
    tensors_cl = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    n_plain = min(a.n, 128)
    plain = [t for t in tensors][:max(1, n_plain // a.bs)]

    def raw_torch(model, ts):
        with torch.inference_mode():
            for t in ts: model(t)

    def raw_onnx():
        for t in tensors: onx.session.run(None, {'image': t.numpy()})

    # the check that predict_many answers as learn.predict does, on the timed photos
    loop_files = files[:a.n_loop]
    with learn.no_bar(): ref = [learn.predict(f) for f in loop_files[:16]]
    got = list(clf.predict_many(loop_files[:16]))
    max_diff = max(float(np.abs(np.array([g.probabilities[c] for c in clf.classes]) - r[2].numpy()).max()) for g, r in zip(got, ref))
    agree = sum(list(g.probabilities)[0] == str(r[0]) for g, r in zip(got, ref))
    tests = {
        '(1) learn.predict loop': (lambda: [learn.predict(f) for f in loop_files], len(loop_files)),  # bars off below
        '(2) predict_many': (lambda: sum(1 for _ in clf.predict_many(files, bs=a.bs)), len(files)),
        '(2t) predict_many, engine torch': (lambda: sum(1 for _ in clf_t.predict_many(files, bs=a.bs)), len(files)),
        '(3) raw model forward, PyTorch channels-last': (lambda: raw_torch(clf_t.model, tensors_cl), len(files)),
        '(3b) raw model forward, PyTorch fastai default layout': (lambda: raw_torch(learn.model.eval(), plain), len(plain) * a.bs),
        '(3o) raw network, ONNX Runtime': (raw_onnx, len(files)),
        '(4) OnnxCloudClassifier predict_many': (lambda: sum(1 for _ in onx.predict_many(files, bs=a.bs)), len(files)),
    }
    learn.no_bar().__enter__()  # no progress bar per learn.predict call
    for f, n in tests.values(): f()  # warm-up
    res = {k: [] for k in tests}
    for r in range(a.rounds):
        for k, (f, n) in tests.items(): res[k].append(rate(f, n))
        print(f'round {r + 1}: ' + ', '.join(f'{k.split()[0]} {v[-1]:.1f}' for k, v in res.items()), flush=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    base500, peak500, max500 = memory_run(a.model, files, a.n, tmp)
    base_big, peak_big, max_big = memory_run(a.model, files, a.big, tmp)
    size = clf.spec['resize'][-1]['size'] if clf.spec['resize'] else '?'
    print(f"\nmodel: {a.model} ({size} px, {len(clf.classes)} classes); images: {source}; batch size {a.bs}; "
          f"{a.rounds} interleaved rounds, medians; torch threads {torch.get_num_threads()}")
    print(f'predict_many vs learn.predict on {len(ref)} photos: top-1 agrees on {agree}, largest probability difference {max_diff:.1g}\n')
    print('| path | images/s (median) | rounds |')
    print('|---|---|---|')
    for k in tests: print(f"| {k} | {med[k]:.1f} | {', '.join(f'{v:.1f}' for v in res[k])} |")
    r1 = med['(2) predict_many'] / med['(1) learn.predict loop']
    r3 = med['(2) predict_many'] / med['(3) raw model forward, PyTorch channels-last']
    r3o = med['(2) predict_many'] / med['(3o) raw network, ONNX Runtime']
    r4 = med['(4) OnnxCloudClassifier predict_many'] / med['(2) predict_many']
    r2t = med['(2t) predict_many, engine torch'] / med['(1) learn.predict loop']
    r3t = med['(2t) predict_many, engine torch'] / med['(3) raw model forward, PyTorch channels-last']
    grow = peak_big / peak500 - 1
    print(f"\n(2)/(1) = {r1:.1f}x (goal >= 5); (2)/(3) = {r3:.2f} (goal >= 0.7); (4)/(2) = {r4:.2f} (goal >= 1); "
          f"(2)/(3o) = {r3o:.2f}; engine torch: (2t)/(1) = {r2t:.1f}x, (2t)/(3) = {r3t:.2f}")
    for i in range(a.rounds):
        per = {k: v[i] for k, v in res.items()}
        print(f"round {i + 1}: (2)/(1) {per['(2) predict_many'] / per['(1) learn.predict loop']:.1f}x, "
              f"(2)/(3o) {per['(2) predict_many'] / per['(3o) raw network, ONNX Runtime']:.2f}, "
              f"(4)/(2) {per['(4) OnnxCloudClassifier predict_many'] / per['(2) predict_many']:.2f}")
    print(f"peak RSS while predict_many streams a folder: {peak500:.0f} MiB over {a.n} images, {peak_big:.0f} MiB over {a.big} "
          f"({grow:+.1%}; goal within 20%); RSS after loading the model: {base500:.0f} / {base_big:.0f} MiB; "
          f"ru_maxrss: {max500:.0f} / {max_big:.0f} MiB")
    json.dump(dict(median=med, rounds=res, peak_mib={a.n: peak500, a.big: peak_big}, ratios=dict(r1=r1, r3=r3, r3o=r3o, r4=r4, r2t=r2t, r3t=r3t, mem=grow)),
              open(tmp/'predict.json', 'w'), indent=1)


if __name__ == '__main__': main()
