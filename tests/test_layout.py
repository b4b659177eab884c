"The library's shape: modules call each other's public names only, and import only modules that come before them."
import ast, re
from pathlib import Path
import cloud_classifier

PKG = Path(cloud_classifier.__file__).parent
MODULES = {p.stem: p for p in PKG.glob('*.py') if not p.stem.startswith('_')}

def _tree(name): return ast.parse(MODULES[name].read_text())

def _private(name)->set:
    "Private names a module defines: top-level ones and those of its classes (dunders are not private)."
    out = set()
    def add(n):
        if n.startswith('_') and not n.startswith('__'): out.add(n)
    for node in _tree(name).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): add(node.name)
        if isinstance(node, ast.Assign): [add(t.id) for t in node.targets if isinstance(t, ast.Name)]
        if isinstance(node, ast.ClassDef):
            for m in node.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)): add(m.name)
        if isinstance(node, ast.FunctionDef):  # methods added with fastcore's @patch
            if any(isinstance(d, ast.Name) and d.id == 'patch' for d in node.decorator_list): add(node.name)
    return out

def _package_imports(name, top_level_only=False):
    "(module, names, line) for each import of another cloud_classifier module."
    tree = _tree(name)
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level == 1 and mod: target = mod
            elif mod.startswith('cloud_classifier.'): target = mod.split('.', 1)[1]
            else: continue
            yield target, [a.name for a in node.names], node.lineno

def test_no_module_calls_another_modules_private_names():
    private = {m: _private(m) for m in MODULES}
    bad = []
    for m in MODULES:
        own = private[m]
        for target, names, line in _package_imports(m):
            bad += [f'{m}.py:{line} imports {target}.{n}' for n in names if n.startswith('_') and not n.startswith('__')]
        others = set().union(*(p for o, p in private.items() if o != m)) - own
        for node in ast.walk(_tree(m)):
            if (isinstance(node, ast.Attribute) and node.attr in others
                    and not (isinstance(node.value, ast.Name) and node.value.id in ('self', 'cls'))):
                bad.append(f'{m}.py:{node.lineno} uses {node.attr}, private to another module')
    assert not bad, '\n'.join(bad)

def _order(name)->str:
    "The notebook a module is exported from, e.g. '20_train'."
    return re.search(r'File to edit: \.\./nbs/(\S+)\.ipynb', MODULES[name].read_text()).group(1)

def test_modules_import_only_modules_that_come_before_them():
    "Notebooks are numbered in import order: a module's top-level imports name only lower-numbered notebooks."
    bad = []
    for m in MODULES:
        for target, _, line in _package_imports(m, top_level_only=True):
            if target in MODULES and _order(target) >= _order(m):
                bad.append(f'{m}.py:{line} ({_order(m)}) imports {target} ({_order(target)})')
    assert not bad, '\n'.join(bad)
