"""Imports point one way (docs/ARCHITECTURE.md, "Layers"): each package imports only the layers below it."""

from __future__ import annotations

from collections import defaultdict

from tests.test_recipes import SRC, _imported_modules

BASE = {"config", "registry", "utils"}
# Which top-level packages of cora each package may import (lazy imports inside functions count too).
ALLOWED = {
    "registry": set(),
    "utils": set(),
    "config": {"registry", "utils"},
    "processors": BASE,
    "data": BASE | {"processors"},
    "model": BASE | {"processors"},
    "kit": BASE | {"model", "processors"},
    "training": BASE | {"data", "model", "processors", "rewards"},
    "rewards": BASE | {"evaluation"},
    "inference": BASE | {"model", "processors"},
    "evaluation": BASE | {"data", "inference", "processors"},
    "adapt": BASE | {"data", "inference", "kit", "model", "processors", "training"},
    "recipes": BASE | {"adapt", "data", "evaluation", "inference", "kit", "model", "processors", "training"},
}


def _imports_by_package() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        package = path.relative_to(SRC).parts[0].removesuffix(".py")
        for module in _imported_modules(path):
            parts = module.split(".")
            if parts[0] == "cora" and len(parts) > 1 and parts[1] != package:
                edges[package].add(parts[1])
    return edges


def test_every_package_imports_only_the_layers_below_it():
    edges = _imports_by_package()
    assert set(edges) - {"cli", "__init__", "__main__"} <= set(ALLOWED), "a new package: give it a row in ALLOWED"
    wrong = {pkg: sorted(targets - ALLOWED[pkg]) for pkg, targets in edges.items() if pkg in ALLOWED}
    assert {pkg: t for pkg, t in wrong.items() if t} == {}
