"A learner whose DataBlock samples with `get_equal_images` exports and loads in a fresh interpreter."
import subprocess, sys, json
from functools import partial
from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, RandomSplitter, Resize, vision_learner,
                               error_rate, resnet18)
from cloud_classifier.data import get_equal_images, label_from_folder, CloudImage, class_files, cloud_dataloaders
from cloud_classifier.data import synthetic_image_set

def test_empty_class_and_single_class_refused(image_set):
    import pytest
    from cloud_classifier.core import UserError
    (image_set/'Stratus').mkdir()
    with pytest.raises(UserError, match='class folder Stratus .* has no images'): class_files(image_set)
    with pytest.raises(UserError, match='at least two classes'): class_files(image_set, ['rocks'])

def test_exported_learner_loads_in_fresh_process(image_set, tmp_path):
    folders = ['Cu', 'cirrus', 'rocks']
    dblock = DataBlock(blocks=(ImageBlock(CloudImage), CategoryBlock),
                       get_items=partial(get_equal_images, folders=folders, seed=1),
                       get_y=label_from_folder, splitter=RandomSplitter(0.25, seed=1), item_tfms=Resize(32))
    dls = dblock.dataloaders(image_set, bs=8, num_workers=0)
    assert len(dls.train_ds) + len(dls.valid_ds) == 30  # 10 of each class
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    learn.fit(1, 1e-3)
    out = tmp_path/'export.pkl'
    learn.export(out)
    img = sorted((image_set/'rocks').iterdir())[0]
    expected = str(learn.predict(img)[0])
    code = ("import json, sys\n"
            "from fastai.learner import load_learner\n"
            f"learn = load_learner({str(out)!r}, cpu=True)\n"
            f"pred = learn.predict({str(img)!r})\n"
            "print(json.dumps({'vocab': list(learn.dls.vocab), 'pred': str(pred[0]), "
            "'notebook': 'cloud_classifier' in sys.modules and 'nbs' in str(sys.modules.get('__main__'))}))\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res['vocab'] == ['Cirrus', 'Cumulus', 'rocks']
    assert res['pred'] == expected

def test_factory_keeps_a_near_duplicate_group_on_one_side(image_set):
    files = sorted((image_set/'Cu').iterdir())[:4]
    groups = {str(f): 'same-photo' for f in files}
    dls = cloud_dataloaders(image_set, size=16, bs=4, balance='none', groups=groups, item_tfms='resize', batch_tfms=None)
    train = {str(f) for f in dls.train_ds.items}
    sides = {str(f) in train for f in files}
    assert len(sides) == 1
