"""Imports flow one way: views -> services -> storage and replies -> shared types.

Each module of the package sits in a layer; a module may import from its own layer's
package or from lower layers, never from a higher one, and storage and replies never
import each other. Imports under ``if TYPE_CHECKING:`` are types only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "chatbot_sessions"

# Lowest first. A name is a module or a package (all its modules).
LAYERS: list[set[str]] = [
    {
        "domain",
        "exceptions",
        "timestamps",
        "config",
        "signals",
        "extensions",
        "lean_schema",
        "current",
    },
    {"sessions", "replies"},
    {"chat", "generation", "context"},
    {"api", "security", "ops", "widget", "schemas", "http_errors", "serving", "json_provider"},
    {"__init__"},
]
SIDE_BY_SIDE = {"sessions": "replies", "replies": "sessions"}


def _part(module: str) -> str:
    """The top-level part of ``chatbot_sessions.<part>[.<rest>]`` (``__init__`` for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _runtime_imports(tree: ast.Module) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return  # types only
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "chatbot_sessions":
                found.extend(f"chatbot_sessions.{alias.name}" for alias in node.names)
            elif node.module.startswith("chatbot_sessions."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("chatbot_sessions."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_module_has_a_layer():
    parts = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert parts <= set().union(*LAYERS), parts - set().union(*LAYERS)


def test_no_module_imports_a_layer_above_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        here = _part(module)
        for imported in _runtime_imports(ast.parse(path.read_text())):
            there = _part(imported)
            if there == here:
                continue
            if _layer(there) > _layer(here) or SIDE_BY_SIDE.get(here) == there:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []
