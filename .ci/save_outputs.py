"""Run notebooks top to bottom in a Jupyter kernel and save their outputs, then clean them as nbdev does.

    python .ci/save_outputs.py                       # every module notebook and the index, on generated data
    CLOUD_CLASSIFIER_DATA=PHOTOS CLOUD_CLASSIFIER_WEIGHTS=WEIGHTS.pth python .ci/save_outputs.py nbs/walkthrough.ipynb

Cells marked `#| eval: false` (and the test flags nbdev-test skips, such as `#| slow`) are not run, as under
`nbdev-test`. The walkthrough's saved outputs come from a real run: it is run only when named, with
`CLOUD_CLASSIFIER_DATA` set. A notebook that fails is left as it was.
"""
import argparse, os, re, subprocess, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
SKIP = re.compile(r'^#\|\s*(eval:\s*false|slow)\b', re.M)
# A Python warning as it reaches stderr: "FILE:LINE: SomethingWarning: text", then the source line, indented.
WARNING = re.compile(r'(\S+:\d+: \w*Warning: [^\n]*\n(?:  [^\n]*\n)*)+')


def drop_warnings(nb):
    "Remove the stderr outputs that hold only Python warnings (a dependency's deprecations), which a reader cannot act on."
    for c in nb.cells:
        if c.cell_type == 'code':
            c.outputs = [o for o in c.outputs if not (o.get('name') == 'stderr' and WARNING.fullmatch(o.text))]
    return nb


def run_notebook(path:Path, timeout:int=3600)->float:
    "Execute `path` in place, skipping the cells nbdev-test skips; return the seconds it took."
    nb = nbformat.read(path, as_version=4)
    skipped = {}
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'code' and SKIP.search(c.source): skipped[i], c.source = c.source, ''
    t = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}}).execute()
    # A widget's saved state holds every thumbnail it showed (megabytes) and no reader without a kernel can use it.
    nb.metadata.pop('widgets', None)
    drop_warnings(nb)
    for i, src in skipped.items(): nb.cells[i].source, nb.cells[i].outputs = src, []
    tmp = path.with_name(f'.{path.name}.tmp')
    nbformat.write(nb, tmp)
    os.replace(tmp, path)
    return time.time() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', type=Path, help='notebooks to run (default: every notebook but the walkthrough)')
    a = ap.parse_args(argv)
    nbs = a.notebooks or sorted(p for p in NBS.glob('*.ipynb') if p.name != 'walkthrough.ipynb')
    if any(p.name == 'walkthrough.ipynb' for p in nbs) and not os.environ.get('CLOUD_CLASSIFIER_DATA'):
        sys.exit('the walkthrough keeps the outputs of a real run: set CLOUD_CLASSIFIER_DATA to a folder of photos '
                 '(and CLOUD_CLASSIFIER_WEIGHTS offline)')
    failed = []
    for p in nbs:
        try: print(f'{p.name}: {run_notebook(p.resolve()):.0f} s', flush=True)
        except Exception as e:
            failed.append(p.name)
            print(f'{p.name}: FAILED, left as it was: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}', flush=True)
    subprocess.run([str(Path(sys.executable).parent/'nbdev-clean')], cwd=ROOT, check=True)
    for p in nbs: print(f'{p.name}: {p.stat().st_size / 1e6:.2f} MB')
    if failed: sys.exit(f'{len(failed)} notebook(s) failed: {", ".join(failed)}')


if __name__ == '__main__': main()
