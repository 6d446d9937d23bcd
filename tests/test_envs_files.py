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
