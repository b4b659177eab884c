"""Variants of ours' out-of-fold model beside the default probe, on GCD with labels flipped on purpose (bench/label_noise.py's sets).

Each variant gives out-of-fold class probabilities; the queue is ranked from them exactly as `ours` ranks
(`label_noise.queue_order`: cleanlab self-confidence, conflicting duplicate groups first). Variants:

- `probe<size>`: the default probe (5-fold logistic regression, C=0.002) on the frozen body's pooled features with the
  photos resized to that side; `sizes`: those probes' probabilities averaged (`--sizes 224 384`).
- `svc`: an RBF support-vector classifier (C=1, Platt probabilities) on the same standardised features, averaged with
  the first probe (`--svc`).
- `turns`: the first probe on features averaged over each photo's eight quarter turns and mirror images, as
  `review --turns` ranks (`--turns`); with `--partial`, also averaged with it (`partial+turns`).
- `<probe>-pruned`: a second pass of that probe, each fold refitted without the photos that cleanlab's
  `find_label_issues` flags under the first pass's probabilities (they are still scored), so that the wrong labels it
  can see no longer pull the fit towards them (`--prune`).
- `partial`: the MobileNetV2 body's blocks from `--partial CUT` on, plus a linear head, fine-tuned per fold (AdamW,
  one-cycle, class-balanced sampling, random mirror images) on cached activations of the blocks before CUT, predicting
  the held-out fold from the photo and its mirror image; reported alone and averaged with the first probe. With
  `--turns` as well, also `partial-turns`: the same blocks fine-tuned on a random one of each photo's eight quarter
  turns and mirror images per epoch, predicting the held-out fold from all eight averaged; reported alone and averaged
  with the `turns` probe (`partial-turns+turns`).

For each: recall of the wrong labels in the first 10% (uniform10) or 20% (uniform20, structured20) of the queue, the
error of the out-of-fold predictions against the true labels, and seconds (features or activations excluded: they are
computed once per photo and cached).

  python bench/label_noise_variants.py --sizes 224 384 --svc
  python bench/label_noise_variants.py --settings uniform10 --partial 14 --epochs 8
  python bench/label_noise_variants.py --settings uniform10 --partial 14 --turns
  python bench/label_noise_variants.py --settings uniform10 --partial 14 --turns --partial-turns
  python bench/label_noise_variants.py --turns --prune
  python bench/label_noise_variants.py --settings uniform10 --partial 11 --probs probs   # then label_noise.py --combine
"""
import argparse, copy, hashlib, json, os, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_noise import GCD, WEIGHTS, run, load_set, noisy_labels, scores, queue_order, clean_confusion, true_error, save_probs, run_meta
from cloud_classifier.rank import pretrained_body, cached_features, oof_probabilities, fold_splits, photo_batches, photo_views
from cloud_classifier.files import atomic_path

COLUMN = dict(uniform10='r10', uniform20='r20', structured20='r20')

def size_features(recs, args, size, turns=False):
    "Pooled features of every photo under the pretrained body at `size` (cached by sha256, as `review` caches them); with `turns` averaged over the eight turns and mirror images."
    body = pretrained_body(args.arch, args.weights, size)
    return cached_features(body, [r.path for r in recs], args.cache, [r.sha256 for r in recs], bs=args.bs, flip=turns, turns=turns)

def oof_pruned(X, yn, groups, seed, K, P):
    "Out-of-fold probabilities of the probe refitted with the photos cleanlab flags under `P` (a first pass) left out of every fit fold; they are still scored."
    from cleanlab.filter import find_label_issues
    return oof_probabilities(X, yn, groups, seed=seed, n_classes=K, exclude=find_label_issues(yn, P))

def oof_svc(X, yn, groups, seed, K):
    "Out-of-fold probabilities of an RBF SVC on standardised `X`, on the probe's folds."
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    Xs, P = StandardScaler().fit_transform(X), np.zeros((len(yn), K))
    for tr, te in fold_splits(yn, groups, 5, seed, K):
        m = SVC(C=1.0, probability=True, random_state=0).fit(Xs[tr], yn[tr])
        P[np.ix_(te, m.classes_)] = m.predict_proba(Xs[te])
    return P

class Partial:
    """MobileNetV2's blocks from `cut` on plus a linear head, fine-tuned per fold on cached activations of the blocks before `cut`.
    Its views are the photo and its mirror image, or with `turns` the eight quarter turns and mirror images: each epoch
    shows every photo under one view drawn at random, and a held-out photo is predicted from all its views averaged."""
    def __init__(self, recs, args, turns=False):
        import torch
        body = pretrained_body(args.arch, args.weights, 224)
        blocks = body.module[0]  # torchvision's `features`: 19 blocks
        self.high, self.epochs, self.lr, self.torch = blocks[args.partial:], args.epochs, args.lr, torch
        key = hashlib.sha256(''.join(r.sha256 for r in recs).encode()).hexdigest()[:12]
        path = Path(args.cache)/f'{body.key}-cut{args.partial}{"-turns" if turns else ""}-flip-{key}.npz'  # its views named as cached_features names them
        if not path.is_file():
            V = []  # views x photos x activations
            with torch.no_grad():
                for _, x in photo_batches(body, [r.path for r in recs], args.bs):  # load_set keeps readable photos only
                    V.append(np.stack([blocks[:args.partial](view).half().numpy() for view in photo_views(x, flip=True, turns=turns)]))
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, durable=False) as tmp: np.savez(tmp, V=np.concatenate(V, axis=1))
        self.V = torch.from_numpy(np.load(path)['V']).float()

    def fit(self, tr, yn, seed, K):
        torch, nn = self.torch, self.torch.nn
        torch.manual_seed(seed)
        m = nn.Sequential(copy.deepcopy(self.high), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.25), nn.Linear(1280, K))
        lrs = [self.lr, self.lr*10]
        opt = torch.optim.AdamW([{'params': m[0].parameters(), 'lr': lrs[0]}, {'params': m[4].parameters(), 'lr': lrs[1]}], weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=self.epochs * ((len(tr) + 63) // 64), pct_start=0.25)
        yt, w = torch.from_numpy(yn), torch.from_numpy(1.0 / np.bincount(yn[tr], minlength=K)[yn[tr]])
        g = torch.Generator().manual_seed(seed)
        m.train()
        for _ in range(self.epochs):
            idx = tr[torch.multinomial(w, len(tr), replacement=True, generator=g).numpy()]
            for i in range(0, len(idx), 64):
                b = idx[i:i+64]  # one view per photo; of two, a coin flip (the draws the recorded figures made)
                v = torch.randint(len(self.V), (len(b),), generator=g) if len(self.V) > 2 else (torch.rand(len(b), generator=g) < 0.5).long()
                loss = nn.functional.cross_entropy(m(self.V[v, torch.from_numpy(b)]), yt[b])
                opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        return m.eval()

    def oof(self, yn, groups, seed, K):
        P = np.zeros((len(yn), K))
        for tr, te in fold_splits(yn, groups, 5, seed, K):
            m = self.fit(tr, yn, seed, K)
            with self.torch.no_grad(): P[te] = self.torch.stack([m(V[te]).softmax(1) for V in self.V]).mean(0).numpy()
        return P

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', type=Path, default=GCD)
    p.add_argument('--settings', nargs='+', default=['uniform10', 'uniform20', 'structured20'], choices=list(COLUMN))
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--arch', default='mobilenet_v2')
    p.add_argument('--weights', default=str(WEIGHTS))
    p.add_argument('--sizes', type=int, nargs='+', default=[224], help='image sides of the probes (the first is the default probe)')
    p.add_argument('--svc', action='store_true', help='also an RBF SVC on the first size, averaged with its probe')
    p.add_argument('--partial', type=int, metavar='CUT', help='also fine-tune MobileNetV2 blocks CUT.. per fold (14: the last five, 11: the last eight)')
    p.add_argument('--epochs', type=int, default=8, help='with --partial: epochs per fold')
    p.add_argument('--lr', type=float, default=1e-3, help="with --partial: the blocks' learning rate (the head's is ten times it)")
    p.add_argument('--turns', action='store_true', help="also the probe on the first size's features averaged over each photo's eight quarter turns and mirror images (review --turns); with --partial, also the two averaged")
    p.add_argument('--partial-turns', action='store_true', help="with --partial and --turns: also the blocks fine-tuned on the eight turns and mirror images (partial-turns), alone and averaged with the turns probe")
    p.add_argument('--prune', action='store_true', help="also the first probe (and with --turns the turns probe) refitted without the photos cleanlab's find_label_issues flags under it")
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--cache', type=Path, default=Path.home()/'.cache'/'cloud_classifier'/'features')
    p.add_argument('--json', type=Path, help='also write the results here')
    p.add_argument('--probs', type=Path, help="also save each variant's out-of-fold probabilities here, as label_noise.py --probs does (for its --combine)")
    args = p.parse_args()
    if not args.data.is_dir(): raise SystemExit(f'{args.data} is not there: give --data or CLOUD_CLASSIFIER_GCD')
    if args.partial_turns and not (args.partial is not None and args.turns): raise SystemExit('--partial-turns needs --partial CUT and --turns')
    if args.partial is not None and args.arch != 'mobilenet_v2': raise SystemExit('--partial cuts MobileNetV2 blocks: give --arch mobilenet_v2')
    import torch; torch.set_num_threads(os.cpu_count())
    recs, y, classes, groups = load_set(args.data); K = len(classes)
    X = {s: size_features(recs, args, s) for s in args.sizes}
    XT = size_features(recs, args, args.sizes[0], turns=True) if args.turns else None
    first = f'probe{args.sizes[0]}'
    conf = clean_confusion(X[args.sizes[0]], y, groups, K, args.settings)
    partial = Partial(recs, args) if args.partial is not None else None
    partial_turns = Partial(recs, args, turns=True) if args.partial_turns else None
    meta = run_meta()
    rows = []
    for setting in args.settings:
        for seed in args.seeds:
            yn = noisy_labels(setting, y, K, seed, conf); wrong = yn != y
            P, secs = {}, {}
            def add(name, make):
                t = time.time(); P[name] = make(); secs[name] = time.time() - t
            for s in args.sizes: add(f'probe{s}', lambda: oof_probabilities(X[s], yn, groups, seed=seed, n_classes=K))
            if len(args.sizes) > 1: P['sizes'] = np.mean([P[f'probe{s}'] for s in args.sizes], 0); secs['sizes'] = sum(secs[f'probe{s}'] for s in args.sizes)
            if args.svc: add('svc', lambda: oof_svc(X[args.sizes[0]], yn, groups, seed, K)); P['svc+probe'] = (P['svc'] + P[first]) / 2; secs['svc+probe'] = secs['svc'] + secs[first]
            if partial: add('partial', lambda: partial.oof(yn, groups, seed, K)); P['partial+probe'] = (P['partial'] + P[first]) / 2; secs['partial+probe'] = secs['partial'] + secs[first]
            if args.turns: add('turns', lambda: oof_probabilities(XT, yn, groups, seed=seed, n_classes=K))
            if partial and args.turns: P['partial+turns'] = (P['partial'] + P['turns']) / 2; secs['partial+turns'] = secs['partial'] + secs['turns']
            if partial_turns:
                add('partial-turns', lambda: partial_turns.oof(yn, groups, seed, K))
                P['partial-turns+turns'] = (P['partial-turns'] + P['turns']) / 2; secs['partial-turns+turns'] = secs['partial-turns'] + secs['turns']
            if args.prune:
                for name, Xp in ((first, X[args.sizes[0]]), ('turns', XT)):
                    if name in P: add(f'{name}-pruned', lambda: oof_pruned(Xp, yn, groups, seed, K, P[name])); secs[f'{name}-pruned'] += secs[name]
            for name, Pv in P.items():
                if args.probs: save_probs(args.probs, setting, seed, name, Pv, y, yn, groups)
                r = dict(setting=setting, seed=seed, variant=name, recall=round(float(scores(queue_order(Pv, yn, groups, K)[0], wrong)[COLUMN[setting]]), 3),
                         error=true_error(Pv, y), seconds=round(secs[name], 1))
                rows.append(r); print(json.dumps(r), flush=True)
            if args.json: args.json.write_text(json.dumps(dict(meta, rows=rows), indent=1))
    print(f"\n| noise | recall in | variant | seeds | recall (per seed) | error | seconds |\n|---|---|---|---|---|---|---|")
    for setting in args.settings:
        for name in dict.fromkeys(r['variant'] for r in rows if r['setting'] == setting):
            rs = [r for r in rows if (r['setting'], r['variant']) == (setting, name)]
            print(f"| {setting} | first {COLUMN[setting][1:]}% | {name} | {len(rs)} | {np.mean([r['recall'] for r in rs]):.3f} ({' '.join(str(r['recall']) for r in rs)}) "
                  f"| {np.mean([r['error'] for r in rs]):.3f} | {np.median([r['seconds'] for r in rs]):.0f} |")

if __name__ == '__main__': run(main)
