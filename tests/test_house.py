"""The house rules: references run once, validation needs no torch, a family is one file, rule
scripts run standalone (a failing rule's traceback in its log: tests/test_faults.py). Real
Snakemake runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, scratch_repo

SCRIPTS = sorted(p for p in (ROOT / "scripts").glob("*.py") if not p.name.startswith("_"))


def dry_run_in_process(cwd: Path) -> tuple[str, set[str]]:
    """`snakemake -n` on the default config in one Python process: its output and the modules
    it imported."""
    code = (
        "import sys, contextlib, io\n"
        "from snakemake.cli import main\n"
        "sys.argv = ['snakemake', '-n', '--cores', '2']\n"
        "with contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "print('MODULES', ' '.join(sorted(m for m in sys.modules if '.' not in m)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    modules = set(out.rsplit("MODULES ", 1)[1].split())
    return out, modules


@pytest.mark.slow
def test_dry_run_of_the_default_config_imports_no_torch_and_runs_each_reference_once():
    out, modules = dry_run_in_process(ROOT)
    assert "Job stats" in out, out[-3000:]
    assert not {"torch", "ale_py"} & modules and "pydantic" in modules
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    seeds, n_envs = len(cfg["seeds"]), len(cfg["envs"])
    evaluate_jobs = [b for b in out.split("\n\n") if re.search(r"^(local)?rule evaluate:", b, re.M)]
    for ref in ("copy_last", "mean_frame"):
        jobs = [b for b in evaluate_jobs if f"model={ref}," in b]
        assert len(jobs) == seeds * n_envs, ref  # once per env x seed, not inside every run


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_rule_script_has_a_standalone_help_naming_its_wildcards(script):
    proc = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rule_text = "".join("\n" + p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    block = rule_text.split(f'"../../scripts/{script.name}"')[0].rsplit("\nrule ", 1)[1]
    outputs = block.split("output:", 1)[1].split("log:", 1)[0]
    for wildcard in set(re.findall(r"\{(\w+)\}", outputs)):
        assert f"--{wildcard}" in proc.stdout, (script.name, wildcard)


@pytest.mark.slow
def test_a_rule_script_runs_standalone_with_the_snakefiles_paths_and_params(tmp_path):
    repo = scratch_repo(tmp_path)
    cmd = [sys.executable, "scripts/rollouts.py", "--env", "pong", "--split", "test"]
    subprocess.run([*cmd, "--configfile", "config/test.yaml"], cwd=repo, check=True, timeout=300)
    from forward_models.data.zarr_store import open_rollouts

    store = open_rollouts(repo / "results/rollouts/pong/test.zarr")  # the rule's own output path
    assert store.n_episodes == 6 and store.attrs["seed"] == 1  # params from config/test.yaml
    assert (repo / "results/logs/rollouts/pong/test.log").exists()


NEW_FAMILY = "conv_gru_twin"


@pytest.mark.slow
def test_a_new_family_is_one_model_file_and_one_preset(tmp_path):
    """Copying a family under a new name (one model file, one preset) is all it takes: the
    registry-wide tests and the tiny workflow pick it up."""
    repo = scratch_repo(tmp_path)
    shutil_copy_tests(repo)
    source = (ROOT / "scripts/forward_models/models/conv_gru_residual.py").read_text()
    twin = source.replace('"conv_gru_residual"', f'"{NEW_FAMILY}"').replace(
        "ConvGRUResidual", "ConvGRUTwin"
    )
    (repo / f"scripts/forward_models/models/{NEW_FAMILY}.py").write_text(twin)
    preset = (ROOT / "config/models/conv_gru_residual.yaml").read_text()
    (repo / f"config/models/{NEW_FAMILY}.yaml").write_text(
        preset.replace("arch: conv_gru_residual", f"arch: {NEW_FAMILY}")
    )
    pytest = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-m",
        "",
        "tests/test_models.py",
    ]
    ran = subprocess.run(
        [*pytest, "-rA", "-k", NEW_FAMILY], cwd=repo, capture_output=True, text=True, timeout=900
    )
    assert ran.returncode == 0, ran.stdout[-3000:]
    listed = subprocess.run(
        [*pytest, "--collect-only", "-q"], cwd=repo, capture_output=True, text=True, timeout=300
    ).stdout
    # Every registry-wide test that runs on the family it was copied from ran on it, by name
    # (tests parametrized with a literal list of families chose those by hand).
    source_tests = set(re.findall(r"::(\w+)\[conv_gru_residual\]", listed))
    registry_wide = source_tests - hand_picked(ROOT / "tests/test_models.py")
    passed = set(re.findall(rf"PASSED \S+::(\w+)\[{NEW_FAMILY}\]", ran.stdout))
    assert len(registry_wide) >= 8 and passed == registry_wide, (registry_wide, passed)
    (repo / "new.yaml").write_text(yaml.safe_dump({"models": {"twin": {"preset": NEW_FAMILY}}}))
    targets = ["results/eval/pong/twin/seed0/metrics.parquet"]
    targets += ["results/figures/pong/twin/seed0/rollout_strip.png"]
    # The scratch copy's package, not the one `pip install -e .` points at (this repo's).
    env = {**os.environ, "PYTHONPATH": str(repo / "scripts")}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *targets]
    proc = subprocess.run(
        [*cmd, "--configfile", "config/test.yaml", "new.yaml"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = yaml.safe_load((repo / "results/models/pong/twin/seed0/config.yaml").read_text())
    assert cfg["model"]["arch"] == NEW_FAMILY and cfg["model"]["train"]["steps"] == 6  # tiny


def hand_picked(test_file: Path) -> set[str]:
    """Test functions whose ``parametrize`` lists its values literally (not from the registry)."""
    import ast

    out = set()
    for node in ast.parse(test_file.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and ast.unparse(d.func).endswith("parametrize"):
                    if len(d.args) > 1 and isinstance(d.args[1], ast.List | ast.Tuple):
                        out.add(node.name)
    return out


def shutil_copy_tests(repo: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "tests", repo / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
