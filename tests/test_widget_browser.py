"""The cleaning widget in a real browser: JupyterLab runs a notebook that displays a `CloudCleaner`, and
Playwright marks, switches views, applies and undoes by clicking, while the test checks the files on disk.

With CLOUD_CLASSIFIER_SCREENSHOTS=nbs/images it also saves the widget before and after Apply there
(cleaner_before_apply.png, cleaner_after_apply.png), the pictures the clean notebook shows."""
import hashlib, importlib.util, json, os, re, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT

CHROMIUM = '/usr/bin/chromium'
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f'needs Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver'),
    pytest.mark.skipif(importlib.util.find_spec('playwright') is None, reason="needs playwright: pip install 'cloud_classifier[app]'"),
    pytest.mark.skipif(importlib.util.find_spec('jupyterlab') is None, reason="needs JupyterLab 4: pip install 'jupyterlab>=4'"),
]
SHOTS = ('cleaner_before_apply.png', 'cleaner_after_apply.png')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def sha_tree(root):
    "{relative path: sha256} of every file under `root` (trash included), the journal's folder left out."
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob('*'))
            if p.is_file() and '.cleaning' not in p.parts}

def small_model(root:Path):
    "A resnet18 (random weights) fitted one epoch at 32 px on 128-pixel generated photos, exported to root/models."
    from fastai.vision.all import vision_learner, resnet18, set_seed
    from cloud_classifier.data import synthetic_image_set, cloud_dataloaders
    from cloud_classifier.export import export_model
    data = synthetic_image_set(root/'data', {'Cu': 10, 'St': 10, 'rocks': 10}, size=128, seed=4)
    dls = cloud_dataloaders(data, size=32, bs=8, item_tfms='resize', batch_tfms=None, seed=1, balance='none')
    set_seed(0, reproducible=True)  # the same model, so the same pictures, each run
    learn = vision_learner(dls, resnet18, pretrained=False)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    export_model(learn, root/'models')
    return data

def lab_env(root:Path)->dict:
    "Environment for a JupyterLab whose only kernel is this Python, with this checkout importable, all state under `root`."
    jp = root/'jupyter'
    kernel = jp/'kernels'/'cc-test'
    kernel.mkdir(parents=True)
    pypath = os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    (kernel/'kernel.json').write_text(json.dumps(dict(
        argv=[sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'], display_name='cloud_classifier test',
        language='python', env=dict(PYTHONPATH=pypath, CLOUD_CLASSIFIER_CACHE=str(root/'features')))))
    # no news or update pop-up over the widget
    s = root/'settings'/'@jupyterlab'/'apputils-extension'
    s.mkdir(parents=True)
    (s/'notification.jupyterlab-settings').write_text(json.dumps(dict(fetchNews='false', checkForUpdates=False)))
    return dict(os.environ, JUPYTER_PATH=str(jp), JUPYTER_DATA_DIR=str(jp), JUPYTER_CONFIG_DIR=str(root/'config'),
                JUPYTER_RUNTIME_DIR=str(root/'runtime'), IPYTHONDIR=str(root/'ipython'), PYTHONPATH=pypath)

def write_notebook(path:Path):
    cells = ["from cloud_classifier.clean import CloudCleaner\n"
             "cleaner = CloudCleaner('models/export.pkl', path='data')\n"
             "cleaner"]
    nb = dict(nbformat=4, nbformat_minor=5, cells=[dict(cell_type='code', id=f'c{i}', metadata={}, execution_count=None, outputs=[],
                                                         source=c) for i, c in enumerate(cells)],
              metadata=dict(kernelspec=dict(name='cc-test', display_name='cloud_classifier test', language='python')))
    path.write_text(json.dumps(nb))

@pytest.fixture
def lab(tmp_path):
    "(url of the notebook, data folder, folder) with JupyterLab serving `tmp_path/lab` on 127.0.0.1."
    root = tmp_path/'lab'
    root.mkdir()
    data = small_model(root)
    write_notebook(root/'clean.ipynb')
    port, token = free_port(), hashlib.sha256(os.urandom(16)).hexdigest()[:32]
    args = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}', f'--IdentityProvider.token={token}',
            f'--ServerApp.root_dir={root}', f'--LabApp.user_settings_dir={tmp_path/"settings"}',
            f'--LabApp.workspaces_dir={tmp_path/"workspaces"}']
    if os.geteuid() == 0: args.append('--allow-root')
    env = lab_env(tmp_path)
    log = open(tmp_path/'lab.log', 'w')
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f'http://127.0.0.1:{port}'
    try:
        for _ in range(240):
            if proc.poll() is not None: pytest.fail(f'JupyterLab exited: {(tmp_path/"lab.log").read_text()[-3000:]}')
            try:
                urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2)
                break
            except OSError: time.sleep(0.5)
        else: pytest.fail(f'JupyterLab did not start: {(tmp_path/"lab.log").read_text()[-3000:]}')
        yield f'{base}/lab/tree/clean.ipynb?token={token}', data, tmp_path
    finally:
        try:  # the server shuts its kernels down with it
            urllib.request.urlopen(urllib.request.Request(f'{base}/api/shutdown?token={token}', method='POST'), timeout=10)
            proc.wait(timeout=30)
        except Exception:
            proc.terminate()
            try: proc.wait(timeout=15)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()


def test_cleaner_in_jupyterlab(lab):
    "Mark a delete and a relabel with the photos' dropdowns, switch views and back, Apply, Undo: checked on disk."
    from playwright.sync_api import sync_playwright, expect
    url, data, tmp = lab
    original = sha_tree(data)
    shots = os.environ.get('CLOUD_CLASSIFIER_SCREENSHOTS')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=['--headless', '--no-sandbox', '--disable-gpu'])
        page = browser.new_page(viewport={'width': 1280, 'height': 1800})
        try:
            page.goto(url)
            page.locator('.jp-Notebook .jp-Cell').first.wait_for(timeout=60_000)
            # the kernel's status in the status bar: Run All is lost on a notebook whose kernel is still connecting
            expect(page.locator('.jp-StatusBar-TextItem', has_text='cloud_classifier test | Idle')).to_be_visible(timeout=60_000)
            prompt = page.locator('.jp-Notebook .jp-InputPrompt').first
            for _ in range(3):  # Run > Run All Cells, as a person does, again if the click landed before the menu was ready
                page.locator('.lm-MenuBar-itemLabel', has_text=re.compile('^Run$')).click()
                page.locator('.lm-Menu-itemLabel', has_text=re.compile('^Run All Cells$')).click()
                try: expect(prompt).not_to_have_text('[ ]:', timeout=10_000); break
                except AssertionError: page.keyboard.press('Escape')
            widget = page.locator('.cc-cleaner')
            widget.wait_for(timeout=120_000)
            expect(widget.locator('.cc-order')).to_contain_text('most likely wrong label first')
            photos = widget.locator('.cc-photo')
            expect(photos.first).to_be_visible(timeout=30_000)
            label, split = widget.locator('.cc-label select'), widget.locator('.cc-split select')
            assert (label.input_value(), split.input_value()) == ('Cumulus', 'Train')

            def name(i): return photos.nth(i).locator('.cc-caption b').first.inner_text().strip()
            gone, moved = name(0), name(1)
            photos.nth(0).locator('.cc-mark select').select_option(label='<Delete>')
            photos.nth(1).locator('.cc-mark select').select_option(label='rocks')
            apply, undo, status = widget.locator('.cc-apply'), widget.locator('.cc-undo'), widget.locator('.cc-status')
            expect(apply).to_have_text('Apply 2 moves (1 delete, 1 relabel)')
            expect(apply).to_be_enabled()
            expect(undo).to_be_disabled()
            # other views, then back: the marks are still shown
            label.select_option('rocks')
            expect(photos.first.locator('.cc-caption')).to_contain_text('label rocks')
            first = name(0)
            split.select_option('Valid')  # another set of photos, maybe none
            page.wait_for_function("n => { const b = document.querySelector('.cc-cleaner .cc-photo .cc-caption b');"
                                   " return !b || b.textContent.trim() !== n }", arg=first)
            label.select_option('Cumulus'); split.select_option('Train')
            expect(photos.nth(0).locator('.cc-caption b').first).to_have_text(gone)
            expect(photos.nth(1).locator('.cc-caption b').first).to_have_text(moved)
            expect(photos.nth(0).locator('.cc-mark select')).to_have_value('<Delete>')
            expect(photos.nth(1).locator('.cc-mark select')).to_have_value('rocks')
            # every photo of the view is on screen, none cut off on the right
            box = widget.locator('.cc-photos').bounding_box()
            for i in range(photos.count()):
                b = photos.nth(i).bounding_box()
                assert b['x'] + b['width'] <= box['x'] + box['width'] + 1, (i, b, box)
            if shots: widget.screenshot(path=str(tmp/SHOTS[0]))

            apply.click()
            expect(status).to_contain_text('applied', timeout=30_000)
            after = sha_tree(data)
            assert {k for k in original if k not in after} == {f'Cu/{gone}', f'Cu/{moved}'}
            assert {k: v for k, v in after.items() if k not in original} == {
                f'.trash/1/Cu/{gone}': original[f'Cu/{gone}'], f'rocks/{moved}': original[f'Cu/{moved}']}
            expect(undo).to_have_text('Undo last round (2 moves)')
            expect(apply).to_be_disabled()
            names = [name(i) for i in range(photos.count())]
            assert gone not in names and moved not in names  # they left the Cumulus view
            if shots: widget.screenshot(path=str(tmp/SHOTS[1]))

            undo.click()
            expect(status).to_contain_text('undone', timeout=30_000)
            assert sha_tree(data) == original  # every photo back, byte for byte
            expect(photos.nth(0).locator('.cc-caption b').first).to_have_text(gone)
            expect(undo).to_be_disabled()
        except BaseException as e:
            shot = tmp/'failure.png'
            page.screenshot(path=str(shot), full_page=True)
            e.add_note(f'screenshot of the page: {shot}; JupyterLab log: {tmp/"lab.log"}')
            raise
        finally: browser.close()
    if shots:  # 256 colours: the generated photos' noise makes a plain PNG twice the size
        from PIL import Image
        Path(shots).mkdir(parents=True, exist_ok=True)
        for s in SHOTS: Image.open(tmp/s).convert('RGB').quantize(256).save(Path(shots)/s, optimize=True)
