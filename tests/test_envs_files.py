"""Every rule's conda env pins the same versions as pyproject.toml, lists what its rules import,
and (built as a venv from exactly its pip list, as conda would install it) imports them."""

import hashlib
import os
import re
import subprocess
import sys
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
    "stable_baselines3": "stable-baselines3",
    "torch": "torch",
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
    return reached_modules(script)[0]


def reached_modules(script: Path) -> tuple[set[str], set[str]]:
    """(top-level third-party modules, package modules) a rule script reaches."""
    seen, todo, third, own = set(), [script], set(), set()
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
                own |= {name} if base.with_suffix(".py").exists() or base.is_dir() else set()
                todo += [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()]
                parent = base.parent / "__init__.py"
                todo += [parent] if parent.exists() else []
            elif top in PIP_NAME:
                third.add(top)
            elif top == "snakemake":  # _rule's standalone branch runs in snakemake's own env
                continue
            else:
                assert top in sys.stdlib_module_names or top == "__future__", (
                    f"{path} imports {top}: add it to PIP_NAME"
                )
    return third, own


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


def env_pip_list(env: str) -> list[str]:
    deps = yaml.safe_load((ROOT / "envs" / f"{env}.yaml").read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict))


ENV_VENVS = Path(os.environ.get("FM_ENV_VENVS", ROOT / ".venv-envs"))


def env_venv(env: str) -> Path:
    """A venv built from exactly ``envs/<env>.yaml``'s pip list (cached by the list's hash).

    Conda channels are unreachable here, but every dependency of these env files is a pip
    package, so this installs what ``--use-conda`` would, minus the interpreter. pip's cache
    and the local wheels reuse the one torch wheel for all of them. ``--no-compile``: the
    bytecode of the whole of torch is most of an install's time, and importing compiles what it
    needs."""
    reqs = env_pip_list(env)
    digest = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:12]
    venv = ENV_VENVS / f"{env}-{digest}"
    python = venv / "bin" / "python"
    if not (venv / "complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--no-input", "--no-compile", *reqs]
        done = subprocess.run(pip, capture_output=True, text=True)
        assert done.returncode == 0, f"envs/{env}.yaml does not install:\n{done.stderr[-3000:]}"
        (venv / "complete").touch()
    return python


ENVS = sorted(p.stem for p in (ROOT / "envs").glob("*.yaml"))


@pytest.fixture(scope="module")
def venvs() -> dict[str, Path]:
    """Every env file's venv, built two at a time (pip is one process per venv: the second core
    would idle otherwise)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(ENVS, pool.map(env_venv, ENVS), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("env", ENVS)
def test_env_file_builds_and_runs_its_rules_imports(env, venvs):
    """Every module each rule of this env reaches imports in a venv holding only the env file's
    packages (no system site-packages, no project install: Snakemake puts scripts/ on the
    path), with the implicit ones pandas needs by name."""
    python = venvs[env]
    scripts = [script for _, e, script in rule_envs() if e == env]
    assert scripts, f"no rule uses envs/{env}.yaml"
    third, own = set(), set()
    for script in scripts:
        t, o = reached_modules(SCRIPTS / script)
        third, own = third | t, own | o
    modules = sorted(third | own | IMPLICIT.get(env, set()))
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    done = subprocess.run(
        [str(python), "-c", code, *modules],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SCRIPTS), "MPLBACKEND": "Agg"},
    )
    assert done.returncode == 0, (
        f"envs/{env}.yaml's venv cannot import what its rules use ({', '.join(scripts)}):\n"
        f"{done.stderr[-2000:]}"
    )
