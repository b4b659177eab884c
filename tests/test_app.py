"The web app, started by `cloud-classifier app` on localhost, driven by gradio_client and by a real headless browser."
import os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import CLI, ROOT
from tiny_model import tiny_model, chart_png

gradio_client = pytest.importorskip('gradio_client', reason="needs the app extra: pip install 'cloud_classifier[app]'")
CHROMIUM = '/usr/bin/chromium'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    "(url, port, data, files, the classifier's answer for the photo) with the app running in its own process."
    root = tmp_path_factory.mktemp('app')
    models, data, _, _ = tiny_model(root)
    port = free_port()
    log = open(root/'app.log', 'w')
    proc = subprocess.Popen([*CLI, 'app', str(models/'export.pkl'), '--port', str(port), '--max-mb', '0.3'],
                            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f'http://127.0.0.1:{port}/'
    for _ in range(240):
        if proc.poll() is not None: pytest.fail(f'the app exited: {(root/"app.log").read_text()}')
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError: time.sleep(0.5)
    else: pytest.fail(f'the app did not start: {(root/"app.log").read_text()}')
    files = dict(photo=sorted((data/'Cu').iterdir())[0], chart=chart_png(root/'chart.png'), notes=root/'notes.jpg', big=root/'big.png')
    files['notes'].write_text('meeting notes, not a photo')
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)).save(files['big'])
    from cloud_classifier.runtime import load_classifier
    expected = load_classifier(models).predict(files['photo'])
    yield url, port, files, expected
    proc.terminate()
    proc.wait(timeout=30)


def test_gradio_client(served):
    from gradio_client import Client, handle_file
    url, _, files, expected = served
    client = Client(url, verbose=False)
    ask = lambda f: client.predict(handle_file(str(f)), api_name='/classify')
    label, md = ask(files['photo'])
    assert label['label'] == expected.genus and expected.genus in md
    assert [c['label'] for c in label['confidences']] == [c for c, _ in expected.top(3)]
    label, md = ask(files['chart'])
    assert label['label'] == 'Not a cloud photo' and 'does not look like a photo of the sky' in md
    label, md = ask(files['notes'])
    assert label['label'] == 'Not an image' and 'cannot be read as an image' in md
    with pytest.raises(Exception): ask(files['big'])  # over --max-mb: the server refuses the upload
    assert ask(files['photo'])[0]['label'] == expected.genus  # and the app lives on


def test_binds_localhost_only(served):
    _, port, _, _ = served
    listening = []
    for table in ['/proc/net/tcp', '/proc/net/tcp6']:
        if not os.path.exists(table): continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(':')
            if int(p, 16) == port and state == '0A': listening.append(addr)
    assert listening == ['0100007F'], listening  # 127.0.0.1 only


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f'needs Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver')
def test_in_a_real_browser(served, tmp_path):
    sync_api = pytest.importorskip('playwright.sync_api', reason="needs playwright: pip install 'cloud_classifier[app]'")
    url, _, files, expected = served
    shot = tmp_path/'app.png'
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        page = browser.new_page(viewport={'width': 1200, 'height': 900})
        page.goto(url)
        page.locator('input[type=file]').first.set_input_files(str(files['photo']))
        heading = page.get_by_test_id('label-output-value')
        heading.wait_for(timeout=60_000)
        page.wait_for_function("e => e.textContent.trim().length > 0", arg=heading.element_handle(), timeout=60_000)
        shown = heading.inner_text().strip()
        page.get_by_text('Height band').first.wait_for(timeout=30_000)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    if os.environ.get('CLOUD_CLASSIFIER_SCREENSHOTS'):
        shutil.copy(shot, Path(os.environ['CLOUD_CLASSIFIER_SCREENSHOTS'])/'app.png')
    assert shown == expected.genus
    assert shot.stat().st_size > 10_000
