"The training recipe, the learner's weights, evaluation numbers and the train/evaluate commands."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch, torchvision
from fastai.vision.all import Callback, Normalize
from cloud_classifier.core import UserError
from cloud_classifier.data import cloud_dataloaders, synthetic_image_set
from cloud_classifier.core import Recipe
from cloud_classifier.learner import make_learner, ARCHS, get_arch
from cloud_classifier.evaluate import classification_metrics, evaluate
from cloud_classifier.train import fit_recipe, train_model
from cloud_classifier.cli import main
import fastai.vision.learner as fvl
from conftest import run_cli, run_main, CLI

SMALL = dict(size=32, bs=8, item_tfms='resize', batch_tfms=None)

def _dls(path): return cloud_dataloaders(path, **SMALL)

class RecordLrs(Callback):
    "What the optimizer really uses: each parameter group's rate, and which parameters train, per batch."
    order = 70  # after fastai's ParamScheduler
    def before_fit(self): self.lrs, self.trainable = [], []
    def before_batch(self):
        if self.training:
            self.lrs.append([h['lr'] for h in self.opt.hypers])
            self.trainable.append(all(p.requires_grad for p in self.learn.model[0].parameters()))

def test_recipe_freezes_then_applies_two_distinct_rates(image_set, tmp_path):
    learn = make_learner(_dls(image_set), 'resnet18', weights=None, path=tmp_path, model_dir='ck')
    frozen, unfrozen = RecordLrs(), RecordLrs()
    learn.add_cb(frozen)
    learn.freeze(); learn.fit_one_cycle(1, 1e-2)  # the recipe's first stage, observed alone
    learn.remove_cb(frozen)
    assert not any(frozen.trainable)
    learn.add_cb(unfrozen)
    fit_recipe(learn, 0, 1, lr=1e-2, lrs=slice(1e-5, 1e-3), checkpoint=False)
    lrs = np.array(unfrozen.lrs)
    assert all(unfrozen.trainable) and len(learn.opt.param_groups) == 3
    assert np.allclose(lrs[:, 0] / lrs[:, -1], 1e-2)  # body start at lo, head at hi, through the whole cycle
    assert lrs[:, 0].max() == pytest.approx(1e-5, rel=0.05) and lrs[:, -1].max() == pytest.approx(1e-3, rel=0.05)
    # and the optimizer's own param groups hold those rates
    assert [pg['lr'] for pg in learn.opt.hypers][0] < [pg['lr'] for pg in learn.opt.hypers][-1]

@pytest.mark.parametrize('arch', ARCHS)
def test_every_architecture_has_a_cut_and_three_groups(arch):
    fn = get_arch(arch)
    m = fvl.create_vision_model(fn, 4, pretrained=False)
    groups = fvl.model_meta[fn]['split'](m)
    assert len(groups) == 3 and sum(map(len, groups)) == len(list(m.parameters()))
    assert m.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 4)

def test_local_weights_file_loads_into_body_and_freezes(image_set, tmp_path):
    tv = torchvision.models.resnet18()
    torch.save({f'module.{k}': v for k, v in tv.state_dict().items()}, tmp_path/'r18.pth')  # as saved from DDP
    learn = make_learner(_dls(image_set), 'resnet18', weights=tmp_path/'r18.pth')
    assert torch.equal(learn.model[0][4][0].conv1.weight, tv.layer1[0].conv1.weight)
    assert learn.pretrained and not learn.model[0][0].weight.requires_grad
    assert any(isinstance(t, Normalize) for t in learn.dls.after_batch.fs)
    torch.save(torchvision.models.mobilenet_v2().features.state_dict(), tmp_path/'mnv2.pth')
    with pytest.raises(UserError, match='another architecture'): make_learner(_dls(image_set), 'resnet18', weights=tmp_path/'mnv2.pth')
    (tmp_path/'text.pth').write_text('hello')
    with pytest.raises(UserError, match='not a PyTorch weights file'): make_learner(_dls(image_set), 'resnet18', weights=tmp_path/'text.pth')

def test_imagenet_download_offline_says_so(image_set, tmp_path):
    env = {**os.environ, 'TORCH_HOME': str(tmp_path/'cache'), 'https_proxy': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9'}
    r = subprocess.run([*CLI, 'train', image_set, '--out', tmp_path/'m', '--arch', 'resnet18', '--size', '32', '--bs', '8'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith('error: cannot download the ImageNet weights for resnet18') and 'offline' in err and '--weights PATH' in err

def test_metrics_match_a_hand_computed_confusion_matrix():
    # targets/preds over classes a, b, c:   a->a a->b a->a | b->b b->b b->c | c->a c->c
    res = classification_metrics([0, 0, 0, 1, 1, 1, 2, 2], [0, 1, 0, 1, 1, 2, 0, 2], ['a', 'b', 'c'])
    assert res['confusion'] == {'classes': ['a', 'b', 'c'], 'matrix': [[2, 1, 0], [0, 2, 1], [1, 0, 1]]}
    assert (res['n'], res['accuracy'], res['error_rate']) == (8, 5 / 8, 3 / 8)
    assert res['per_class']['a'] == {'precision': 2 / 3, 'recall': 2 / 3, 'f1': pytest.approx(2 / 3), 'support': 3}
    assert res['per_class']['b'] == {'precision': 2 / 3, 'recall': 2 / 3, 'f1': pytest.approx(2 / 3), 'support': 3}
    assert res['per_class']['c'] == {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'support': 2}
    assert res['most_confused'] == [{'actual': 'a', 'predicted': 'b', 'count': 1}, {'actual': 'b', 'predicted': 'c', 'count': 1},
                                    {'actual': 'c', 'predicted': 'a', 'count': 1}]
    json.dumps(res)  # plain JSON types only

def test_train_then_evaluate_command(image_set, tmp_path):
    out = tmp_path/'models'
    r = run_cli('train', image_set, '--out', out, '--arch', 'resnet18', '--weights', 'none', '--size', '32', '--bs', '8',
                '--epochs-frozen', '1', '--epochs', '1', '--lr', '2e-3', '--balance', 'none', '--test', image_set)
    assert r.returncode == 0, r.stderr
    assert 'validation: error' in r.stdout and 'test: error' in r.stdout
    # its output is not a terminal: one line per epoch, and no progress bar redrawn into the log
    assert '\r' not in r.stdout
    assert [l.split(':')[0] for l in r.stdout.splitlines() if l.startswith('epoch ')] == ['epoch 1/1 (frozen)', 'epoch 1/1 (unfrozen)']
    names = {p.name for p in out.iterdir()}
    assert {'export.pkl', 'model_card.json', 'valid.json', 'test.json', 'confusion_valid.png', 'losses.png', 'top_losses.png'} <= names
    card = json.loads((out/'model_card.json').read_text())
    assert card['metrics']['test']['n'] == 36 and card['data']['n_train'] + card['data']['n_valid'] == 36
    # a second labelled folder: genus folder names in another spelling, a class the model does not know
    other = synthetic_image_set(tmp_path/'other', {'cumulus': 3, 'Ci': 2, 'trees': 4}, size=32)
    r = run_cli('evaluate', out/'export.pkl', other, '--json', tmp_path/'e.json')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'e.json').read_text())
    assert res['n'] == 5 and res['skipped_classes'] == ['trees'] and 'trees' in r.stdout
    assert res['confusion']['classes'] == ['Cirrus', 'Cumulus', 'rocks']
    assert sum(map(sum, res['confusion']['matrix'])) == 5
    assert {k for k in res} >= {'n', 'accuracy', 'error_rate', 'per_class', 'confusion', 'most_confused'}

def test_bad_inputs_get_one_line_messages(image_set, tmp_path):
    r = run_main('train', tmp_path/'nowhere', '--weights', 'none')
    assert r.returncode == 2 and r.stderr.startswith('error: data folder') and r.stderr.count('\n') == 1
    r = run_main('train', image_set, '--weights', 'none', '--classes', 'Cu', 'Stratus')
    assert r.returncode == 2 and 'class Stratus not found' in r.stderr
    (image_set/'Cu'/'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    with pytest.raises(UserError, match=r'1 image\(s\) in .* cannot be read: Cu/broken.jpg \(corrupt\); .* data check .* --quarantine'):
        train_model(image_set, tmp_path/'m', weights=None, **SMALL)
    assert (image_set/'Cu'/'broken.jpg').exists()  # left as it was
    ok = synthetic_image_set(tmp_path/'ok', {'Cu': 4, 'Ci': 4}, size=32)
    learn = make_learner(_dls(ok), 'resnet18', weights=None)
    res = evaluate(learn, ok, tta=True)  # test-time augmentation runs and counts every image once
    assert res['tta'] and res['n'] == 8 and sum(map(sum, res['confusion']['matrix'])) == 8
    with pytest.raises(UserError, match='cannot be read'): evaluate(learn, image_set)
    with pytest.raises(UserError, match='no images of the model'): evaluate(learn, synthetic_image_set(tmp_path/'t', {'trees': 2}))

@pytest.mark.parametrize('opts, msg', [
    (['--bs', '0'], 'batch size 0 is not a positive whole number'),
    (['--bs', '-4'], 'batch size -4 is not a positive whole number'),
    (['--size', '0'], 'image size 0 is not a positive whole number'),
    (['--valid-pct', '1.5'], 'valid_pct 1.5 is not between 0 and 1'),
    (['--epochs', '-1'], '--epochs -1 is not a whole number of 0 or more'),
    (['--epochs', '0', '--epochs-frozen', '0'], '--epochs and --epochs-frozen are both 0, so nothing would train'),
    (['--lr', '-1'], 'learning rate -1.0 is not a positive number'),
    (['--label-smoothing', '1'], 'label smoothing 1.0 is not in [0, 1)'),
])
@pytest.mark.parametrize('cmd', ['train', 'run'])
def test_numbers_are_checked_before_any_work(image_set, tmp_path, capsys, cmd, opts, msg):
    out = tmp_path/'out'
    args = ['train', str(image_set), '--out', str(out)] if cmd == 'train' else ['run', str(out), '--data', str(image_set)]
    assert main([*args, '--weights', 'none', *opts]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {msg}') and err.count('\n') == 1, err
    assert not out.exists()  # nothing written

def test_a_set_smaller_than_a_batch_is_refused_before_any_work(image_set, tmp_path):
    "36 photos with --bs 32: the training split holds no full batch, so fastai would train nothing and export anyway."
    out = tmp_path/'models'
    r = run_main('train', image_set, '--out', out, '--weights', 'none', '--size', '32', '--bs', '32')
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr.startswith('error: the training split has 29 images, fewer than one full batch of 32') and '--bs 29 or less' in r.stderr
    assert not out.exists()

def test_a_class_too_small_for_both_splits_is_refused(image_set, tmp_path):
    (image_set/'St').mkdir()
    for f in sorted((image_set/'Cu').iterdir())[:3]: (image_set/'St'/f.name).write_bytes(f.read_bytes())
    with pytest.raises(UserError, match=r'class Stratus \(3 photos\) has too few photos to appear in both .* at least 5'):
        train_model(image_set, tmp_path/'m', weights=None, **SMALL)
    assert not (tmp_path/'m').exists()
    learn, res = train_model(image_set, tmp_path/'m', weights=None, epochs_frozen=0, epochs=1, reports=False, valid_pct=0.4, **SMALL)
    assert 'Stratus' in res['data']['classes']  # with 40% held out, 3 photos are enough

def test_a_diverging_loss_stops_the_run_and_nothing_is_exported(image_set, tmp_path):
    out = tmp_path/'models'
    r = run_main('train', image_set, '--out', out, '--weights', 'none', '--arch', 'resnet18', '--size', '32', '--bs', '8',
                '--epochs-frozen', '1', '--epochs', '0', '--lr', '1e30')
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr.startswith('error: the training loss became') and 'training diverged' in r.stderr and '--lr' in r.stderr
    assert not (out/'export.pkl').exists() and not (out/'model_card.json').exists()

def test_library_defaults_are_the_recipe():
    import inspect
    from cloud_classifier.data import cloud_dataloaders
    r = Recipe()
    sig = lambda f: inspect.signature(f).parameters
    assert sig(cloud_dataloaders)['balance'].default == r.balance == 'weighted'
    assert sig(make_learner)['label_smoothing'].default == r.label_smoothing == 0.1
    assert sig(fit_recipe)['lr'].default == r.lr == 5e-3
    assert all(sig(train_model)[k].default == v for k, v in vars(r).items())

class CtrlC(Callback):
    "The user presses Ctrl-C during the second epoch after unfreezing."
    def after_batch(self):
        if self.training and self.epoch == 1 and all(p.requires_grad for p in self.learn.model.parameters()): raise KeyboardInterrupt

def test_interrupted_run_resumes_from_its_checkpoint(image_set, tmp_path, capsys):
    out, kw = tmp_path/'models', dict(arch='resnet18', weights=None, epochs_frozen=1, epochs=3, lr=1e-3, reports=False, **SMALL)
    with pytest.raises(KeyboardInterrupt): train_model(image_set, out, cbs=[CtrlC()], **kw)
    err = capsys.readouterr().err
    assert 'interrupted after' in err and '--resume' in err
    prog = out/'checkpoints'/'progress.json'
    assert json.loads(prog.read_text())['done'] == {'frozen': 1, 'unfrozen': 1} and (out/'checkpoints'/'last.pth').exists()
    # training again without saying which is refused, and the interrupted run's checkpoints stay as they were
    before = {p.name: p.read_bytes() for p in (out/'checkpoints').iterdir()}
    with pytest.raises(UserError, match=r'holds an interrupted run .*--resume .*--restart'): train_model(image_set, out, **kw)
    with pytest.raises(UserError, match='choose one'): train_model(image_set, out, resume=True, restart=True, **kw)
    assert {p.name: p.read_bytes() for p in (out/'checkpoints').iterdir()} == before
    learn, res = train_model(image_set, out, resume=True, **kw)
    assert 'resuming' in capsys.readouterr().out
    assert json.loads(prog.read_text())['done'] == {'frozen': 1, 'unfrozen': 3}
    assert [e['epoch'] for e in res['history']] == [1, 2]  # only the two epochs left were run
    with pytest.raises(UserError, match='nothing to resume'): train_model(image_set, tmp_path/'other', resume=True, **kw)
    assert json.loads(prog.read_text())['finished']  # a finished run is no interrupted one: training again needs no flag
    learn, res = train_model(image_set, out, **{**kw, 'epochs': 1})
    assert [e['epoch'] for e in res['history']] == [0, 0]

def test_resume_keeps_the_recorded_settings(image_set, tmp_path, capsys):
    "A resumed run trains on with the settings it was started with, whatever the call now says or the defaults now are."
    out, kw = tmp_path/'models', dict(arch='resnet18', weights=None, epochs_frozen=1, epochs=2, lr=1e-3, reports=False, **SMALL)
    with pytest.raises(KeyboardInterrupt): train_model(image_set, out, aug='flip', label_smoothing=0.2, cbs=[CtrlC()], **kw)
    learn, res = train_model(image_set, out, resume=True, aug='zoom', label_smoothing=0.0, **kw)
    assert res['args']['aug'] == 'flip' and res['args']['label_smoothing'] == 0.2 and learn.loss_func.func.eps == 0.2
    # a run recorded before augmentation and label smoothing were settings trained with random crops and plain cross-entropy
    with pytest.raises(KeyboardInterrupt): train_model(image_set, out, restart=True, cbs=[CtrlC()], **kw)
    prog = out/'checkpoints'/'progress.json'
    state = json.loads(prog.read_text()); del state['args']['aug'], state['args']['label_smoothing']; prog.write_text(json.dumps(state))
    learn, res = train_model(image_set, out, resume=True, **kw)
    assert res['args']['aug'] == 'zoom' and res['args']['label_smoothing'] == 0.0 and not hasattr(learn.loss_func.func, 'eps')
    with pytest.raises(KeyboardInterrupt): train_model(image_set, out, restart=True, cbs=[CtrlC()], **kw)
    prog.write_text('{"args": ')  # cut short
    with pytest.raises(UserError, match='progress.json cannot be read: train again without --resume'):
        train_model(image_set, out, resume=True, **kw)
    assert prog.read_text() == '{"args": '  # left as it was

def _shared(*parts):
    p = next((d/'shared' for d in Path(__file__).resolve().parents if (d/'shared'/'weights').exists()), None)
    return p.joinpath(*parts) if p and p.joinpath(*parts).exists() else None

@pytest.mark.slow
@pytest.mark.skipif(_shared('weights', 'mobilenet_v2-imagenet-features.pth') is None, reason='needs ../shared/weights')
def test_offline_mobilenet_v2_weights_load(image_set):
    w = _shared('weights', 'mobilenet_v2-imagenet-features.pth')
    learn = make_learner(_dls(image_set), 'mobilenet_v2', weights=w)
    sd = torch.load(w)
    assert torch.equal(learn.model[0][0][0][0].weight, sd['features.0.0.weight'])
    assert torch.equal(learn.model[0][0][18][1].running_var, sd['features.18.1.running_var'])

@pytest.mark.slow
def test_two_cpu_processes_train_through_fastai_distrib_ctx(image_set, tmp_path):
    "The recipe under torchrun (what `accelerate launch` runs) with two CPU processes and gloo; the first writes the export."
    out, script = tmp_path/'models', tmp_path/'launch.py'
    # the command line, plus a report at exit of whether the process group outlived it (gloo's threads can then abort
    # the process during shutdown); registered first, so it runs after every exit handler the code registers
    script.write_text("import atexit, sys, torch.distributed as dist\n"
                      "atexit.register(lambda: print('process group at shutdown:', dist.is_initialized(), flush=True))\n"
                      "from cloud_classifier.cli import main\n"
                      "sys.exit(main())\n")
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--standalone', '--tee', '3',
                        script, 'train', image_set, '--out', out, '--arch', 'resnet18', '--weights', 'none',
                        '--size', '32', '--bs', '8', '--epochs-frozen', '1', '--epochs', '1', '--lr', '1e-3', '--keep-checkpoints'],
                       capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    ranks = [l for l in r.stderr.splitlines() if l.startswith('[default')]  # what the processes printed, not the launcher
    assert r.returncode == 0, '\n'.join(ranks[-30:]) + '\n' + r.stderr[-1000:]
    assert r.stdout.count('validation: error') == 2  # both processes ran the recipe
    assert r.stdout.count('process group at shutdown: False') == 2, r.stdout[-2000:]
    assert (out/'export.pkl').exists() and json.loads((out/'checkpoints'/'progress.json').read_text())['done'] == {'frozen': 1, 'unfrozen': 1}
