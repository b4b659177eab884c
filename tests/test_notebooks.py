"The notebooks as a reader gets them: Colab's install line, the saved outputs of each step, light files, pictures that exist."
import re, tomllib
from pathlib import Path
import nbformat
import pytest
from packaging.requirements import Requirement
from conftest import ROOT

NBS = ROOT/'nbs'
WALK = NBS/'walkthrough.ipynb'
PROJECT = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']
SKIP = re.compile(r'^#\|\s*(eval:\s*false|slow|hide)\b', re.M)
norm = lambda s: re.sub(r'[-_.]+', '-', s).lower()


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == 'code']


def test_colab_cell_installs_this_package():
    first = code_cells(WALK)[0].source
    assert "'google.colab' in sys.modules" in first and '-m' in first and 'pip' in first
    spec = re.search(r"INSTALL = '([^']+)'", first).group(1)
    req = Requirement(spec)
    assert norm(req.name) == norm(PROJECT['name'])
    assert req.extras and req.extras <= set(PROJECT['optional-dependencies'])
    assert req.url == 'git+' + PROJECT['urls']['Repository']
    assert 'torch.cuda.is_available()' in first  # says whether the GPU is used


def test_walkthrough_carries_the_outputs_of_a_real_run():
    cells = [c for c in code_cells(WALK) if not SKIP.search(c.source)]
    text = '\n'.join(o.get('text', '') + str(o.get('data', {}).get('text/plain', '')) for c in cells for o in c.outputs)
    assert '10 genera' in text, 'the saved outputs are not from a run on real photos with the ten genera'
    pngs = sum('image/png' in o.get('data', {}) for c in cells for o in c.outputs)
    assert pngs >= 6  # a batch, two lr_find curves, the losses, the confusion matrix, the top losses
    for step in ['get_equal_images', 'show_batch', 'lr_find', 'fit_one_cycle', 'plot_confusion_matrix', 'most_confused',
                 'plot_top_losses', 'CloudCleaner(', 'cleaner.mark', 'cleaner.apply()', 'cleaner.undo', 'load_learner',
                 'package_model', 'predict_many', 'clf.predict(chart)']:
        assert any(step in c.source for c in cells), f'the walkthrough no longer shows {step}'
        if step != 'cleaner.undo':  # the undo cell asserts that the photos are back and shows nothing
            assert any(step in c.source and c.outputs for c in cells), f'the walkthrough has no saved output for {step}'


@pytest.mark.parametrize('path', sorted(NBS.glob('*.ipynb')), ids=lambda p: p.name)
def test_notebook_is_light_and_its_pictures_exist(path):
    assert path.stat().st_size < 3e6
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type != 'markdown': continue
        for ref in re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', c.source):
            if not ref.startswith(('http:', 'https:', 'data:')): assert (path.parent/ref).exists(), f'{path.name}: {ref} is missing'


@pytest.mark.parametrize('path', sorted(p for p in NBS.glob('*.ipynb') if p.name != 'index.ipynb'), ids=lambda p: p.name)
def test_notebook_examples_have_saved_outputs(path):
    cells = [c for c in code_cells(path) if not SKIP.search(c.source) and not c.source.lstrip().startswith(('#| export', '#|export'))]
    assert not cells or any(c.outputs for c in cells), f'{path.name} has no saved output: run .ci/save_outputs.py'
