"""The benchmarks import tunesmith inside their functions (each side runs in a process of its own), so a renamed or
removed name breaks them only when that side runs: serve_throughput.py's sequential sides imported
`models.generate.until_stop` for a session after it had gone. Every `from tunesmith... import name` in
benchmarks/ must resolve."""
import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))


def tunesmith_imports(path: Path) -> list[tuple[str, str]]:
    imports = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tunesmith":
            imports += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            imports += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "tunesmith"]
    return imports


def test_the_benchmarks_import_tunesmith():
    assert sum(len(tunesmith_imports(path)) for path in BENCHMARKS) > 30  # the walk finds the function-level imports


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_every_tunesmith_name_a_benchmark_imports_exists(path):
    missing = []
    for module_name, name in tunesmith_imports(path):
        module = importlib.import_module(module_name)
        if name and not hasattr(module, name):
            try:
                importlib.import_module(f"{module_name}.{name}")  # a submodule
            except ModuleNotFoundError:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"{path.name} imports names tunesmith no longer has: {missing}"
