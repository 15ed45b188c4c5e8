"""The package's imports, read from its source: no circle, no import hidden in a function.

import-linter (`lint-imports` in .ci/run) holds the layers; this reads every import
statement itself, function-level ones included, which import-linter also counts but
a layer contract cannot forbid.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "stylegan_jax"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias, path: Path) -> str:
    if isinstance(node, ast.Import):
        name = alias.name
    else:
        base = module.split(".")
        if node.level:
            base = base if path.name == "__init__.py" else base[:-1]
            base = base[:len(base) - node.level + 1]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        if f"{name}.{alias.name}" in MODULES:
            name = f"{name}.{alias.name}"
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> project modules it imports anywhere, 'file:line module' of the
    function-level ones)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    nested = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for alias in node.names:
                target = _target(module, node, alias, path)
                if target in MODULES and target != module:
                    edges[module].add(target)
                    if id(node) not in top and not _guarded_at_top(tree, node):
                        nested.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} "
                                      f"{target}")
    return edges, nested


def _guarded_at_top(tree: ast.Module, node: ast.AST) -> bool:
    """An import inside a module-level `if`/`try` (not in a function) still runs at import."""
    for stmt in tree.body:
        if isinstance(stmt, ast.If | ast.Try) and any(n is node for n in ast.walk(stmt)):
            return True
    return False


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circle():
    edges, _ = _imports()
    assert _cycles(edges) == []


def test_project_modules_are_imported_at_module_level():
    # Function-level imports are kept for optional heavy third-party packages only.
    _, nested = _imports()
    assert nested == []


def test_the_checks_see_a_circle_and_a_hidden_import():
    """The two checks above on a made-up graph and source (so they cannot pass vacuously)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges, _ = _imports()
    assert "stylegan_jax.models.registry" in edges["stylegan_jax.store.networks"]
    tree = ast.parse("def f():\n    from stylegan_jax import atomic\n")
    inner = tree.body[0].body[0]
    assert _target("stylegan_jax.x", inner, inner.names[0], PACKAGE / "x.py") == \
        "stylegan_jax.atomic"
    assert not _guarded_at_top(tree, inner)
