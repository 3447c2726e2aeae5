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


def undefined_globals(path: Path) -> list[str]:
    """Names a function reads as globals that the module neither defines nor imports and Python does not build in
    (what pyflakes calls an undefined name): symtable's view of the module, so a name passed to a side's function
    in one edit and dropped in another is found before that side runs."""
    import builtins
    import symtable

    top = symtable.symtable(path.read_text(), str(path), "exec")
    defined = {symbol.get_name() for symbol in top.get_symbols() if symbol.is_assigned() or symbol.is_imported()}
    defined |= set(dir(builtins)) | {"__file__", "__name__"}
    undefined, tables = [], list(top.get_children())
    while tables:
        table = tables.pop()
        tables += table.get_children()
        undefined += [f"{table.get_name()}: {symbol.get_name()}" for symbol in table.get_symbols()
                      if symbol.is_global() and symbol.is_referenced() and symbol.get_name() not in defined]
    return undefined


def test_the_undefined_name_check_finds_one(tmp_path):
    script = tmp_path / "side.py"
    script.write_text("import json\n\ndef side(prompts):\n    return json.dumps(prompts), response_format\n")
    assert undefined_globals(script) == ["side: response_format"]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_every_name_a_benchmark_reads_is_defined(path):
    """serve_throughput.py's batch_api side read a `response_format` it was never given (a copied line) for a
    session, and failed only when that side ran."""
    assert not undefined_globals(path), f"{path.name} reads undefined names: {undefined_globals(path)}"
