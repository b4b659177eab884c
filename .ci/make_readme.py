#!/usr/bin/env python3
"""Write README.md from nbs/index.ipynb with nbconvert's markdown exporter.
`--check` exits 1, writing nothing, when README.md is not current."""
import re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter
from nbconvert.preprocessors import Preprocessor

class _Directives(Preprocessor):
    "Drop `#| hide` cells and every cell's output; strip `#|` directive lines."
    def preprocess(self, nb, resources):
        cells = []
        for c in nb.cells:
            src = c.source
            if c.cell_type == 'code':
                if re.search(r'^#\|\s*hide\b', src, re.M): continue
                c.source = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
                c.outputs = []
            cells.append(c)
        nb.cells = cells
        return nb, resources

root = Path(__file__).resolve().parent.parent
nb = nbformat.read(root/'nbs'/'index.ipynb', as_version=4)
nb.metadata['language_info'] = {'name': 'python'}  # so code blocks are marked as python
exp = MarkdownExporter()
exp.register_preprocessor(_Directives, enabled=True)
body, _ = exp.from_notebook_node(nb)
body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
text = '<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n\n' + body
readme = root/'README.md'
if '--check' in sys.argv:
    if not readme.exists() or readme.read_text() != text:
        sys.exit('README.md is not current: run `python .ci/make_readme.py` and commit it')
else:
    tmp = readme.with_suffix('.md.tmp'); tmp.write_text(text); tmp.replace(readme)
