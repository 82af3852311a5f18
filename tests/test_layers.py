"""The project's layers, read from every module's imports: the runtime (`zoo`) imports none of the build-time
packages, export does not import the benchmarks, and the `zoo` command is a leaf that nothing else imports."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "training", "export", "bench")


def modules() -> dict[str, Path]:
    found = {path.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."): path
             for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    found["app"] = ROOT / "app.py"
    return found


def imported(path: Path, module: str) -> set[str]:
    """The absolute names of the modules that `path` (module `module`) imports, relative imports resolved."""
    names = set()
    package = module.rsplit(".", 1)[0] if not path.name == "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


IMPORTS = {module: imported(path, module) for module, path in modules().items()}


def importers_of(target: str) -> set[str]:
    return {module for module, names in IMPORTS.items()
            if module != target and any(name == target or name.startswith(target + ".") for name in names)}


def test_the_scanner_resolves_relative_imports():
    assert "zoo.registry" in IMPORTS["zoo.cli"] and "zoo.errors.ZooError" in IMPORTS["zoo.cli"]


def test_the_zoo_command_is_a_leaf():
    assert importers_of("zoo.cli") == set()


def test_export_does_not_import_the_benchmarks():
    assert {module for module in importers_of("bench") if module.startswith("export")} == set()


@pytest.mark.parametrize("build_time", ["training", "export", "bench", "torch", "torchvision"])
def test_the_runtime_imports_nothing_of_build_time(build_time):
    assert {module for module in importers_of(build_time) if module.startswith("zoo")} == set()


def error_classes(package: str) -> list[type]:
    """The exception classes the modules of `package` define (found in their source, then imported)."""
    import importlib

    found = []
    for module, path in modules().items():
        if module.split(".")[0] != package:
            continue
        defined = [node.name for node in ast.parse(path.read_text()).body
                   if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Unavailable"))]
        if defined:
            loaded = importlib.import_module(module)
            found += [getattr(loaded, name) for name in defined if issubclass(getattr(loaded, name), BaseException)]
    return found


def test_the_runtimes_errors_are_zoo_errors_and_the_build_tools_are_not():
    from training.errors import BuildError
    from zoo.errors import ZooError

    runtime = error_classes("zoo")
    build_time = error_classes("training") + error_classes("export")
    assert len(runtime) >= 6 and len(build_time) >= 7
    assert [error for error in runtime if not issubclass(error, ZooError)] == []
    assert [error for error in build_time if not issubclass(error, BuildError) or issubclass(error, ZooError)] == []


#: Facts the code shares, each defined once: its name is assigned in one module, which the others import.
SHARED_CONSTANTS = ("IMAGE_SUFFIXES", "IMAGENET_MEAN", "IMAGENET_STD", "CIFAR10_MEAN", "CIFAR10_STD",
                    "MAX_INT8_ACCURACY_LOSS", "TEST_PAIRS_SEED", "OPTIMIZER_PREFIX", "DEVICES", "MAX_IMAGES", "MAX_BATCH",
                    "BATCH_WAIT", "MAX_QUEUE", "MAX_REQUEST_BYTES", "READ_TIMEOUT", "API_KEY_ENV", "LOOPBACK_HOSTS",
                    "RAY_LOOPBACK_ENVIRONMENT", "MAX_PIXELS", "MAX_FILE_BYTES", "BATCH", "CHUNK", "MAX_BATCH_SIZE")
#: Of those, the ones whose value is distinctive enough that it should appear as a literal nowhere else.
DISTINCT_VALUES = ("IMAGE_SUFFIXES", "IMAGENET_MEAN", "IMAGENET_STD", "CIFAR10_MEAN", "CIFAR10_STD",
                   "TEST_PAIRS_SEED", "OPTIMIZER_PREFIX")


def module_constants() -> dict[str, list[tuple[str, ast.expr]]]:
    """Every module-level assignment of an upper-case name: name -> [(module, value expression)]."""
    assigned: dict[str, list[tuple[str, ast.expr]]] = {}
    for module, path in modules().items():
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) and node.value is not None else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    assigned.setdefault(target.id, []).append((module, node.value))
    return assigned


def literal(expression: ast.expr) -> object:
    """The value of a literal (a frozenset(...) call too), or None."""
    if isinstance(expression, ast.Call) and getattr(expression.func, "id", "") == "frozenset" and expression.args:
        expression = expression.args[0]
    try:
        value = ast.literal_eval(expression)
    except ValueError:
        return None
    return frozenset(value) if isinstance(value, set) else value


def test_each_shared_constant_is_defined_once():
    assigned = module_constants()
    for name in SHARED_CONSTANTS:
        assert len(assigned.get(name, [])) == 1, (name, [module for module, _ in assigned.get(name, [])])


def test_a_distinctive_value_is_written_once():
    """No other literal anywhere in the code equals a distinctive shared constant's value (a copy of the fact)."""
    assigned = module_constants()
    values = {name: literal(assigned[name][0][1]) for name in DISTINCT_VALUES}
    assert all(value is not None for value in values.values()), values
    copies: dict[str, list[str]] = {name: [] for name in values}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Constant, ast.Tuple, ast.Set)):
                value = literal(node)
                for name, expected in values.items():
                    if value == expected and type(value) is type(expected):
                        copies[name].append(module)
    assert {name: found for name, found in copies.items() if len(found) != 1} == {}


def test_every_task_has_a_runtime_side_and_a_training_side():
    from training.tasks import TRAINING_TASKS
    from zoo.tasks import TASKS

    assert set(TASKS) == set(TRAINING_TASKS)
    for task in TASKS.values():
        assert len(task.upload_fields) == len(task.ray_columns) == len(task.inputs), task.name
