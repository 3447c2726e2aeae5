"""Layers import downward only, and no modules import each other in a circle.

Every `import tunesmith.x` and `from tunesmith.x import y` counts, at module level or inside a function
or an `if TYPE_CHECKING:` block: a lazy import is still a dependency, and hiding a circle behind one is
how circles grow. A module may import its own layer and any lower one.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. Packages take their name's layer; top-level modules are listed; tunesmith/__init__.py has none.
LAYERS = ["models", "config", "data", "train", "export", "estimate", "evaluate", "registry", "serve", "demo", "cli"]
TOP_LEVEL = {"config": "config", "demo": "demo", "cli": "cli", "cli_render": "cli"}


@dataclass(frozen=True)
class Import:
    file: Path  # relative to the parent of the source root: src/tunesmith/...
    line: int
    importer: str  # dotted module name
    imported: str  # dotted module name (a package's __init__ when the name is not a module)

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(src: Path, package: str) -> list[Import]:
    """Imports between the package's own modules, wherever in a file they stand; one per (line, module)."""
    files = sorted((src / package).rglob("*.py"))
    modules = {module_name(f, src): f for f in files}
    found: dict[Import, None] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = absolute_from(node, name, is_package)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for target in targets:
                if target == package or not target.startswith(package + "."):
                    continue
                while target not in modules and "." in target:  # `import pkg.mod.attr` style names
                    target = target.rsplit(".", 1)[0]
                found[Import(path.relative_to(src.parent), node.lineno, name, target)] = None
    return list(found)


def absolute_from(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module a `from X import` names, relative imports resolved against the importer."""
    if not node.level:
        return node.module or ""
    parent = importer.split(".") if is_package else importer.split(".")[:-1]
    base = parent[: len(parent) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def layer_of(module: str, layers: list[str], top_level: dict[str, str]) -> str | None:
    """None for the root package's __init__; raises for a module no layer claims."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    if parts[1] in top_level:
        return top_level[parts[1]]
    if parts[1] in layers:
        return parts[1]
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS or TOP_LEVEL in tests/test_layers.py")


def upward_imports(imports: list[Import], layers: list[str], top_level: dict[str, str]) -> list[str]:
    order = " → ".join(layers)
    problems = []
    for item in imports:
        low, high = layer_of(item.importer, layers, top_level), layer_of(item.imported, layers, top_level)
        if low is None or high is None or layers.index(high) <= layers.index(low):
            continue
        problems.append(f"{item.where()}: {item.importer} ({low}) imports {item.imported} ({high}): "
                        f"layers import downward only ({order}) — move the shared piece down or the caller up")
    return problems


def import_cycles(imports: list[Import]) -> list[str]:
    """Each strongly connected group of more than one module, with the imports that close it (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for item in imports:
        if item.importer != item.imported:
            graph.setdefault(item.importer, set()).add(item.imported)
            graph.setdefault(item.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    problems = []
    for group in groups:
        edges = [f"{i.where()} imports {i.imported}" for i in imports if i.importer in group and i.imported in group]
        problems.append(f"import circle between {', '.join(sorted(group))} — break it by moving what both need "
                        f"into a lower module: " + "; ".join(edges))
    return problems


def test_layers_import_downward_only():
    problems = upward_imports(package_imports(SRC, "tunesmith"), LAYERS, TOP_LEVEL)
    assert not problems, "\n".join(problems)


def test_no_import_circles():
    problems = import_cycles(package_imports(SRC, "tunesmith"))
    assert not problems, "\n".join(problems)


def test_the_checks_find_an_upward_import_and_a_circle_hidden_in_a_function(tmp_path):
    def write(relative: str, text: str) -> None:
        path = tmp_path / "src" / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write("__init__.py", "")
    write("models/__init__.py", "")
    write("models/a.py", "import os\n\nfrom pkg.cli import main\n")
    write("cli.py", "from pkg.models import a\n\ndef main():\n    pass\n")
    write("data/__init__.py", "")
    write("data/b.py", "from pkg.data.c import helper\n")
    write("data/c.py", "def helper():\n    from pkg.data import b\n    return b\n")
    write("data/d.py", "from pkg.models.a import main\nfrom . import b\n")
    imports = package_imports(tmp_path / "src", "pkg")

    upward = upward_imports(imports, LAYERS, TOP_LEVEL)
    assert len(upward) == 1 and upward[0].startswith("src/pkg/models/a.py:3: pkg.models.a (models) imports pkg.cli (cli)")
    circles = sorted(import_cycles(imports))
    assert len(circles) == 2
    assert circles[0].startswith("import circle between pkg.cli, pkg.models.a")
    assert circles[1].startswith("import circle between pkg.data.b, pkg.data.c")
    assert "src/pkg/data/c.py:2 imports pkg.data.b" in circles[1]
    assert Import(Path("src/pkg/data/d.py"), 2, "pkg.data.d", "pkg.data.b") in imports  # relative import resolved
