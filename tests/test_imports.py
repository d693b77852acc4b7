"""The package's import graph: no cycles, and web/ is an edge that only the entry points use.

Every ``import`` and ``from ... import`` in src/newsletter is read with ``ast``,
at module level and inside functions alike (a lazy import is still an edge:
it only moves the cycle to the first call). Imports under ``if TYPE_CHECKING:``
are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import newsletter

PACKAGE = Path(newsletter.__file__).parent
# The modules outside web/ that may import it: the commands that start the web server.
MAY_IMPORT_WEB = {"newsletter.cli.ops"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and _type_checking_only(node):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's own modules that ``name`` imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = name.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            # "from newsletter import campaigns" imports a module; "from x import Name" x.
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in modules else source)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_module_level_function_level_and_relative_imports() -> None:
    graph = import_graph()
    # Module level, "from package import module":
    assert "newsletter.delivery_key" in graph["newsletter.delivery.loop"]
    # Inside a function (config reads the SendGrid key only when one is set):
    assert "newsletter.feedback.sendgrid" in graph["newsletter.config.checks"]
    # "from x import Name" is an edge to x, and an entry point reaches web/:
    assert "newsletter.web.app" in graph["newsletter.cli.ops"]
    assert "newsletter.feedback.common" in graph["newsletter.feedback.ses"]


def test_the_finder_reports_a_cycle_and_only_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_only_the_entry_points_import_web() -> None:
    graph = import_graph()
    offenders = {
        f"{name} imports {target}"
        for name, targets in graph.items()
        if not (name == "newsletter.web" or name.startswith("newsletter.web."))
        and name not in MAY_IMPORT_WEB
        for target in targets
        if target == "newsletter.web" or target.startswith("newsletter.web.")
    }
    assert offenders == set(), "web/ is an edge; move the core below it: " + ", ".join(
        sorted(offenders)
    )
    # Each allowed module still needs its exception; a stale one is removed from the list.
    for name in MAY_IMPORT_WEB:
        assert any(t.startswith("newsletter.web") for t in graph[name]), name
