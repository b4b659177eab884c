"Every exported function and class of the library says what it does, and each parameter what it is."
import dataclasses, importlib, inspect, pkgutil
import pytest
import cloud_classifier
from fastcore.docments import docments

MODULES = sorted(m.name for m in pkgutil.iter_modules(cloud_classifier.__path__) if not m.name.startswith('_'))

def _public(mod):
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__: yield name, obj

def _undocumented_params(f):
    try: sig = inspect.signature(f)
    except (TypeError, ValueError): return []
    params = [p for p in sig.parameters.values() if p.name not in ('self', 'cls') and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not params: return []
    docs = docments(f, full=True)
    return [p.name for p in params if not (docs.get(p.name) or {}).get('docment')]

@pytest.mark.parametrize('modname', MODULES)
def test_exports_have_docstrings_and_documented_parameters(modname):
    mod = importlib.import_module(f'cloud_classifier.{modname}')
    problems = []
    for name, obj in _public(mod):
        if not inspect.getdoc(obj): problems.append(f'{name}: no docstring')
        if dataclasses.is_dataclass(obj): target = obj  # fields carry their comments
        elif inspect.isclass(obj):
            if '__init__' not in vars(obj): continue
            target = obj.__init__
        else: target = obj
        if missing := _undocumented_params(target): problems.append(f'{name}: parameters without a comment: {missing}')
    assert not problems, f'{modname}: ' + '; '.join(problems)
