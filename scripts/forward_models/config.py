"""The experiment config: YAML -> :func:`load` -> these typed classes, which travel to the jobs.

Pydantic only (no torch, no env packages): the Snakefile validates with it before any job runs.
Every field carries its documentation as a docstring; the JSON schema in
``workflow/schemas/config.schema.json`` and ``config/README.md`` are generated from these classes
(``forward-models schema``, ``forward-models docs``) for editors and readers. Model families
contribute their config classes from their own files (:mod:`forward_models.families`).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from forward_models import agents, families
from forward_models.model_config import TINY_TRAIN, Strict

AgentKind = Literal[tuple(agents.AGENTS)]


class AgentConfig(Strict):
    kind: AgentKind = "random"
    """Rollout agent: uniform random, sticky random, or the scripted two-player Pong agent."""
    kwargs: dict[str, Any] = {}
    """Agent options: ``stickiness`` for sticky, ``stochasticity`` (a value or [low, high],
    drawn per episode) for pong."""

    @model_validator(mode="after")
    def _options(self):
        agents.check_options(self.kind, self.kwargs)
        return self


class SplitConfig(Strict):
    episodes: int = Field(ge=1)
    """Episodes to collect."""
    seed: int = Field(ge=0)
    """Root seed of the split; every episode's seed is derived from it."""


class EnvSpec(Strict):
    """What an env is: the same id, kwargs, size and step limit make the same frames anywhere."""

    id: str
    """Gymnasium id, e.g. forward_models/TwoPlayerPong-v0 or CartPole-v1 (must render rgb_array)."""
    size: int = Field(32, ge=8)
    """Frames are square, ``size`` pixels a side (built-in envs draw at it, others are resized)."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments for ``gymnasium.make``."""
    max_episode_steps: int | None = Field(200, ge=1)
    """Truncate episodes after this many steps (None: the env's own limit)."""

    @field_validator("id")
    @classmethod
    def _known_id(cls, v: str) -> str:
        from forward_models import envs  # gymnasium, not torch

        envs.check_env_id(v)
        envs.check_env_installed(v)
        return v

    def make(self):
        """The env, observing ``(size, size, 3)`` uint8 frames (:func:`forward_models.envs.make`)."""
        from forward_models import envs

        return envs.make(self.id, self.size, self.kwargs, self.max_episode_steps)


class RolloutSource(Strict):
    """What makes an episode: the env and the agent acting in it (collection's unit of work)."""

    env: EnvSpec
    """The env."""
    agent: AgentConfig = AgentConfig()
    """The agent that chooses its actions."""

    @model_validator(mode="after")
    def _agent_fits(self):
        _check_agent(self.agent.kind, self.env.id)
        return self


def _check_agent(kind: str, env_id: str) -> None:
    if not agents.fits(kind, env_id):
        from forward_models import envs

        written_for = [i for k in envs.KINDS if kind in k.agents for i in k.ids]
        generic = [k for k, a in agents.AGENTS.items() if a.any_env]
        raise ValueError(
            f"agent.kind {kind!r} is written for {', '.join(written_for)}, not "
            f"{env_id!r}: use agent kind {' or '.join(map(repr, generic))}"
        )


class EnvConfig(EnvSpec):
    """An ``envs`` entry: the env (:class:`EnvSpec`) and how its splits are collected."""

    min_length: int = Field(0, ge=0)
    """Drop episodes shorter than this many steps (the next seeds replace them, in order)."""
    agent: AgentConfig = AgentConfig()
    """The agent that chooses actions during collection."""
    workers: int = Field(2, ge=1)
    """Processes collecting episodes in parallel (the stored bytes do not depend on it)."""
    splits: dict[Literal["train", "test"], SplitConfig]
    """Train and test splits; their seeds must differ so the episodes are disjoint."""

    @property
    def spec(self) -> EnvSpec:
        return EnvSpec.model_validate(self.model_dump(include=set(EnvSpec.model_fields)))

    @property
    def source(self) -> RolloutSource:
        return RolloutSource(env=self.spec, agent=self.agent)

    @model_validator(mode="after")
    def _agent_fits(self):
        _check_agent(self.agent.kind, self.id)
        return self

    @model_validator(mode="after")
    def _collectable(self):
        steps = self.max_episode_steps
        if steps is not None and self.min_length > steps:
            raise ValueError(
                f"min_length={self.min_length} exceeds max_episode_steps={steps}: no episode "
                f"can be that long, so collection would never finish; lower min_length"
            )
        from forward_models.data.ring import ring_bytes

        need = ring_bytes((self.size, self.size, 3), self.workers)
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if need > have / 2:
            raise ValueError(
                f"size={self.size} with workers={self.workers}: collection's shared-memory rings "
                f"alone would take {need / 2**30:.1f} GiB of this machine's {have / 2**30:.1f} "
                f"GiB; lower size or workers"
            )
        return self

    @model_validator(mode="after")
    def _disjoint(self):
        if set(self.splits) != {"train", "test"}:
            raise ValueError(f"splits must be exactly train and test, got {sorted(self.splits)}")
        if self.splits["train"].seed == self.splits["test"].seed:
            raise ValueError(
                f"train and test splits share seed {self.splits['test'].seed}; use different seeds"
            )
        return self


class MlflowConfig(Strict):
    tracking_uri: str = "sqlite:///mlflow.db"
    """Tracking store. The default is the store a bare ``mlflow ui`` in this directory reads; on
    a cluster use an ``http://`` URI of an ``mlflow server``."""
    experiment: str = "forward-models"
    """Experiment every run is logged under."""


class EvaluationConfig(Strict):
    horizon: int = Field(32, ge=1)
    """Open-loop steps predicted after the precondition."""
    episodes: int = Field(50, ge=1)
    """Test episodes evaluated (the first ones with enough steps)."""
    samples: int = Field(16, ge=2, le=256)
    """K: futures drawn per test episode from a stochastic family and from the floor's
    posterior (seeded per run and episode); the energy score, spread and best-of-K are over
    them. A deterministic family is rolled out once and counts as K equal samples."""
    leaderboard: list[Annotated[int, Field(ge=1)]] = [1, 8, 16, 32]
    """Horizons shown in the leaderboard (those beyond ``horizon`` are left out)."""


class OutcomeConfig(Strict):
    """The reward and episode-end model of every env (``outcome:`` in the config)."""

    frames: int = Field(2, ge=1, le=8)
    """Frames it reads: the one the action led to and those before it (DIAMOND's reads the
    frame before and after the action; two frames also show the ball's velocity)."""
    channels: list[int] = Field([16, 32, 32], min_length=1)
    """Channels of its stride-2 convolutions."""
    hidden: int = Field(128, ge=8)
    """Width of the layer that reads the frames' features and the action's embedding."""
    steps: int = Field(1500, ge=1)
    """Adam steps."""
    batch_size: int = Field(64, ge=2)
    """Transitions per step."""
    lr: float = Field(1e-3, gt=0)
    """Adam's learning rate."""
    end_fraction: float = Field(0.25, ge=0, lt=1)
    """Share of each batch drawn from episode-end transitions (0: uniform over transitions)."""
    threshold: float = Field(0.5, gt=0, lt=1)
    """End probability above which a step ends the episode."""


class PolicyConfig(Strict):
    """PPO in dreams and in the real env, and the scoring episodes (``policies:`` in the config)."""

    steps: int = Field(200_000, ge=1)
    """Env steps of PPO training (all envs together), the same in every model and the real env."""
    n_envs: int = Field(8, ge=1)
    """Envs (dreams) stepped together."""
    n_stack: int = Field(2, ge=1)
    """Frames the policy sees (the newest and those before it)."""
    lr: float = Field(2.5e-4, gt=0)
    """Adam's learning rate."""
    n_steps: int = Field(128, ge=2)
    """Steps per env between updates."""
    n_epochs: int = Field(4, ge=1)
    """Passes over each update's steps."""
    batch_size: int = Field(64, ge=2)
    """Minibatch size of the updates (SB3's default; at 256, with ``clip_range`` 0.1 and
    ``ent_coef`` 0.01, PPO was still at random play after 450k steps on the default Pong)."""
    gamma: float = Field(0.99, gt=0, le=1)
    """Discount."""
    ent_coef: float = Field(0.0, ge=0)
    """Weight of the entropy bonus."""
    clip_range: float = Field(0.2, gt=0)
    """PPO's clipping of the probability ratio."""
    channels: list[int] = Field([16, 32, 32], min_length=1)
    """Channels of the policy's stride-2 convolutions (a third of the flops of 32-64-64 with
    a stride-1 last layer, where PPO's updates took 80% of the time on the CPU)."""
    features: int = Field(256, ge=8)
    """Width of the conv encoder's output."""
    episodes: int = Field(30, ge=1)
    """Real-env episodes every agent is scored on."""
    greedy: bool = False
    """Score PPO's most likely action instead of a sample of its policy (the argmax of a policy
    still near uniform pins both paddles: 76.7 against random's 120.6 after 50k steps)."""
    score_seed: int = Field(10_000, ge=0)
    """Scoring episode ``i`` resets the real env with seed ``score_seed + i`` (one set for all
    agents; PPO and dreams draw from the run's seed instead)."""


class ActingConfig(Strict):
    """Agents trained inside models, scored in the real env (``acting:`` in the config)."""

    models: list[str] = []
    """Models in whose dreams a PPO agent learns (the env's reward and end model gives the
    dreams their rewards and ends); empty: no agent jobs run."""
    envs: list[str] | None = None
    """Envs the agents run on (None: every env)."""
    references: list[Literal["random", "real", "scripted"]] = ["random", "real", "scripted"]
    """Scored the same way in the real env: a random policy, the same PPO trained for the same
    steps in the real env (the ceiling of the normalised score) and the env's scripted agent,
    where it has one. ``random`` and ``real`` normalise every score, so both are needed."""
    ppo: PolicyConfig = PolicyConfig()
    """PPO and the scoring episodes, the same for every model and reference."""


class SweepConfig(Strict):
    model: dict[str, Any]
    """The base model entry, as under ``models`` (``preset`` allowed); every grid point
    overrides it."""
    grid: dict[str, list[Any]] = Field(min_length=1)
    """Model keys (dotted for nested ones, e.g. ``train.lr``) -> values to try. The cross
    product becomes models named ``SWEEP-KEYVALUE-...`` (e.g. ``rnn-skip8-hidden64``), each
    trained once per entry of ``seeds``."""

    @field_validator("grid")
    @classmethod
    def _values(cls, v: dict) -> dict:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid.{key} needs at least one value")
        return v


class ExperimentBase(Strict):
    seeds: list[Annotated[int, Field(ge=0)]] = Field([0], min_length=1)
    """Training seeds; every (env, model) pair is trained once per seed."""
    envs: dict[str, EnvConfig] = Field(min_length=1)
    """Environments by name; the name is the ``{env}`` wildcard in results/ paths."""
    models: dict[str, Any] = Field(min_length=1)
    """Model configurations by name (the ``{model}`` wildcard); ``arch`` picks the family."""
    sweeps: dict[str, SweepConfig] = {}
    """Grids of model variants by name, expanded into ``models`` before validation (example:
    ``config/sweep.yaml``, the thesis' 16-run sweep)."""
    mlflow: MlflowConfig = MlflowConfig()
    """Experiment tracking."""
    evaluation: EvaluationConfig = EvaluationConfig()
    """Held-out evaluation."""
    outcome: OutcomeConfig = OutcomeConfig()
    """The reward and episode-end model, one per env and seed, shared by every model."""
    acting: ActingConfig = ActingConfig()
    """Agents trained in the models' dreams and scored in the real env."""
    threads: int = Field(1, ge=1)
    """CPU threads per training and evaluation job. Small models train fastest as several
    1-thread jobs side by side (``--cores`` sets how many run at once)."""
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    """Torch device for training and evaluation: auto (CUDA when present), cpu, cuda (or
    cuda:N) or mps."""
    progress: bool = True
    """Show progress bars in job logs."""
    verify_stores: bool = False
    """Jobs that read a rollout store (train, evaluate) first decode all of it and check its
    shard checksums, failing with the array and file of any damage (the cost of one full read).
    Without it, opening a store still checks that every file is there with a plausible size."""
    tiny: bool = False
    """Debug overlay: cap every model's sizes at its family's ``TINY`` values and its training
    at a few steps on short windows, and the end model's and PPO's budgets at a few steps
    (``config/test.yaml`` sets it; the tests run it)."""

    @model_validator(mode="after")
    def _models_fit_envs(self):
        """What every job would find out late, checked here: frame sizes each family can take,
        and evaluation windows that episodes can hold."""
        problems = []
        for e, env in self.envs.items():
            rows = None if env.max_episode_steps is None else env.max_episode_steps + 1
            for m, model in self.models.items():
                why = model.frame_problem(env.size)
                if why:
                    problems.append(
                        f"models.{m} ({model.arch}) cannot take envs.{e}.size={env.size}: {why}"
                    )
                need = model.precondition + self.evaluation.horizon
                if rows is not None and need > rows:
                    problems.append(
                        f"evaluation.horizon={self.evaluation.horizon} after models.{m}.precondition="
                        f"{model.precondition} needs episodes of {need} rows; envs.{e}."
                        f"max_episode_steps={env.max_episode_steps} allows at most {rows}"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _a_floor_per_precondition(self):
        """Each floor entry is also run at every other precondition the models use (as
        ``NAME_pP``): a model's distance to the floor is to the floor that saw what it saw, on
        the same frames (a floor at P=3 predicts other frames of the episode than a P=2 model)."""
        used = sorted({c.precondition for c in self.models.values() if not type(c).floor})
        out = {}
        for name, cfg in self.models.items():
            out[name] = cfg
            if not type(cfg).floor:
                continue
            for p in used:
                if p == cfg.precondition:
                    continue
                derived = f"{name}_p{p}"
                if derived in self.models:
                    raise ValueError(
                        f"models.{derived}: the name of {name!r}'s run at precondition={p}; "
                        f"rename that model"
                    )
                out[derived] = cfg.model_copy(update={"precondition": p})
        self.models = out
        return self

    @model_validator(mode="after")
    def _acting(self):
        """Agents only in models that dream (a floor replays the true env), on envs that exist,
        and with both references that normalise their scores."""
        act = self.acting
        problems = [
            f"acting.models: {m!r} is not a model (models: {', '.join(self.models)})"
            for m in act.models
            if m not in self.models
        ]
        problems += [
            f"acting.models: {m!r} is a floor, which replays the true env: no dream to act in"
            for m in act.models
            if m in self.models and type(self.models[m]).floor
        ]
        problems += [
            f"acting.envs: {e!r} is not an env (envs: {', '.join(self.envs)})"
            for e in act.envs or []
            if e not in self.envs
        ]
        missing = {"random", "real"} - set(act.references)
        if act.models and missing:
            problems.append(
                f"acting.references lacks {sorted(missing)}: the normalised score "
                f"(R - R_random) / (R_real - R_random) needs both"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def acting_envs(self) -> list[str]:
        """The envs agents run on (none when no model gets an agent)."""
        if not self.acting.models:
            return []
        return list(self.acting.envs or self.envs)

    def models_for(self, env: str) -> list[str]:
        """The models run on ``env``: all of them, but a floor only where the env has one."""
        from forward_models.floor import has_floor  # numpy and gymnasium, not torch

        env_id = self.envs[env].id
        return [m for m, c in self.models.items() if not type(c).floor or has_floor(env_id)]

    def floor_model(self, env: str, precondition: int) -> str | None:
        """The name of ``env``'s floor run at ``precondition``, if the config has a floor and
        the env one."""
        return next(
            (
                m
                for m in self.models_for(env)
                if type(self.models[m]).floor and self.models[m].precondition == precondition
            ),
            None,
        )

    @field_validator("envs", "models")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for name in v:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(
                    f"name {name!r} must be letters, digits, '_' or '-' (it becomes a path)"
                )
        return v


@functools.cache
def experiment_model() -> type[ExperimentBase]:
    """The experiment config class with ``models`` typed as the union of every family's config."""
    configs = tuple(families.config_classes().values())
    union = Annotated[Union[configs], Field(discriminator="arch")]  # noqa: UP007
    return create_model(
        "Experiment",
        __base__=ExperimentBase,
        models=(
            dict[str, union],
            Field(min_length=1, description=ExperimentBase.model_fields["models"].description),
        ),
    )


def expand_sweeps(config: dict) -> dict:
    """A copy of ``config`` whose ``models`` also hold every grid point of every sweep.

    Sweep ``rnn`` with grid ``{arch: [rnn_deconv, rnn_dense], skip: [1, 8]}`` adds the models
    ``rnn-rnn_deconv-skip1``, ``rnn-rnn_deconv-skip8``, ``rnn-rnn_dense-skip1`` and
    ``rnn-rnn_dense-skip8``: string values are used as they are, others follow the last part
    of their key (``train.lr: [0.001]`` -> ``lr0p001``).
    """
    out = copy.deepcopy(config)
    models = out.setdefault("models", {}) or {}
    for sweep, spec in (out.get("sweeps") or {}).items():
        try:
            SweepConfig.model_validate(spec)
        except ValidationError as exc:
            raise ValueError(f"sweeps.{sweep}: {exc}") from None
        keys = list(spec["grid"])
        for values in itertools.product(*(spec["grid"][k] for k in keys)):
            entry = copy.deepcopy(spec["model"])
            parts = [sweep]
            for key, value in zip(keys, values, strict=True):
                deep_merge(entry, _nested(key.split("."), value))
                parts.append(_name_part(key, value))
            name = "-".join(parts)
            if name in models:
                raise ValueError(f"sweeps.{sweep}: model {name!r} is already defined in models")
            models[name] = entry
    out["models"] = models
    return out


def _nested(path: list[str], value: Any) -> dict:
    return {path[0]: _nested(path[1:], value) if len(path) > 1 else value}


def _name_part(key: str, value: Any) -> str:
    """``skip, 8`` -> ``skip8``; ``lr, 0.001`` -> ``lr0p001``; ``arch, rnn_dense`` -> ``rnn_dense``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        raise ValueError(f"sweep grid key {key!r}: give nested keys dotted (a.b), not dicts")
    values = value if isinstance(value, list) else [value]
    text = "x".join(f"{v:g}" if isinstance(v, float) else str(v).lower() for v in values)
    return key.split(".")[-1] + text.replace(".", "p").replace("+", "")


def resolve_presets(config: dict, presets_dir: str | Path) -> dict:
    """Expand sweeps (:func:`expand_sweeps`), then ``preset: NAME`` in model entries:
    ``presets_dir/NAME.yaml``, overlaid by the entry."""
    out = expand_sweeps(config)
    for name, entry in (out.get("models") or {}).items():
        if not isinstance(entry, dict) or "preset" not in entry:
            continue
        preset = entry["preset"]
        known = sorted(p.stem for p in Path(presets_dir).glob("*.yaml"))
        if not isinstance(preset, str) or Path(preset).name != preset or preset in ("", ".", ".."):
            raise ValueError(
                f"models.{name}.preset: {preset!r} is not a preset name; a preset is named by "
                f"its file in {presets_dir} (no path): one of {known}"
            )
        path = Path(presets_dir) / f"{preset}.yaml"
        if not path.is_file():
            raise ValueError(
                f"models.{name}.preset: no preset {entry['preset']!r} in {presets_dir}; known: {known}"
            )
        merged = read_yaml(path)
        deep_merge(merged, {k: v for k, v in entry.items() if k != "preset"})
        out["models"][name] = merged
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; a syntax error names the file, line and column (Snakemake's
    own message for a config file names neither)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.MarkedYAMLError as exc:

        def at(mark) -> str:
            return f"line {mark.line + 1}, column {mark.column + 1}"

        mark, ctx = exc.problem_mark, exc.context_mark
        where = at(mark) if mark else at(ctx) if ctx else "an unknown place"
        what = exc.problem or "unreadable YAML"
        if exc.context and ctx:
            what += f" ({exc.context} at {at(ctx)})"
        raise ValueError(f"{path}: YAML syntax error at {where}: {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of keys at the top level, got {data!r:.60}")
    return data


def deep_merge(base: dict, over: dict) -> None:
    """Merge ``over`` into ``base`` in place, recursively, as Snakemake merges config files."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v


def shrink(entry: dict) -> dict:
    """A model entry capped at its family's ``TINY`` sizes and :data:`TINY_TRAIN` (the debug
    overlay): a smaller value already set, as by a test's own overlay, is kept; lists and
    strings are replaced."""
    cls = families.config_classes().get(entry.get("arch"))
    if cls is None:  # unknown arch: validation names it
        return entry
    tiny = {k: v for k, v in cls.TINY.items() if k != "train"}
    tiny["train"] = {**TINY_TRAIN, **cls.TINY.get("train", {})}
    return _cap(entry, tiny)


def _cap(entry: dict, tiny: dict) -> dict:
    out = dict(entry)
    for key, small in tiny.items():
        have = out.get(key)
        if isinstance(small, dict):
            out[key] = _cap(have if isinstance(have, dict) else {}, small)
        elif isinstance(small, int | float) and isinstance(have, int | float):
            out[key] = min(have, small)
        else:
            out[key] = small
    return out


def load(config: dict, presets_dir: str | Path = "config/models") -> ExperimentBase:
    """Validate a config dict (as loaded from YAML): sweeps and presets expanded, the debug
    overlay applied. Errors name the key and what was expected."""
    resolved = resolve_presets(config, presets_dir)
    if resolved.get("tiny"):
        resolved["models"] = {k: shrink(v) for k, v in resolved["models"].items()}
        for key, small in TINY_ACTING.items():  # the end model and the agents, tiny too
            resolved[key] = _cap(resolved.get(key) or {}, small)
    return experiment_model().model_validate(resolved)


TINY_ACTING = {
    "outcome": {"steps": 30},
    "acting": {
        "ppo": {
            "steps": 128, "n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1,
            "episodes": 2,
        }
    },
}  # fmt: skip
"""What ``tiny`` caps besides the models: the reward and end model's steps, PPO's budget."""


def load_yaml(*paths: str | Path, presets_dir: str | Path | None = None) -> ExperimentBase:
    """Load and merge YAML files (later ones overlay earlier ones, as in Snakemake) and validate;
    presets are read from ``presets_dir``, by default ``models/`` beside the first file."""
    merged: dict = {}
    for path in paths:
        deep_merge(merged, read_yaml(path))
    return load(merged, presets_dir or Path(paths[0]).parent / "models")


def json_schema() -> dict:
    """The JSON schema of the experiment config (draft 2020-12, which Snakemake's validate reads)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **experiment_model().model_json_schema(),
    }


def main() -> None:
    print(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":
    main()
