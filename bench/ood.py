"""Not a cloud photo: how well each cloud check keeps held-out cloud photos and rejects non-sky images.

    flock /tmp/cc-bench.lock python bench/ood.py [--data ../shared/data/ccsn] [--out /tmp/cc-predict-bench]

Trains (once; reused from --out afterwards) MobileNetV2 with the offline ImageNet body weights on CCSN
(Zhang et al. 2018, GRL, doi:10.1029/2018GL077787) minus a held-out part of every class, exports it,
fits each cloud check on the training photos with its threshold from the validation photos only, and
measures: the share of held-out cloud photos kept, and the share of non-sky images rejected.

Non-sky images: the photos bundled with scikit-image (no download), matplotlib's sample data and
scikit-learn's sample images, plus generated charts, text documents, screenshots, flat colours and noise.
The method is chosen on a *development* set (generated images, seed 0) only; the rates reported are
on the *evaluation* set (all real photos, generated images with seed 1), which chose nothing.
"""
import argparse, io, json, os, random, sys, time, warnings
from pathlib import Path
import numpy as np
from PIL import Image, ImageDraw, ImageFont

warnings.filterwarnings('ignore')
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def shared(*parts):
    "A path under ../shared (the repository's sibling; a worktree's is one level further up)."
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base/'shared').exists(): return base/'shared'/Path(*parts)
    return ROOT.parent/'shared'/Path(*parts)


WEIGHTS = shared('weights', 'mobilenet_v2-imagenet-features.pth')


# ---------------------------------------------------------------- the real model
def split_heldout(data: Path, out: Path, pct=0.15, seed=42):
    "Symlink all but `pct` of each class into out/train-data; return the held-out files."
    heldout = []
    rng = random.Random(seed)
    for d in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(d.iterdir())
        rng.shuffle(files)
        n = round(len(files) * pct)
        heldout += files[:n]
        (out/'train-data'/d.name).mkdir(parents=True, exist_ok=True)
        for f in files[n:]:
            link = out/'train-data'/d.name/f.name
            if not link.exists(): link.symlink_to(f)
    return sorted(heldout)


def make_mobilenet_learner(dls):
    "MobileNetV2 with the offline ImageNet body weights, through the train stage's `make_learner`."
    from cloud_classifier.learner import make_learner
    # train_bn=False: a frozen body is then only run forward, which the 2-core CPU can afford
    return make_learner(dls, 'mobilenet_v2', weights=WEIGHTS, train_bn=False)


def real_model(data: Path, out: Path, size=160, epochs=3, unfrozen=1, bs=32, retrain=False):
    "(models folder, dls, held-out files): train and export once, reuse afterwards."
    from cloud_classifier.data import cloud_dataloaders
    heldout = split_heldout(data, out)
    # make_learner adds ImageNet normalisation for the pretrained body
    dls = cloud_dataloaders(out/'train-data', size=size, bs=bs, balance='none', seed=42, batch_tfms=None)
    models = out/'models'
    if retrain or not (models/'export.pkl').exists():
        learn = make_mobilenet_learner(dls)
        t = time.time()
        learn.fit_one_cycle(epochs, 3e-3)  # make_learner starts pretrained bodies frozen
        if unfrozen:
            learn.unfreeze()
            learn.fit_one_cycle(unfrozen, slice(3e-5, 3e-4))
        print(f'trained in {time.time() - t:.0f} s; valid accuracy {learn.validate()[1]:.3f}', flush=True)
        learn.to_contiguous()
        from cloud_classifier.export import export_model
        export_model(learn, models, args=dict(arch='mobilenet_v2', weights=str(WEIGHTS), size=size, frozen_epochs=epochs,
                                              unfrozen_epochs=unfrozen, bs=bs, data=str(data), heldout_pct=0.15))
    return models, dls, heldout


# ---------------------------------------------------------------- non-sky images
def real_nonsky():
    "name -> PIL image: photos and pictures bundled with scikit-image, matplotlib and scikit-learn."
    import skimage, matplotlib
    from sklearn.datasets import load_sample_images
    out = {}
    skd = Path(skimage.__file__).parent/'data'
    for f in sorted(skd.iterdir()):
        if f.suffix.lower() in ('.png', '.jpg', '.gif', '.tif'):
            try: out[f'skimage/{f.name}'] = Image.open(f).convert('RGB')
            except Exception as e: print('skip', f, e)
    sd = Path(matplotlib.get_data_path())/'sample_data'
    for f in sorted(sd.iterdir()):
        if f.suffix.lower() in ('.png', '.jpg'): out[f'matplotlib/{f.name}'] = Image.open(f).convert('RGB')
    for i, a in enumerate(load_sample_images().images): out[f'sklearn/sample{i}'] = Image.fromarray(a)
    return out


def _fig_to_image(fig):
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=80)
    plt.close(fig)
    return Image.open(buf).convert('RGB')


def chart(rng):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(rng.uniform(3, 6), rng.uniform(3, 5)))
    kind = rng.integers(6)
    x = np.arange(12)
    if kind == 0: ax.plot(x, rng.normal(0, 1, (12, 3)).cumsum(0))
    elif kind == 1: ax.bar(x, rng.uniform(1, 10, 12), color=rng.uniform(0, 1, 3))
    elif kind == 2: ax.scatter(*rng.normal(0, 1, (2, 200)), c=rng.uniform(0, 1, 200), s=8)
    elif kind == 3: ax.pie(rng.uniform(1, 5, 5))
    elif kind == 4: ax.hist(rng.normal(0, 1, 500), bins=20)
    else:  # a confusion matrix, the screenshot the original app labelled a cloud
        m = rng.integers(0, 30, (10, 10)) + np.diag(rng.integers(20, 60, 10))
        ax.imshow(m, cmap='Blues')
        for i in range(10):
            for j in range(10): ax.text(j, i, m[i, j], ha='center', va='center', fontsize=6)
        ax.set_xlabel('Predicted'); ax.set_ylabel('Actual')
    ax.set_title(f'figure {rng.integers(100)}')
    return _fig_to_image(fig)


WORDS = ('the cloud classifier model photo data train valid loss accuracy sky image export learner '
         'report page section figure table result method which with from that this have been were').split()


def _font(size):
    for f in ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf']:
        if os.path.exists(f): return ImageFont.truetype(f, size)
    return ImageFont.load_default()


def text_document(rng):
    w, h = int(rng.integers(400, 700)), int(rng.integers(500, 900))
    bg = tuple(int(v) for v in rng.integers(235, 256, 3))
    im = Image.new('RGB', (w, h), bg)
    d = ImageDraw.Draw(im)
    fs = int(rng.integers(10, 20))
    font, y = _font(fs), 30
    d.text((30, y), ' '.join(rng.choice(WORDS, 4)).title(), fill=(0, 0, 0), font=_font(fs + 8)); y += fs * 3
    while y < h - 40:
        d.text((30, y), ' '.join(rng.choice(WORDS, int(rng.integers(5, 12)))), fill=(20, 20, 20), font=font)
        y += int(fs * 1.6)
    return im


def screenshot(rng):
    w, h = int(rng.integers(600, 1000)), int(rng.integers(400, 700))
    im = Image.new('RGB', (w, h), tuple(int(v) for v in rng.integers(230, 256, 3)))
    d = ImageDraw.Draw(im)
    accent = tuple(int(v) for v in rng.integers(0, 200, 3))
    d.rectangle([0, 0, w, 36], fill=accent)
    d.text((12, 10), 'Cloud classifier - Browser', fill=(255, 255, 255), font=_font(14))
    sw = int(rng.integers(120, 220))
    d.rectangle([0, 36, sw, h], fill=(240, 240, 245))
    for i in range(8): d.text((12, 50 + 28 * i), f'menu item {i}', fill=(40, 40, 40), font=_font(13))
    for i in range(int(rng.integers(2, 5))):
        x0, y0 = sw + 20 + i * 150, 60
        d.rounded_rectangle([x0, y0, x0 + 130, y0 + 36], 6, fill=accent)
        d.text((x0 + 12, y0 + 10), 'Submit' if i == 0 else f'Button {i}', fill=(255, 255, 255), font=_font(13))
    for i in range(int(rng.integers(4, 12))):
        d.text((sw + 20, 120 + 22 * i), ' '.join(rng.choice(WORDS, 8)), fill=(30, 30, 30), font=_font(13))
    d.rectangle([sw + 20, h - 150, w - 20, h - 20], outline=(180, 180, 180), width=2)
    return im


def flat_colour(rng):
    return Image.new('RGB', (int(rng.integers(100, 500)), int(rng.integers(100, 500))), tuple(int(v) for v in rng.integers(0, 256, 3)))


def noise(rng):
    h, w = int(rng.integers(100, 400)), int(rng.integers(100, 400))
    kind = rng.integers(3)
    if kind == 0: a = rng.integers(0, 256, (h, w, 3))
    elif kind == 1: a = np.clip(rng.normal(128, 50, (h, w, 3)), 0, 255)
    else: a = np.repeat(rng.integers(0, 2, (h, w, 1)) * 255, 3, 2)
    return Image.fromarray(a.astype(np.uint8))


GENERATORS = dict(chart=chart, text_document=text_document, screenshot=screenshot, flat_colour=flat_colour, noise=noise)


def generated_nonsky(seed, n=20):
    "name -> PIL image: n of each generated kind."
    rng = np.random.default_rng(seed)
    return {f'{k}/{seed}-{i}': g(rng) for k, g in GENERATORS.items() for i in range(n)}


# ---------------------------------------------------------------- measuring
def outputs_by_layer(clf, items, layers):
    "(logits, {layer: average-pooled output of that body block}) for `items`, in one pass."
    import torch
    from cloud_classifier.runtime import stream_batches
    got = {l: [] for l in layers}
    hooks = [clf.net.blocks[l].register_forward_hook(lambda m, i, o, l=l: got[l].append(o.float().mean((2, 3)).numpy()))
             for l in layers]
    logits = []
    try:
        for chunk, arrs in stream_batches(items, clf.spec, 64):
            assert not any(isinstance(a, str) for a in arrs), [c for c, a in zip(chunk, arrs) if isinstance(a, str)]
            logits.append(clf.forward(np.stack(arrs))[0])
    finally:
        for h in hooks: h.remove()
    return np.concatenate(logits), {l: np.concatenate(v) for l, v in got.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', type=Path, default=Path(os.environ.get('CLOUD_CLASSIFIER_DATA') or shared('data', 'ccsn')))
    ap.add_argument('--out', type=Path, default=Path('/tmp/cc-predict-bench'))
    ap.add_argument('--size', type=int, default=160)
    ap.add_argument('--epochs', type=int, default=3, help='epochs with the body frozen')
    ap.add_argument('--unfrozen', type=int, default=1, help='epochs of the whole network afterwards')
    ap.add_argument('--keep', type=float, default=0.975, help='share of validation photos the threshold keeps')
    ap.add_argument('--retrain', action='store_true')
    a = ap.parse_args()
    if not a.data.exists(): sys.exit(f'{a.data} does not exist: this benchmark needs the CCSN photos')
    import torch
    from cloud_classifier.predict import CloudClassifier
    from cloud_classifier.cloudcheck import fit_cloud_check, cloud_scores
    from cloud_classifier.card import merge_card
    from cloud_classifier.genera import class_name
    models, dls, heldout = real_model(a.data, a.out, a.size, a.epochs, a.unfrozen, retrain=a.retrain)
    clf = CloudClassifier.load(models)
    vocab = clf.classes
    assert clf.net is not None
    from cloud_classifier.predict import default_feature_layer
    n_blocks = len(clf.net.blocks)
    layers = sorted({n_blocks // 3, n_blocks // 2, default_feature_layer(n_blocks), n_blocks - 3, n_blocks - 1})
    t = time.time()
    train_items = list(dls.train_ds.items)
    labels = np.array([int(dls.train_ds.tls[1][i]) for i in range(len(train_items))])
    tr = outputs_by_layer(clf, train_items, layers)
    va = outputs_by_layer(clf, list(dls.valid_ds.items), layers)
    ho = outputs_by_layer(clf, heldout, layers)
    ho_acc = float((ho[0].argmax(1) == np.array([vocab.index(class_name(f.parent.name)) for f in heldout])).mean())
    real = real_nonsky()
    dev, ev = generated_nonsky(0), generated_nonsky(1)
    ev_all = real | ev
    dev_s, ev_s = outputs_by_layer(clf, list(dev.values()), layers), outputs_by_layer(clf, list(ev_all.values()), layers)
    print(f'features in {time.time() - t:.0f} s; held-out accuracy {ho_acc:.3f}; body blocks {n_blocks}, measured {layers}', flush=True)
    candidates = {'msp': (dict(method='msp'), None), 'energy': (dict(method='energy'), None)}
    for l in layers:
        for k in (32, 64):
            candidates[f'mahalanobis block {l}, k={k}'] = (dict(method='mahalanobis', k=k, resid_weight=1.0), l)
    rows = []
    for name, (kw, l) in candidates.items():
        pick = lambda o: (o[0], o[1][l] if l is not None else None)
        cc = fit_cloud_check(tr[1][l] if l is not None else None, labels, pick(va), keep=a.keep, **kw)
        kept = float((cloud_scores(cc, *pick(ho)) <= cc['threshold']).mean())
        dev_scores = cloud_scores(cc, *pick(dev_s))
        rej = cloud_scores(cc, *pick(ev_s)) > cc['threshold']
        names = list(ev_all)
        by = {}
        for n_, r in zip(names, rej):
            grp = n_.split('/')[0] if n_.split('/')[0] in GENERATORS else 'real photos & pictures'
            by.setdefault(grp, []).append(r)
        rows.append(dict(name=name, kept=kept, dev_rejected=float((dev_scores > cc['threshold']).mean()),
                         dev_margin=float(np.median(dev_scores) - cc['threshold']) / (abs(cc['threshold']) + 1e-9),
                         rejected=float(rej.mean()), by={g: float(np.mean(v)) for g, v in by.items()},
                         n_by={g: len(v) for g, v in by.items()}, missed=[n_ for n_, r in zip(names, rej) if not r]))
    # the choice sees the development set only (and the validation photos, through the threshold)
    best = max(rows, key=lambda r: (r['dev_rejected'], r['dev_margin']))
    kw, l = candidates[best['name']]
    cc = fit_cloud_check(tr[1][l] if l is not None else None, labels, (va[0], va[1][l] if l is not None else None), keep=a.keep, **kw)
    if l is not None: cc['layer'] = l
    merge_card(models, cloud_check=cc)
    card_kb = len(json.dumps(cc)) / 1024
    print(f"\nheld-out cloud photos: {len(heldout)}; non-sky evaluation images: {len(ev_all)} "
          f"({len(real)} real, {len(ev)} generated); development images: {len(dev)}")
    print(f"held-out classification accuracy: {ho_acc:.3f}; threshold keeps {a.keep:.1%} of {len(va[0])} validation photos\n")
    groups = list(rows[0]['by'])
    print('| method | held-out clouds kept | non-sky rejected (eval) | dev rejected | ' + ' | '.join(groups) + ' |')
    print('|---|---|---|---|' + '---|' * len(groups))
    for r in rows:
        mark = ' **(chosen)**' if r['name'] == best['name'] else ''
        print(f"| {r['name']}{mark} | {r['kept']:.1%} | {r['rejected']:.1%} | {r['dev_rejected']:.1%} | "
              + ' | '.join(f"{r['by'][g]:.0%} of {r['n_by'][g]}" for g in groups) + ' |')
    print(f"\nchosen: {best['name']}; kept {best['kept']:.1%} of held-out cloud photos, rejected {best['rejected']:.1%} "
          f"of non-sky images; card entry {card_kb:.0f} KiB")
    print('not rejected:', ', '.join(best['missed']) or 'none')
    json.dump(dict(rows=rows, chosen=best['name'], heldout_accuracy=ho_acc), open(a.out/'ood.json', 'w'), indent=1)


if __name__ == '__main__': main()
