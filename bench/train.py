"""Training benchmark on CCSN (Zhang et al. 2018, GRL, doi:10.1029/2018GL077787), ten genera (Ct left out).

One fixed group-aware split (near-duplicate photos kept on one side), evaluated the same way for every run:
  (a) the original notebook's recipe verbatim: `get_equal_images`; RandomResizedCrop(size, min_scale=0.5) +
      aug_transforms(); 4 frozen epochs at 9e-3; unfreeze; 10 epochs at slice(1e-4, 5e-3); fastai's default
      memory layout
  (b) our default recipe (cloud_classifier.core.Recipe's defaults: every photo, classes balanced per epoch, resize and
      horizontal flips only, label smoothing 0.1; the offline MobileNetV2 weights; channels-last)
  (c) resnet34 from scratch with (b)'s budget: the same epochs over the same images
All three use the offline MobileNetV2 ImageNet weights where pretrained, ImageNet normalisation, bs 32.

  flock /tmp/cc-bench.lock python bench/train.py [--size 224] [--out /tmp/cc-bench] [--seed 42] [--split-seed 42] [--probe N]
"""
import argparse, json, os, platform, sys, time, warnings
from pathlib import Path
warnings.filterwarnings('ignore')
import torch
from fastai.vision.all import Callback, CancelValidException, error_rate, set_seed
from cloud_classifier.data import GroupSplitter, class_files, cloud_dataloaders
from cloud_classifier.dedupe import split_groups, THRESHOLD
from cloud_classifier.core import Recipe, AUGMENTATIONS
from cloud_classifier.learner import make_learner
from cloud_classifier.evaluate import evaluate
from cloud_classifier.train import fit_recipe, AUTO_LR, find_lr

def _shared():
    "../shared beside the repository (a worktree sits one level deeper, so look further up too)."
    here = Path(__file__).resolve().parents[1]
    return next((d/'shared' for d in here.parents if (d/'shared'/'weights').exists()), here.parent/'shared')
CCSN = Path(os.environ.get('CLOUD_CLASSIFIER_DATA', _shared()/'data'/'ccsn'))
WEIGHTS = _shared()/'weights'/'mobilenet_v2-imagenet-features.pth'
GENERA10 = ['Ac', 'As', 'Cb', 'Cc', 'Ci', 'Cs', 'Cu', 'Ns', 'Sc', 'St']

def near_duplicate_groups(files):
    "file -> group id for `files` in a near-duplicate group: the dedupe stage's `split_groups` (pHash, its threshold)."
    wanted = {str(f) for f in files}
    return {f: g for f, g in split_groups(CCSN).items() if f in wanted}

def link_split(files, idx, dest):
    "Symlink the chosen files into dest/<class>/ (the data set is left untouched)."
    for i in idx:
        f = files[i]
        (dest/f.parent.name).mkdir(parents=True, exist_ok=True)
        if not (dest/f.parent.name/f.name).exists(): os.symlink(f, dest/f.parent.name/f.name)
    return dest

class SkipValidation(Callback):
    "Validation is measured once at the end, the same way for every run; skip fastai's per-epoch pass."
    def before_validate(self): raise CancelValidException()

def dls_for(train_dir, size, bs, seed, balance, aug, normalize=True):
    "The `DataLoaders` `train_model` builds, on the fixed training half (nothing held out: validation is `valid_dir`)."
    return cloud_dataloaders(train_dir, GENERA10, size=size, bs=bs, valid_pct=0.0, seed=seed, balance=balance,
                             normalize=normalize, **AUGMENTATIONS[aug])

def run(name, learn, n_train, fit, valid_dir, log):
    learn.add_cb(SkipValidation())
    learn._seen = 0  # lr_find batches are not training
    t0 = time.time(); fit(learn); wall = time.time() - t0
    learn.remove_cb(SkipValidation)
    res = evaluate(learn, valid_dir)
    out = dict(run=name, error_rate=res['error_rate'], accuracy=res['accuracy'], macro_f1=res['macro_f1'], n_valid=res['n'],
               n_train=n_train, wall_s=wall, train_img_per_s=learn._seen / wall, most_confused=res['most_confused'][:3])
    print(json.dumps(out), flush=True); log.append(out)
    return out

class Count(Callback):
    def before_fit(self): self.learn._seen = getattr(self.learn, '_seen', 0)  # counted across both stages
    def after_batch(self):
        if self.training: self.learn._seen += len(self.yb[0])

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--out', type=Path, default=Path('/tmp/cc-bench'))
    p.add_argument('--runs', default='a,b,c')
    p.add_argument('--split-seed', type=int, default=42, help='seed of the group-aware split (42: the split RESULTS.md reports)')
    p.add_argument('--seed', type=int, default=42, help='seed of sampling, augmentation and training, the same for every run (42: the runs RESULTS.md reports first)')
    p.add_argument('--probe', type=int, default=0, help='epochs of each stage for a short probe (0: the full recipes)')
    p.add_argument('--b-frozen', type=int, default=None); p.add_argument('--b-epochs', type=int, default=None)
    p.add_argument('--b-lr', default=None); p.add_argument('--b-balance', default=None); p.add_argument('--b-aug', default=None)
    p.add_argument('--b-label-smoothing', type=float, default=None)
    p.add_argument('--b-drop-conflicts', action='store_true', help="(b) leaves out training photos whose near duplicates carry another label")
    a = p.parse_args()
    torch.set_num_threads(2)
    files = [f for fs in class_files(CCSN, GENERA10).values() for f in fs]
    t = time.time(); groups = near_duplicate_groups(files); t_groups = time.time() - t
    tr, va = GroupSplitter(0.2, a.split_seed, groups)(files)
    split = a.out/'split'
    if split.exists(): import shutil; shutil.rmtree(split)
    train_dir, valid_dir = link_split(files, tr, split/'train'), link_split(files, va, split/'valid')
    info = dict(n_images=len(files), phash_bits=THRESHOLD, n_groups_multi=len(set(groups.values())), n_in_groups=len(groups), n_train=len(tr),
                n_valid=len(va), groups_s=round(t_groups, 1), size=a.size, torch=torch.__version__, threads=torch.get_num_threads(),
                machine=platform.machine(), cpus=os.cpu_count(), seed=a.seed, split_seed=a.split_seed, date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    print(json.dumps(info), flush=True)
    log, size, seed = [info], a.size, a.seed
    ef, e = (a.probe, a.probe) if a.probe else (4, 10)
    if 'a' in a.runs:  # the original notebook's recipe, verbatim
        set_seed(seed, reproducible=True)
        dls = dls_for(train_dir, size, 32, seed, 'equal', 'zoom')  # RandomResizedCrop(size, min_scale=0.5) + aug_transforms()
        learn = make_learner(dls, 'mobilenet_v2', WEIGHTS, metrics=error_rate, cbs=[Count()], channels_last=False,  # fastai's layout
                             label_smoothing=0.0)  # plain cross-entropy
        def fit_a(l):
            l.fit_one_cycle(ef, 9e-3); l.unfreeze(); l.fit_one_cycle(e, slice(1e-4, 5e-3))
        run('a: original recipe (mobilenet_v2, equal)', learn, len(dls.train_ds), fit_a, valid_dir, log)
    D = Recipe()
    bf, be = a.b_frozen if a.b_frozen is not None else D.epochs_frozen, a.b_epochs if a.b_epochs is not None else D.epochs
    if a.probe: bf, be = a.probe, a.probe
    bal = a.b_balance or D.balance
    aug = a.b_aug or D.aug
    ls = D.label_smoothing if a.b_label_smoothing is None else a.b_label_smoothing
    if 'b' in a.runs:  # our defaults
        b_dir = train_dir
        if a.b_drop_conflicts:
            classes_of = {}
            for f, g in groups.items(): classes_of.setdefault(g, set()).add(Path(f).parent.name)
            keep = [i for i in tr if len(classes_of.get(groups.get(str(files[i])), ())) < 2]
            print(json.dumps(dict(dropped_conflicts=len(tr) - len(keep))), flush=True)
            b_dir = link_split(files, keep, split/'train_b')
        set_seed(seed, reproducible=True)
        dls = dls_for(b_dir, size, D.bs, seed, bal, aug)
        learn = make_learner(dls, 'mobilenet_v2', WEIGHTS, cbs=[Count()], label_smoothing=ls)
        lr = a.b_lr or D.lr
        t_lr = time.time()
        if lr == 'auto': lr = find_lr(learn, a.out, num_it=100)[AUTO_LR]
        t_lr = time.time() - t_lr
        b = run(f'b: our defaults (mobilenet_v2, {bal}, aug {aug}, label smoothing {ls}, {bf}+{be} epochs, lr {float(lr):.2e})', learn, len(dls.train_ds),
                lambda l: fit_recipe(l, bf, be, lr=float(lr), checkpoint=False), valid_dir, log)
        b['lr_find_s'] = t_lr
    if 'c' in a.runs:  # resnet34 from scratch, the same passes over the same images as (b)
        n_ep = bf + be
        set_seed(seed, reproducible=True)
        dls = dls_for(train_dir, size, D.bs, seed, bal, aug, normalize=False)
        learn = make_learner(dls, 'resnet34', None, cbs=[Count()], label_smoothing=ls)
        run(f'c: resnet34 from scratch ({bal}, aug {aug}, {n_ep} epochs, lr 3e-3 one-cycle)', learn, len(dls.train_ds),
            lambda l: l.fit_one_cycle(n_ep, 3e-3), valid_dir, log)
    (a.out/'results.json').write_text(json.dumps(log, indent=1))

if __name__ == '__main__': main()
