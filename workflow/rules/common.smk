# Config validation and the few helpers the rules share. Logic lives in the package.
import sys
from pathlib import Path

from pydantic import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir).parent / "scripts"))
from forward_models import config as fm_config  # noqa: E402
from forward_models import envs as fm_envs  # noqa: E402

# Snakemake reports a YAML syntax error in a config file naming neither the file nor the line:
# read the workflow's own config first. (A broken --configfile stops Snakemake before this
# runs; `forward-models check-config FILE` names its line.)
try:
    if Path("config/config.yaml").exists():
        fm_config.read_yaml("config/config.yaml")
except ValueError as exc:
    raise WorkflowError(str(exc)) from None


configfile: "config/config.yaml"


# One validator, the typed config (pydantic only: no torch here); its classes travel to the jobs
# as params, and each rule script rebuilds them at its first line.
try:
    CFG = fm_config.load(config, "config/models")
except (ValidationError, ValueError) as exc:
    raise WorkflowError(
        f"invalid config (config/README.md documents every key):\n{exc}"
    ) from None

STYLE = "config/plot.mplstyle"


wildcard_constraints:
    env="|".join(CFG.envs),
    model="|".join(CFG.models),
    seed=r"\d+",
    split="train|test",


def all_runs(pattern, models=None):
    """`pattern` expanded over every env x model x seed (a floor only on envs that have one)."""
    return [
        path
        for env in CFG.envs
        for path in expand(
            pattern,
            env=env,
            model=[m for m in CFG.models_for(env) if models is None or m in models],
            seed=CFG.seeds,
        )
    ]


def all_figures():
    return (
        [
            "results/figures/error_vs_horizon.png",
            "results/figures/es_vs_horizon.png",
            "results/figures/training_curves.png",
            "results/figures/error_vs_compute.png",
        ]
        + all_runs("results/figures/{env}/{model}/seed{seed}/rollout_strip.png")
        + all_runs(
            "results/figures/{env}/{model}/seed{seed}/assets.png",
            models=[m for m, c in CFG.models.items() if c.has_assets],
        )
        + all_runs(
            "results/figures/{env}/{model}/seed{seed}/samples.png",
            models=[m for m, c in CFG.models.items() if c.stochastic],
        )
        + (["results/figures/agents.png"] if CFG.acting_envs() else [])
    )


def agent_scores():
    """Every agent's scores file: the models' agents, then the references, on each acting env
    (a scripted agent only where the env has one)."""
    out = []
    for env in CFG.acting_envs():
        out += expand(
            "results/agents/{env}/{model}/seed{seed}/scores.json",
            env=env,
            model=CFG.acting.models,
            seed=CFG.seeds,
        )
        refs = [
            r
            for r in CFG.acting.references
            if r != "scripted" or fm_envs.scripted_agent(CFG.envs[env].id)
        ]
        out += expand(
            "results/agents/{env}/reference-{reference}/seed{seed}/scores.json",
            env=env,
            reference=refs,
            seed=CFG.seeds,
        )
    return out


def leaderboard_horizons():
    ev = CFG.evaluation
    return [h for h in ev.leaderboard if h <= ev.horizon] or [ev.horizon]


def floor_eval(name):
    """Input function: the evaluation file `name` of the floor run at the model's precondition,
    same env and seed, if the env has a floor (its metrics give "x floor", its predictions a
    row of the strips).
    """

    def of(wildcards):
        floor = CFG.floor_model(wildcards.env, CFG.models[wildcards.model].precondition)
        if floor is None or floor == wildcards.model:
            return []
        return f"results/eval/{wildcards.env}/{floor}/seed{wildcards.seed}/{name}"

    return of


def env_params(wildcards):
    return CFG.envs[wildcards.env].model_dump(mode="json")


def model_params(wildcards):
    return CFG.models[wildcards.model].model_dump(mode="json")


def run_name(wildcards):
    return f"{wildcards.env}/{wildcards.model}/seed{wildcards.seed}"
