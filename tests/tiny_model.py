"A tiny exported model on generated images, for the predict, onnx and app tests (not collected by pytest)."
from pathlib import Path
from fastai.vision.all import vision_learner, resnet18
from cloud_classifier.data import synthetic_image_set, cloud_dataloaders
from cloud_classifier.export import export_model
from cloud_classifier.package import package_model

CLASSES = {'Cu': 14, 'cirrus': 14, 'rocks': 14}  # two genera and a class of our own


def tiny_model(root: Path, cloud_check=True, **dls_kwargs):
    "(models folder, data folder, learner, dls): resnet18 at 32 px trained one epoch, exported, with a cloud check."
    data = synthetic_image_set(root/'data', CLASSES, size=40, seed=3)
    kw = dict(size=32, bs=8, item_tfms='resize', batch_tfms=None, seed=1) | dls_kwargs
    dls = cloud_dataloaders(data, **kw)
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.fit(1, 1e-3)
    models = root/'models'
    if cloud_check: package_model(learn, models)  # export.pkl, card and cloud check, as train writes them
    else: export_model(learn, models)
    return models, data, learn, dls


def chart_png(path: Path):
    "A bar chart saved as PNG: not a cloud photo."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.bar(range(5), [3, 1, 4, 1, 5]); ax.set_title('sales')
    fig.savefig(path); plt.close(fig)
    return path
