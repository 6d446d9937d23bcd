"""The model families, found from their files: one list, and no torch import to read it.

A family is a file in ``models/`` whose config class declares ``arch: Literal["name"]``. To
validate a config without importing torch, only the head of each such file is run: its imports
from ``__future__``, ``typing``, ``pydantic`` and :mod:`forward_models.model_config`, its constant
assignments and its ``*Config`` classes. So a family's config class may use only those names; a
test checks these classes equal the ones the full model file defines.
"""

from __future__ import annotations

import ast
import functools
import linecache
import sys
import types
from pathlib import Path

from forward_models.model_config import ModelConfig

MODELS_DIR = Path(__file__).parent / "models"
CONFIG_IMPORTS = ("__future__", "typing", "pydantic", "forward_models.model_config")


def family_files() -> list[Path]:
    """Files of ``models/`` that declare at least one family (an ``arch`` literal)."""
    return [p for p in sorted(MODELS_DIR.glob("*.py")) if _arch_classes(ast.parse(p.read_text()))]


@functools.cache
def config_classes() -> dict[str, type[ModelConfig]]:
    """Every family's config class by ``arch``, read without importing the model files."""
    out: dict[str, type[ModelConfig]] = {}
    for path in family_files():
        for cls in _config_head(path):
            arch = arch_of(cls)
            if arch in out:
                raise ValueError(f"model arch {arch!r} is declared twice (again in {path})")
            out[arch] = cls
    return out


def arch_of(cls: type[ModelConfig]) -> str:
    """The registry key a config class declares (``arch: Literal["name"] = "name"``)."""
    default = cls.model_fields["arch"].default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__}.arch needs a default equal to its Literal value")
    return default


def references() -> set[str]:
    """Families that are reference predictors, not learned models."""
    return {arch for arch, cls in config_classes().items() if cls.reference}


def _arch_classes(tree: ast.Module) -> list[ast.ClassDef]:
    return [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(s, ast.AnnAssign)
            and isinstance(s.target, ast.Name)
            and s.target.id == "arch"
            and "Literal" in ast.unparse(s.annotation)
            for s in node.body
        )
    ]


def _config_head(path: Path) -> list[type[ModelConfig]]:
    """Run the config part of a model file in a module of its own; return its family configs."""
    source = path.read_text()
    tree = ast.parse(source, str(path))
    keep = [node for node in tree.body if _is_config_part(node)]
    name = f"forward_models.families._{path.stem}"
    # Pydantic reads field docstrings from the source of the module the class was made in: give
    # this partial module a file name of its own (the real model file may be imported too).
    filename = f"{path}:config"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    try:
        exec(compile(ast.Module(body=keep, type_ignores=[]), filename, "exec"), module.__dict__)
    except NameError as exc:
        raise ImportError(
            f"{path}: a config class uses {exc.name!r}; config classes may use only names from "
            f"{', '.join(CONFIG_IMPORTS)} and constants (validation runs without torch)"
        ) from None
    return [getattr(module, node.name) for node in _arch_classes(tree)]


def _is_config_part(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module in CONFIG_IMPORTS
    if isinstance(node, ast.Import):
        return all(a.name in CONFIG_IMPORTS for a in node.names)
    if isinstance(node, ast.ClassDef):
        return node.name.endswith("Config")
    if isinstance(node, ast.Assign | ast.AnnAssign):
        value = node.value
        return value is not None and _is_literal(value)
    return False


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        return False
