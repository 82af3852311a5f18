"""No pickle anywhere: the project's Python sources are read with `ast` for every way to unpickle or run data."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("zoo", "training", "export", "tests", "app.py")
#: Modules whose loading runs pickled code.
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}
#: Calls that unpickle whatever the file holds, under any receiver (pd.read_pickle, np.load...).
PICKLE_READERS = {"read_pickle"}
CODE_RUNNERS = {"eval", "exec"}


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node: ast.expr) -> str:
    """'torch.load' for torch.load, 'np.load' for np.load; '' for anything not a plain dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every pickle import, unsafe torch.load / np.load, pickle reader and eval/exec call in `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
            found.append(f"{where}: from torch import load (call torch.load with weights_only=True)")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            allow_pickle = _keyword(node, "allow_pickle")
            if name == "numpy.load" or name.endswith("np.load"):  # allow_pickle is the third positional
                allow_pickle = node.args[2] if len(node.args) > 2 else allow_pickle
            if name == "torch.load" and not _is_constant(_keyword(node, "weights_only"), True):
                found.append(f"{where}: torch.load without weights_only=True")
            elif allow_pickle is not None and not _is_constant(allow_pickle, False):
                found.append(f"{where}: {name or 'a call'} with allow_pickle other than False")
            elif name.split(".")[-1] in PICKLE_READERS:
                found.append(f"{where}: {name}")
            elif name in CODE_RUNNERS or name in {f"builtins.{n}" for n in CODE_RUNNERS}:
                found.append(f"{where}: {name}() runs data as code")
    return found


def _project_files() -> list[Path]:
    files = []
    for entry in SOURCES:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_the_project_has_no_pickle_and_no_eval():
    files = _project_files()
    assert len(files) > 20 and ROOT / "zoo" / "runtime.py" in files
    found = [v for path in files for v in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import pickle",
    "import dill as d",
    "from joblib import load",
    "from pickle import loads",
    "import torch\ntorch.load('x.pt')",
    "import torch\ntorch.load('x.pt', weights_only=False)",
    "import torch\ntorch.load('x.pt', map_location='cpu')",
    "from torch import load",
    "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
    "import numpy\nnumpy.load('x.npy', allow_pickle=flag)",
    "import numpy as np\nnp.load('x.npy', None, True)",
    "from numpy import load\nload('x.npy', allow_pickle=True)",
    "import pandas as pd\npd.read_pickle('x.pkl')",
    "eval(text)",
    "exec(open('x').read())",
    "import builtins\nbuiltins.eval('1')",
])
def test_the_scanner_catches(snippet):
    assert violations(snippet)


@pytest.mark.parametrize("snippet", [
    "import torch\ntorch.load('x.pt', weights_only=True)",
    "import numpy as np\nnp.load('x.npy')",
    "import numpy as np\nnp.load('x.npy', allow_pickle=False)",
    "model.eval()",
    "text = 'pickle.loads(data) and eval(x)'",
    "from safetensors.torch import load_file",
])
def test_the_scanner_passes_safe_code(snippet):
    assert violations(snippet) == []
