"""The folder layout is the architecture: imports point one way, apps -> builder -> finetune and
eval -> retrieval; nothing imports apps; finetune and eval do not import each other; a service
module (below apps, which only presents) never imports a command-line module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = {"apps": 0, "builder": 1, "finetune": 2, "eval": 2, "retrieval": 3}


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def modules() -> list[tuple[str, Path]]:
    return [(package, path) for package in LAYER for path in sorted((ROOT / package).rglob("*.py"))]


def is_cli(module: str) -> bool:
    name = module.rsplit(".", 1)[-1]
    return name == "cli" or name.endswith("_cli")


def test_imports_point_one_way():
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for package, path in modules()
        for module in imports(path)
        if (target := module.split(".")[0]) in LAYER
        and target != package
        and LAYER[target] <= LAYER[package]
    ]
    assert wrong == []


def test_no_service_module_imports_a_cli_module():
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for package, path in modules()
        if package != "apps" and not is_cli(path.stem)
        for module in imports(path)
        if module.split(".")[0] in LAYER and is_cli(module)
    ]
    assert wrong == []
