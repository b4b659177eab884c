"""How well each review queue finds wrong labels, on GCD with labels flipped on purpose (so the wrong ones are known).

GCD (../shared/data/gcd, 1,750 expertly labelled whole-sky photos, seven classes; Liu, Duan, Zhang, Cao and Durrani,
IEEE TGRS 60, 2022) is never modified: the noise is a label array over its files, and a run that must train (the loss
ranking, the end-to-end effect) trains on a folder of symlinks that files each photo under its noisy label.

Noise settings: `uniform10`, `uniform20` (that share of the photos get another class, uniformly), and `structured20`
(20% of the photos flipped in proportion to a clean model's confusion matrix: a photo of class c is picked with
probability proportional to how often c is confused, and gets class j with probability proportional to C[c, j]). The
"clean model" is the out-of-fold linear probe on the clean labels (`--confusion probe`), the cheap stand-in for a
trained model.

Rankings: `ours` (cloud_classifier.rank: out-of-fold logistic regression on the frozen body's pooled features, scored
with cleanlab; `--oof finetune` fine-tunes the recipe per fold instead, `--oof both` averages the two), `random` (a floor), `loss` (fastai's ordering: the default recipe trained once on the noisy labels,
every photo ranked by its loss under it, as `ImageClassifierCleaner` does: ~8+ minutes a run on a 2-core CPU),
`ours-model` (ours on the features of that same trained model's own body, as `review MODEL DATA --features model` ranks;
without it, `review MODEL DATA` and the cleaner rank a model on the pretrained body it started from, which is `ours`; it shares (a)'s training), `blend` (each photo's place in ours and in (a)'s order averaged; shares (a)'s training),
`true-labels` (ours' probe fitted out of fold on the true labels, scoring the noisy ones: what ours would find if the
noise did not disturb its fit, so the gap between `ours` and `true-labels` is what a more noise-robust score could still
win, and the rest is the limit of the features).
For each: precision and recall of the truly wrong labels in the first 5/10/20% of the queue, the compute time, and for
the out-of-fold rankings the error of their predictions against the true labels.

End-to-end (`--end-to-end`): a test part (20%, stratified) is split off and never flipped; noise goes on the rest.
Error on the test part after training on the noisy labels, on the labels after a simulated reviewer looks at the first
10% of each queue and fixes the wrong labels it sees, and on the clean labels; the share of the noisy-clean gap that
the review closes. `--trainer recipe` trains the default recipe each time (slow); `--trainer probe` fits the linear
probe on the cached features instead (seconds; a proxy, reported as such).

  python bench/label_noise.py --settings uniform10 uniform20 structured20 --seeds 0 1 2 --rankings ours random
  python bench/label_noise.py --settings uniform10 --seeds 0 --rankings loss          # one default training run
  python bench/label_noise.py --end-to-end --trainer probe --rankings ours random
  python bench/label_noise.py --settings uniform10 --seeds 0 --oof finetune --probs probs   # five default trainings
  python bench/label_noise.py --combine probs/uniform10_s0_probe.npz probs/uniform10_s0_finetune.npz  # what --oof both ranks by
  python bench/label_noise.py --settings uniform10 uniform20 structured20 --rankings ours true-labels
  python bench/label_noise.py --settings uniform10 uniform20 structured20 --rankings ours --no-flip --turns   # as review --turns ranks
  python bench/label_noise.py --ccsn                                                  # CCSN's identical-photo conflicts
"""
import argparse, functools, json, os, platform, sys, tempfile, time
from pathlib import Path
import numpy as np
from cloud_classifier.rank import pretrained_body, learner_body, photo_features, cached_features, oof_probabilities, oof_predictions, OOF_MODELS, label_queue, conflict_groups, duplicate_group_ids

SHARED = Path(__file__).resolve().parents[1].parent/'shared'
GCD = Path(os.environ.get('CLOUD_CLASSIFIER_GCD', '/work/shared/data/gcd'))
CCSN = Path(os.environ.get('CLOUD_CLASSIFIER_DATA', '/work/shared/data/ccsn'))
WEIGHTS = Path('/work/shared/weights/mobilenet_v2-imagenet-features.pth')
SHARES = (0.05, 0.10, 0.20)

def load_set(data:Path):
    "(files, labels, classes, groups): every photo of a folder-per-class set, and its near-duplicate group id."
    from cloud_classifier.dedupe import image_records
    recs = sorted((r for r in image_records(data) if len(r.path.relative_to(data).parts) == 2), key=lambda r: str(r.path))
    classes = sorted({r.cls for r in recs})
    return recs, np.array([classes.index(r.cls) for r in recs]), classes, duplicate_group_ids(data, recs)

def flip_uniform(y, share, K, rng):
    "Labels with `share` of them moved to another class, uniformly."
    yn = y.copy()
    for i in rng.choice(len(y), int(round(share*len(y))), replace=False):
        yn[i] = rng.choice([k for k in range(K) if k != y[i]])
    return yn

def flip_structured(y, share, conf, rng):
    "Labels with `share` of them flipped in proportion to the off-diagonal of the confusion matrix `conf`."
    off = conf.astype(float).copy(); np.fill_diagonal(off, 0)
    w = off.sum(1)[y]; n = int(round(share*len(y)))
    if (w > 0).sum() < n:
        raise SystemExit(f'the clean model confuses the classes of only {(w > 0).sum()} photos, too few to flip {n} in proportion to its confusion: use uniform noise on this set')
    yn = y.copy()
    for i in rng.choice(len(y), n, replace=False, p=w / w.sum()):
        yn[i] = rng.choice(len(off), p=off[y[i]] / off[y[i]].sum())
    return yn

def clean_confusion(X, y, groups, K, settings, C=None):
    "Confusion matrix of the clean model the structured flips follow (the out-of-fold probe on the true labels); None when no setting needs it. `X` may be a function that returns the features, called only when needed."
    if not any(s.startswith('structured') for s in settings): return None
    X = X() if callable(X) else X
    P = oof_probabilities(X, y, groups, seed=0, n_classes=K, **({} if C is None else dict(C=C)))  # None: the probe's own C
    conf = np.zeros((K, K)); np.add.at(conf, (y, P.argmax(1)), 1)
    return conf

def true_error(P, y):
    "Share of photos whose out-of-fold prediction under `P` is not their true label."
    return round(float((P.argmax(1) != y).mean()), 3)

def save_probs(folder, setting, seed, name, P, y, yn, groups):
    "Out-of-fold probabilities with the true and noisy labels, as `--combine` reads them."
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder/f'{setting}_s{seed}_{name}.npz', P=P, y=y, yn=yn, groups=groups)

def run_meta():
    "Command, date and machine of this run, for the result files."
    return dict(command=' '.join(sys.argv), date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                machine=f'{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start')

def noisy_labels(setting, y, K, seed, conf):
    rng = np.random.default_rng(seed)
    kind, pct = setting.rstrip('0123456789'), int(setting[len(setting.rstrip('0123456789')):]) / 100
    if kind == 'uniform': return flip_uniform(y, pct, K, rng)
    if kind == 'structured': return flip_structured(y, pct, conf, rng)
    raise SystemExit(f'unknown noise setting {setting!r}: use uniformNN or structuredNN')

def scores(order, wrong):
    "Precision and recall of the wrong labels in the first 5/10/20% of `order`."
    out = {}
    for s in SHARES:
        n = int(round(s*len(order))); hit = wrong[order[:n]].sum()
        out[f'p{int(s*100)}'], out[f'r{int(s*100)}'] = hit / n, hit / wrong.sum()
    return out

def rank_ours(X, yn, groups, K, seed, C, files=None, recipe=None, oof='probe'):
    "Queue order (indices) of the out-of-fold ranking, conflicting duplicate groups first, and its probabilities; `oof` as `rank_folder` takes it."
    return queue_order(oof_predictions(oof, X, files, yn, groups, C=C, seed=seed, n_classes=K, recipe=recipe), yn, groups, K)

def queue_order(P, yn, groups, K):
    "Queue order (indices) under out-of-fold probabilities `P`, conflicting duplicate groups first, and `P`."
    names = [str(i) for i in range(len(yn))]
    return np.array([int(r['file']) for r in label_queue(names, yn, P, [str(k) for k in range(K)], conflict_groups(groups, yn))]), P

def fold_recipe(args):
    "The recipe each fold trains with `--oof finetune` or `both`; None for the probe alone."
    from cloud_classifier.core import Recipe
    if args.oof == 'probe': return None
    epochs = dict(zip(('epochs_frozen', 'epochs'), args.fold_epochs)) if args.fold_epochs else {}
    return Recipe(arch=args.arch, weights=args.weights, size=args.fold_size or args.size, bs=args.bs, **epochs)

def blend(*orders):
    "One queue from several: each photo by its mean place in `orders` (ties by the first order)."
    place = np.mean([np.argsort(o) for o in orders], axis=0)
    return np.lexsort((np.argsort(orders[0]), place))

def symlink_set(root:Path, recs, labels, classes, idx):
    "A folder-per-class set of symlinks filing photo `i` under `classes[labels[i]]`, for `i` in `idx`."
    for c in classes: (root/c).mkdir(parents=True, exist_ok=True)
    for i in idx:
        dst = root/classes[labels[i]]/recs[i].path.name
        if not dst.exists(): dst.symlink_to(recs[i].path)
    return root

def train_recipe(root:Path, out:Path, args):
    "The default recipe (`train_model`'s defaults) on `root`: the trained learner."
    import matplotlib; matplotlib.use('Agg')
    from cloud_classifier.train import train_model  # every other setting is the recipe's default (core.Recipe)
    learn, _ = train_model(root, out, arch=args.arch, weights=args.weights, size=args.size, seed=args.train_seed)
    return learn

def rank_loss(recs, yn, classes, args, tmp:Path):
    "Queue order of fastai's ordering (the default recipe trained once on the noisy labels, highest loss first), and that learner."
    from cloud_classifier.clean import review_table
    root = symlink_set(tmp/'noisy', recs, yn, classes, range(len(recs)))
    learn = train_recipe(root, tmp/'model', args)
    rows = review_table(learn, root)
    pos = {f'{classes[yn[i]]}/{r.path.name}': i for i, r in enumerate(recs)}
    return np.array([pos[r['file']] for r in rows]), learn

def model_probe_order(learn, recs, yn, groups, K, seed, args):
    "Queue order of ours on the trained model's own body, as `review MODEL DATA --features model` ranks: its features, the out-of-fold probe."
    Xm = photo_features(learner_body(learn), [r.path for r in recs], bs=args.bs)  # a model of its own: nothing to cache
    return rank_ours(Xm, yn, groups, K, seed, args.C)[0]

def probe_error(X, y_train, tr, te, y_test, C):
    "Test error of the linear probe fitted on `tr` with labels `y_train` (the cheap stand-in for training)."
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    sc = StandardScaler().fit(X[tr])
    with threadpool_limits(1): clf = LogisticRegression(C=C, max_iter=1000).fit(sc.transform(X[tr]), y_train[tr])
    return float((clf.predict(sc.transform(X[te])) != y_test[te]).mean())

def recipe_run(recs, labels, classes, tr, te, y, args, tmp:Path, rank=False):
    "Test error of the default recipe trained on photos `tr` filed under `labels`; with `rank`, also fastai's ordering of `tr` under that model."
    from cloud_classifier.train import evaluate
    from cloud_classifier.clean import review_table
    root = symlink_set(tmp/'train', recs, labels, classes, tr)
    learn = train_recipe(root, tmp/'model', args)
    e = float(evaluate(learn, symlink_set(tmp/'test', recs, y, classes, te))['error_rate'])
    if not rank: return e, None
    pos = {f'{classes[labels[i]]}/{recs[i].path.name}': i for i in tr}
    return e, np.array([pos[r['file']] for r in review_table(learn, root)])

def features(recs, args, plain=False):
    "The pretrained body's pooled features of every photo, and the seconds they took; with --turns (and not `plain`) averaged over the eight turns and mirror images."
    body = pretrained_body(args.arch, args.weights, args.size)
    t, turns = time.time(), args.turns and not plain
    X = cached_features(body, [r.path for r in recs], args.cache, [r.sha256 for r in recs], bs=args.bs, flip=turns or not args.no_flip, turns=turns)
    return X, time.time() - t

def plain_features(X, recs, args):
    "The features the noise and the probe trainer use, whatever the ranking's: `X` itself unless --turns."
    return features(recs, args, plain=True)[0] if args.turns else X

def detection(args, save=lambda res: None):
    recs, y, classes, groups = load_set(args.data)
    K = len(classes)
    X, t_feat = features(recs, args)
    print(f'{len(recs)} photos, {K} classes, features {X.shape[1]} in {t_feat:.0f} s', flush=True)
    conf = clean_confusion(lambda: plain_features(X, recs, args), y, groups, K, args.settings, args.C)
    rows = []
    for setting in args.settings:
        for seed in args.seeds:
            yn = noisy_labels(setting, y, K, seed, conf); wrong = yn != y
            model = {}  # the recipe trained once on these labels: (a) ranks by its loss, ours-model by its body's features
            for ranking in args.rankings:
                t, P = time.time(), None
                if ranking == 'ours':
                    order, P = rank_ours(X, yn, groups, K, seed, args.C, [r.path for r in recs], fold_recipe(args), args.oof)
                    if args.probs: save_probs(args.probs, setting, seed, args.oof, P, y, yn, groups)
                elif ranking == 'true-labels': order, P = queue_order(oof_probabilities(X, y, groups, C=args.C, seed=seed, n_classes=K), yn, groups, K)
                elif ranking == 'random': order = np.random.default_rng(seed + 100).permutation(len(y))
                else:
                    if not model:
                        with tempfile.TemporaryDirectory() as tmp: model['loss'], model['learn'] = rank_loss(recs, yn, classes, args, Path(tmp))
                    if ranking == 'loss': order = model['loss']
                    elif ranking == 'ours-model': order = model_probe_order(model['learn'], recs, yn, groups, K, seed, args)
                    else: order = blend(rank_ours(X, yn, groups, K, seed, args.C)[0], model['loss'])
                secs = time.time() - t
                r = dict(setting=setting, seed=seed, ranking=ranking + (f'-{args.oof}' if ranking == 'ours' and args.oof != 'probe' else '')
                         + ('-turns' if args.turns and ranking in ('ours', 'true-labels', 'blend') else ''), wrong=int(wrong.sum()), seconds=round(secs, 1),
                         **{k: round(float(v), 3) for k, v in scores(order, wrong).items()}, **({} if P is None else dict(error=true_error(P, y))))
                rows.append(r); print(json.dumps(r), flush=True); save(dict(rows=rows, feature_seconds=round(t_feat, 1)))
    return dict(rows=rows, feature_seconds=round(t_feat, 1))

def end_to_end(args, save=lambda res: None):
    from sklearn.model_selection import train_test_split
    recs, y, classes, groups = load_set(args.data)
    K = len(classes)
    X, _ = features(recs, args)
    X0 = functools.cache(lambda: plain_features(X, recs, args))  # only the structured flips and the probe trainer need them
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    conf = clean_confusion(X0, y, groups, K, args.settings, args.C)
    rows, known = [], {}
    def err(labels, rank=False):
        "Test error after training on `labels` (one training per set of labels), and with `rank` fastai's ordering under it."
        key = (labels.tobytes(), rank)
        if key not in known:
            if args.trainer == 'probe': known[key] = probe_error(X0(), labels, tr, te, y, args.C_train), None
            else:
                t = time.time()
                with tempfile.TemporaryDirectory() as tmp:
                    known[key] = recipe_run(recs, labels, classes, tr, te, y, args, Path(tmp), rank)
                print(f'  trained in {time.time() - t:.0f} s: test error {known[key][0]:.4f}', flush=True)
        return known[key]
    for setting in args.settings:
        for seed in args.seeds:
            yn = y.copy(); yn[tr] = noisy_labels(setting, y[tr], K, seed, conf)
            wrong = (yn != y)[tr]
            # with the recipe as trainer, the noisy training is the very model fastai's ordering ranks by
            e_noisy, loss_order = err(yn, rank=args.trainer == 'recipe' and bool({'loss', 'blend'} & set(args.rankings)))
            e_clean = err(y)[0]
            r = dict(setting=setting, seed=seed, trainer=args.trainer, noisy=round(e_noisy, 4), clean=round(e_clean, 4))
            at = {int(i): k for k, i in enumerate(tr)}  # detection on the training part, as in the ranking table
            for ranking in args.rankings:
                if ranking == 'ours': order = tr[rank_ours(X[tr], yn[tr], groups[tr], K, seed, args.C, [recs[i].path for i in tr], fold_recipe(args), args.oof)[0]]
                elif ranking == 'random': order = np.random.default_rng(seed + 100).permutation(tr)
                elif ranking in ('loss', 'blend'):
                    if loss_order is None:
                        with tempfile.TemporaryDirectory() as tmp:
                            loss_order = tr[rank_loss([recs[i] for i in tr], yn[tr], classes, args, Path(tmp))[0]]
                    order = loss_order
                    if ranking == 'blend':
                        ours = rank_ours(X[tr], yn[tr], groups[tr], K, seed, args.C)[0]
                        order = tr[blend(ours, np.array([at[int(i)] for i in loss_order]))]
                r[f'{ranking}_found'] = {k: round(float(v), 3) for k, v in scores(np.array([at[int(i)] for i in order]), wrong).items()}
                seen = order[:int(round(0.1*len(tr)))]
                fixed = yn.copy(); fixed[seen] = y[seen]  # the reviewer fixes the wrong labels it sees, nothing else
                e = err(fixed)[0]
                r[ranking] = round(e, 4)
                r[f'{ranking}_closed'] = round((e_noisy - e) / (e_noisy - e_clean), 3) if e_noisy > e_clean else None
            rows.append(r); print(json.dumps(r), flush=True); save(dict(rows=rows))
    return dict(rows=rows)

def ccsn(args):
    "How many of CCSN's identical-photo label conflicts come out in the first 5% of our queue."
    from PIL import Image
    from cloud_classifier.rank import rank_folder
    from cloud_classifier.dedupe import find_duplicates
    from itertools import combinations
    from cloud_classifier.core import Recipe
    t = time.time()
    q = rank_folder(args.ccsn_data, recipe=Recipe(arch=args.arch, weights=args.weights, size=args.size), oof='probe', C=args.C,
                    cache=args.cache, bs=args.bs, turns=args.turns)
    secs = time.time() - t
    pos = {r['file']: i for i, r in enumerate(q)}
    px = lambda f: np.asarray(Image.open(f).convert('RGB').resize((64, 64)), dtype=np.float32)
    pairs = []
    for g in find_duplicates(args.ccsn_data):
        for a, b in combinations(g.files, 2):
            if a.cls != b.cls and np.abs(px(a.path) - px(b.path)).mean() < 4: pairs.append((a.path, b.path))
    rel = lambda p: p.relative_to(args.ccsn_data.resolve()).as_posix()
    first = int(round(0.05*len(q)))
    photos = {rel(p) for pr in pairs for p in pr}
    out = dict(photos=len(q), seconds=round(secs, 1), identical_conflict_pairs=len(pairs), conflict_photos=len(photos),
               pairs_in_first5=sum(pos[rel(a)] < first and pos[rel(b)] < first for a, b in pairs),
               photos_in_first5=sum(pos[p] < first for p in photos), first5=first,
               queued_as_conflict=sum(r['reason'].startswith('duplicate') for r in q))
    print(json.dumps(out), flush=True)
    return out

def combine(files):
    "Recall and precision in the first 5/10/20% of the queue under the mean of saved out-of-fold probabilities (same photos, labels and folds)."
    runs = [np.load(f) for f in files]
    y, yn, groups = runs[0]['y'], runs[0]['yn'], runs[0]['groups']
    if any((r['yn'] != yn).any() for r in runs): raise SystemExit('these files hold different noisy labels: give runs of one setting and seed')
    order = queue_order(np.mean([r['P'] for r in runs], axis=0), yn, groups, runs[0]['P'].shape[1])[0]
    return dict(files=[str(f) for f in files], **{k: round(float(v), 3) for k, v in scores(order, yn != y).items()})

ORDER = ['true-labels', 'ours', 'ours-finetune', 'ours-both', 'ours-model', 'blend', 'loss', 'random']  # the table's rows, a ranking's --turns run after it

def table(rows):
    "Markdown: mean (min-max over seeds) of recall and precision in the first 5/10/20%, per setting and ranking; the mean error against the true labels where measured."
    out = ['| noise | ranking | seeds | recall 5% | recall 10% | recall 20% | precision 5% | precision 10% | precision 20% | error | seconds |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
    keys = sorted({(r['setting'], r['ranking']) for r in rows}, key=lambda k: (k[0], ORDER.index(k[1].removesuffix('-turns')), k[1].endswith('-turns')))
    for setting, ranking in keys:
        rs = [r for r in rows if (r['setting'], r['ranking']) == (setting, ranking)]
        cell = lambda k: f"{np.mean([r[k] for r in rs]):.2f}" + (f" ({min(r[k] for r in rs):.2f}-{max(r[k] for r in rs):.2f})" if len(rs) > 1 else '')
        err = f"{np.mean([r['error'] for r in rs]):.3f}" if all('error' in r for r in rs) else ''
        out.append(f"| {setting} | {ranking} | {len(rs)} | " + ' | '.join(cell(k) for k in ('r5', 'r10', 'r20', 'p5', 'p10', 'p20'))
                   + f" | {err} | {np.mean([r['seconds'] for r in rs]):.0f} |")
    return '\n'.join(out)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', type=Path, default=GCD, help='the clean folder-per-class set (never modified)')
    p.add_argument('--settings', nargs='+', default=['uniform10', 'uniform20', 'structured20'])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--rankings', nargs='+', default=['ours', 'random'], choices=['ours', 'random', 'loss', 'ours-model', 'blend', 'true-labels'],
                   help="loss: (a), fastai's order; ours-model: ours on the features of the model (a) trains, as `review MODEL DATA --features model` ranks; blend: ours and (a) by mean place; true-labels: ours' probe fitted on the true labels (a reference, not a queue)")
    p.add_argument('--arch', default='mobilenet_v2')
    p.add_argument('--weights', default=str(WEIGHTS))
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--oof', choices=[m for m in OOF_MODELS if m != 'auto'], default='probe', help="ours: the probe on frozen features, the default recipe fine-tuned per fold (5 trainings), or both averaged")
    p.add_argument('--fold-epochs', type=int, nargs=2, metavar=('FROZEN', 'UNFROZEN'), help="with --oof finetune or both: each fold's epochs (the recipe's 2 5 when not given)")
    p.add_argument('--fold-size', type=int, help='with --oof finetune or both: image side of the fold trainings (--size when not given)')
    p.add_argument('--C', type=float, default=0.002, help="the ranking's logistic regression")
    p.add_argument('--C-train', type=float, default=0.01, help="the probe trainer's logistic regression")
    p.add_argument('--no-flip', action='store_true', help='features of the photo only, not averaged with its mirror image')
    p.add_argument('--turns', action='store_true', help="ours on features averaged over each photo's eight quarter turns and mirror images, as `review --turns` ranks (the noise and the probe trainer keep the plain features)")
    p.add_argument('--cache', type=Path, default=Path.home()/'.cache'/'cloud_classifier'/'features')
    p.add_argument('--train-seed', type=int, default=42)
    p.add_argument('--end-to-end', action='store_true')
    p.add_argument('--trainer', choices=['probe', 'recipe'], default='probe')
    p.add_argument('--ccsn', action='store_true', help="rank CCSN and count its identical-photo conflicts in the first 5%%")
    p.add_argument('--ccsn-data', type=Path, default=CCSN)
    p.add_argument('--json', type=Path, help='also write the results here')
    p.add_argument('--probs', type=Path, help="also save ours' out-of-fold probabilities (with the true and noisy labels) here, one .npz per setting and seed")
    p.add_argument('--combine', type=Path, nargs='+', help="print the recall and precision of the mean of these --probs files' probabilities (one setting and seed, e.g. a probe run and a finetune run: what --oof both ranks by), and stop")
    p.add_argument('--table', type=Path, nargs='+', help='print the markdown table of these --json result files, and stop')
    args = p.parse_args()
    if args.combine: return print(json.dumps(combine(args.combine)))
    if args.table: return print(table([r for f in args.table for r in json.loads(f.read_text())['rows']]))
    if not args.data.is_dir(): raise SystemExit(f'{args.data} is not there: give --data or CLOUD_CLASSIFIER_GCD')
    meta = run_meta()
    save = lambda res: args.json and args.json.write_text(json.dumps(dict(meta, **res), indent=1))  # after each row: a long run stopped keeps what it measured
    save(ccsn(args) if args.ccsn else end_to_end(args, save) if args.end_to_end else detection(args, save))

def run(main):
    "Run a bench script's `main`, with a mistake the user can fix (a `UserError`, e.g. weights of another architecture) shown as one line, not a traceback."
    from cloud_classifier.core import UserError
    try: main()
    except UserError as e: raise SystemExit(f'error: {e}') from None

if __name__ == '__main__': run(main)
