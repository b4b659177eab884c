"CloudClassifier: the same answers as learn.predict, in streamed batches, with error entries and the cloud check."
import io, itertools, json, os, stat
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from fastai.vision.all import vision_learner, resnet18, Resize, ResizeMethod
from cloud_classifier.core import UserError
from cloud_classifier.data import cloud_dataloaders
from cloud_classifier.card import read_card, merge_card
from cloud_classifier.predict import CloudClassifier, preprocessing_spec
from conftest import run_cli, run_main, shared_dir
from tiny_model import tiny_model, chart_png


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp('predict'))


def odd_images(folder: Path):
    "Photos of awkward shapes and modes: wide, tall, tiny, large, grayscale, RGBA, palette, JPEG."
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    out = []
    for i, (w, h, mode, ext) in enumerate([(90, 30, 'RGB', 'png'), (25, 70, 'RGB', 'jpg'), (7, 9, 'RGB', 'png'),
                                           (1300, 900, 'RGB', 'jpg'), (50, 40, 'L', 'png'), (40, 50, 'RGBA', 'png'),
                                           (33, 33, 'P', 'png'), (64, 48, 'RGB', 'jpg')]):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        im = Image.fromarray(a).convert(mode)
        p = folder/f'{i}-{mode}.{ext}'
        im.save(p)
        out.append(p)
    return out


@pytest.mark.parametrize('dls_kwargs', [
    dict(item_tfms='resize', batch_tfms=None),
    dict(item_tfms='crop', batch_tfms='aug', normalize=True),  # RandomResizedCrop's validation view, aug's identity affine
    dict(item_tfms=Resize(24, method=ResizeMethod.Squish), batch_tfms=None),
    dict(item_tfms=Resize((20, 28), method=ResizeMethod.Pad, pad_mode='zeros'), batch_tfms=None, normalize=True),
])
def test_predict_many_matches_learn_predict(model, tmp_path, dls_kwargs):
    _, data, _, _ = model
    dls = cloud_dataloaders(data, size=32, bs=8, seed=1, **dls_kwargs)
    learn = vision_learner(dls, resnet18, pretrained=False)
    clf = CloudClassifier(learn)
    files = odd_images(tmp_path/'odd') + sorted((data/'Cu').iterdir())[:3]
    got = list(clf.predict_many(files, bs=3))
    assert [r.file for r in got] == [str(f) for f in files]
    for r, f in zip(got, files):
        cls, idx, probs = learn.predict(f)
        assert r.genus == str(cls), f
        np.testing.assert_allclose([r.probabilities[c] for c in clf.classes], probs.numpy(), atol=1e-5, err_msg=str(f))


def test_inputs_of_every_kind_and_bad_ones_in_one_batch(model, tmp_path):
    models, data, learn, _ = model
    clf = CloudClassifier.load(models/'export.pkl')
    photo = sorted((data/'Cu').iterdir())[0]
    (tmp_path/'empty.jpg').write_bytes(b'')
    (tmp_path/'page.jpg').write_text('<html><body>404</body></html>')
    buf = io.BytesIO()
    Image.open(photo).resize((200, 200)).save(buf, 'JPEG')
    (tmp_path/'cut.jpg').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])  # a truncated download
    inputs = [photo, tmp_path/'empty.jpg', Image.open(photo), tmp_path/'page.jpg', photo.read_bytes(),
              tmp_path/'missing.png', np.asarray(Image.open(photo)), tmp_path/'cut.jpg', photo]
    got = list(clf.predict_many(inputs, bs=4))
    assert [r.error for r in got] == [None, 'not-an-image', None, 'not-an-image', None, 'not-found', None, 'corrupt', None]
    ok = [r for r in got if r.error is None]
    one = clf.predict(photo)
    for r in ok:  # the same photo, however given (batches change the last bits of a float)
        assert r.genus == one.genus and np.allclose(list(r.probabilities.values()), list(one.probabilities.values()), atol=1e-6)
    bad = got[1]
    assert (bad.genus, bad.probability, bad.probabilities, bad.file) == (None, None, {}, str(tmp_path/'empty.jpg'))
    assert set(got[0].as_dict()) >= {'file', 'genus', 'abbr', 'probability', 'height', 'description', 'is_cloud', 'probabilities'}


def test_result_fields_for_genera_and_other_classes(model):
    models, data, learn, _ = model
    clf = CloudClassifier.load(models)
    results = list(clf.predict_many(data))
    assert len(results) == 42 and all(r.error is None for r in results)
    by = {r.genus: r for r in results if r.genus}
    for name, (abbr, height) in {'Cumulus': ('Cu', 'low'), 'Cirrus': ('Ci', 'high'), 'rocks': (None, None)}.items():
        if name in by:
            r = by[name]
            assert (r.abbr, r.height) == (abbr, height)
            assert (r.description is None) == (abbr is None)
            assert abs(sum(r.probabilities.values()) - 1) < 1e-6 and list(r.probabilities)[0] == name
    learn_classes = [str(c) for c in learn.dls.vocab]
    assert sorted(results[0].probabilities) == sorted(learn_classes) == ['Cirrus', 'Cumulus', 'rocks']


def test_predict_many_streams(model):
    "A never-ending input yields results as it goes: nothing waits for (or holds) the whole input."
    models, data, _, _ = model
    clf = CloudClassifier.load(models)
    photo = sorted((data/'Cu').iterdir())[0]
    first = list(itertools.islice(clf.predict_many(itertools.repeat(photo), bs=8), 20))
    assert len(first) == 20 and len({r.genus for r in first}) == 1


def test_cloud_check_rejects_non_sky_and_keeps_photos(model, tmp_path):
    models, data, _, _ = model
    clf = CloudClassifier.load(models)
    assert read_card(models)['cloud_check']['method'] == 'mahalanobis'
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8))
    rejected = [clf.predict(x) for x in [chart_png(tmp_path/'chart.png'), Image.new('RGB', (50, 50), 'white'), noise]]
    for r in rejected:
        assert (r.is_cloud, r.genus, r.abbr, r.probability) == (False, None, None, None)
        assert r.message.startswith('not a cloud photo') and r.cloud_score > read_card(models)['cloud_check']['threshold']
    kept = [r.is_cloud for r in clf.predict_many(data)]
    assert np.mean(kept) >= 0.9


def test_merge_card_keeps_the_export_keys(model, tmp_path):
    models, _, _, _ = model
    d = tmp_path/'m'
    d.mkdir()
    (d/'model_card.json').write_text(json.dumps({'classes': ['a', 'b'], 'export_sha256': 'abc'}))
    merge_card(d/'export.pkl', cloud_check={'method': 'msp', 'threshold': -0.5})
    assert read_card(d) == {'classes': ['a', 'b'], 'export_sha256': 'abc', 'cloud_check': {'method': 'msp', 'threshold': -0.5}}
    assert sorted(p.name for p in d.iterdir()) == ['model_card.json']
    umask = os.umask(0); os.umask(umask)
    assert stat.S_IMODE((d/'model_card.json').stat().st_mode) == 0o666 & ~umask  # as `open` makes it, not 0600


def test_model_without_cloud_check_says_so(model, tmp_path):
    models, data, _, _ = model
    (tmp_path/'export.pkl').write_bytes((models/'export.pkl').read_bytes())  # no model card beside it
    with pytest.raises(UserError, match='no model_card.json with a hash'): CloudClassifier.load(tmp_path/'export.pkl')
    r = CloudClassifier.load(tmp_path/'export.pkl', check_hash=False).predict(sorted((data/'rocks').iterdir())[0])
    assert r.is_cloud is None and r.genus is not None and 'no cloud check' in r.message


def test_cli_predict(model, tmp_path):
    models, data, _, _ = model
    (tmp_path/'in').mkdir()
    for f in sorted((data/'Cu').iterdir())[:3]: (tmp_path/'in'/f.name).write_bytes(f.read_bytes())
    (tmp_path/'in'/'notes.jpg').write_text('not a photo')
    chart = chart_png(tmp_path/'chart.png')
    r = run_cli('predict', models/'export.pkl', tmp_path/'in', chart, '--top-k', '2')
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 * 2 + 1 + 2  # a photo: message + top-2 line; error line; chart: message + top-2
    assert any('notes.jpg: cannot read this image: not-an-image' in l for l in lines)
    assert any(l.startswith(f'{chart}: not a cloud photo') for l in lines)
    r = run_cli('predict', models, tmp_path/'in', '--json', '--top-k', '1')
    res = json.loads(r.stdout)
    assert [Path(x['file']).name for x in res] == sorted(p.name for p in (tmp_path/'in').iterdir())
    assert all(len(x['top']) == 1 for x in res if not x['error'])
    assert {x['genus'] for x in res if not x['error']} <= {'Cumulus', 'Cirrus', 'rocks'}


def test_cli_predict_user_errors(model, tmp_path):
    models, data, _, _ = model
    r = run_main('predict', tmp_path/'nope'/'export.pkl', data)
    assert r.returncode == 2 and r.stderr.startswith('error: model') and r.stderr.count('\n') == 1, r.stderr
    (tmp_path/'export.pkl').write_bytes(b'\x80\x04not really a pickle')
    r = run_main('predict', tmp_path/'export.pkl', data)
    assert r.returncode == 2 and 'no model_card.json with a hash' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    r = run_main('predict', tmp_path/'export.pkl', data, '--no-hash-check')
    assert r.returncode == 2 and 'is not a fastai export' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    tampered = tmp_path/'tampered'; tampered.mkdir()
    for f in ('export.pkl', 'model_card.json'): (tampered/f).write_bytes((models/f).read_bytes())
    with open(tampered/'export.pkl', 'ab') as f: f.write(b'x')
    r = run_main('predict', tampered, data)
    assert r.returncode == 2 and 'does not match its model card' in r.stderr, r.stderr
    r = run_main('predict', models, tmp_path/'no-such-photo.jpg')
    assert r.returncode == 2 and 'no such file or folder' in r.stderr
    r = run_main('predict', models, data, '--engine', 'onnx')  # no model.onnx exported for this model
    assert r.returncode == 2 and 'on ONNX Runtime' in r.stderr and r.stderr.count('\n') == 1, r.stderr

    (tmp_path/'empty').mkdir()
    r = run_main('predict', models, tmp_path/'empty')  # nothing to predict is said, not printed as nothing
    assert r.returncode == 2 and 'holds no image files' in r.stderr and r.stderr.count('\n') == 1, r.stderr


@pytest.mark.parametrize('bad,msg', [(None, 'not None'), (3, 'not 3'), (['a.jpg'], 'predict_many takes lists'), ('FOLDER', 'is a folder: predict_many')])
def test_predict_refuses_what_is_not_one_image(model, bad, msg):
    "The library's own mistakes-a-user-makes: one `UserError` each, never a dependency's traceback."
    models, data, _, _ = model
    clf = CloudClassifier.load(models, engine='torch')
    with pytest.raises(UserError, match=msg): clf.predict(data/'Cu' if bad == 'FOLDER' else bad)

def test_predict_many_refuses_an_empty_folder_and_what_is_not_an_input(model, tmp_path):
    models, data, _, _ = model
    clf = CloudClassifier.load(models, engine='torch')
    (tmp_path/'empty'/'.trash').mkdir(parents=True)
    with pytest.raises(UserError, match='holds no image files'): list(clf.predict_many(tmp_path/'empty'))
    with pytest.raises(UserError, match='cannot predict a int'): list(clf.predict_many([data/'Cu', 3]))
    assert len(list(clf.predict_many(data/'Cu'))) == len(list((data/'Cu').iterdir()))  # a folder: every photo in it

@pytest.mark.slow
def test_real_photos_match_learn_predict(tmp_path):
    ccsn = shared_dir('data', 'ccsn')
    if ccsn is None: pytest.skip('needs the CCSN photos in ../shared/data/ccsn (or CLOUD_CLASSIFIER_DATA)')
    dls = cloud_dataloaders(ccsn, classes=['Cu', 'Cb', 'Ct'], size=64, bs=16, normalize=True, n_per_class=20)
    learn = vision_learner(dls, resnet18, pretrained=False)
    clf = CloudClassifier(learn)
    files = list(dls.valid_ds.items)[:12]
    for r, f in zip(clf.predict_many(files, bs=5), files):
        cls, _, probs = learn.predict(f)
        assert r.genus == str(cls)
        np.testing.assert_allclose([r.probabilities[c] for c in clf.classes], probs.numpy(), atol=1e-5)
    assert 'Ct' in clf.classes  # contrails: a class that is not a genus
