"""Every rule's conda env pins the same versions as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(requirements):
    out = {}
    for req in requirements:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(==|>=)?\s*([^;\s]*)", req)
        out[m.group(1).lower()] = (m.group(2) or "", m.group(4))
    return out


PROJECT = pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_conda_env_pins_match_pyproject(env_file):
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    for name, (extras, version) in pins(pip).items():
        assert name in PROJECT, f"{env_file.name}: {name} is not a dependency in pyproject.toml"
        assert (extras, version) == PROJECT[name], (
            f"{env_file.name}: {name}{extras}=={version} != pyproject"
        )


def test_every_rule_has_a_conda_env():
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    n_rules = len(re.findall(r"^rule \w+:", rules, flags=re.M))
    assert n_rules > 0 and len(re.findall(r"^    conda:", rules, flags=re.M)) == n_rules


# Import name -> pip name, for the third-party packages the rule scripts reach.
PIP_NAME = {
    "PIL": "pillow",
    "ale_py": "ale-py",
    "google_crc32c": "google-crc32c",
    "gymnasium": "gymnasium",
    "imageio": "imageio",
    "matplotlib": "matplotlib",
    "mlflow": "mlflow",
    "numpy": "numpy",
    "pandas": "pandas",
    "pydantic": "pydantic",
    "pygame": "pygame",
    "scipy": "scipy",
    "seaborn": "seaborn",
    "torch": "torch",
    "torchmetrics": "torchmetrics",
    "tqdm": "tqdm",
    "yaml": "pyyaml",
    "zarr": "zarr",
    "zstandard": "zstandard",
}
# Used by name, never imported: pandas writes parquet through pyarrow and markdown via tabulate.
IMPLICIT = {"evaluate": {"pyarrow", "tabulate"}, "train": {"pyarrow"}, "figures": {"pyarrow"}}
SCRIPTS = ROOT / "scripts"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports included)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def reached(script: Path) -> set[str]:
    """Top-level third-party modules a rule script reaches through the package."""
    seen, todo, third = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path.parent.name == "models" and path.name == "__init__.py":  # finds family files
            todo += sorted(path.parent.glob("*.py"))
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ("forward_models", "_rule"):
                base = SCRIPTS / Path(*name.split("."))
                todo += [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()]
                parent = base.parent / "__init__.py"
                todo += [parent] if parent.exists() else []
            elif top in PIP_NAME:
                third.add(top)
            elif top == "snakemake":  # _rule's standalone branch runs in snakemake's own env
                continue
            else:
                import sys

                assert top in sys.stdlib_module_names or top == "__future__", (
                    f"{path} imports {top}: add it to PIP_NAME"
                )
    return third


def rule_envs() -> list[tuple[str, str, str]]:
    """(rule, env file stem, script) for every rule with a script."""
    text = "".join("\n" + p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    out = []
    for block in re.split(r"\nrule ", text)[1:]:
        env = re.search(r'conda:\s*\n\s*"\.\./\.\./envs/(\w+)\.yaml"', block)
        script = re.search(r'script:\s*\n\s*"\.\./\.\./scripts/(\w+\.py)"', block)
        if env and script:
            out.append((block.split(":")[0], env.group(1), script.group(1)))
    return out


@pytest.mark.parametrize("rule, env, script", rule_envs(), ids=lambda x: str(x))
def test_each_env_file_lists_what_its_rules_import(rule, env, script):
    deps = yaml.safe_load((ROOT / "envs" / f"{env}.yaml").read_text())["dependencies"]
    listed = set(pins(next(d["pip"] for d in deps if isinstance(d, dict))))
    needed = {PIP_NAME[m] for m in reached(SCRIPTS / script)} | IMPLICIT.get(env, set())
    assert needed <= listed, f"envs/{env}.yaml lacks {sorted(needed - listed)} for rule {rule}"
