"""Forward-model families, registered by ``arch``. Importing this package imports every family
file in this folder (:func:`forward_models.families.family_files`): a new family is one file."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from forward_models.families import family_files
from forward_models.model_config import ModelConfig
from forward_models.models.base import REGISTRY, ForwardModel

for _path in family_files():
    importlib.import_module(f"{__name__}.{_path.stem}")


def build(
    cfg: dict | ModelConfig, frame_shape, n_actions: int, action_dim: int = 0
) -> ForwardModel:
    """Build a model from its config (validated against its family's own config class)."""
    cfg = parse_config(cfg if isinstance(cfg, dict) else cfg.model_dump(mode="json"))
    return REGISTRY[cfg.arch](cfg, tuple(frame_shape), n_actions, action_dim)


def parse_config(cfg: dict) -> ModelConfig:
    arch = cfg.get("arch")
    if arch not in REGISTRY:
        raise ValueError(f"unknown model arch {arch!r}; expected one of {sorted(REGISTRY)}")
    return REGISTRY[arch].Config.model_validate(cfg)


def save(model: ForwardModel, path: str | Path, **extra) -> None:
    """A checkpoint that :func:`load` rebuilds with ``weights_only=True``."""
    torch.save(
        {
            "config": model.cfg.model_dump(mode="json"),
            "frame_shape": list(model.frame_shape),
            "n_actions": model.n_actions,
            "action_dim": model.action_dim,
            "state_dict": model.state_dict(),
            **extra,
        },
        path,
    )


CHECKPOINT_KEYS = ("config", "frame_shape", "n_actions", "state_dict")


def _torch_archive(path: str | Path) -> bool:
    """Whether ``path`` starts as :func:`torch.save` writes files (a zip archive)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def load(path: str | Path, map_location="cpu") -> ForwardModel:
    """A model from a checkpoint written by :func:`save`; anything else is a clear error."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a damaged file, not a torch file, or one that would run code
        if _torch_archive(path):
            raise ValueError(
                f"{path} is damaged or incomplete (a torch checkpoint that does not read: "
                f"{type(exc).__name__}; cut short, or partly written); retrain it with "
                f"`snakemake --cores all --forcerun {path}` (or delete it and rerun snakemake)"
            ) from None
        raise ValueError(
            f"{path} is not a forward-models checkpoint (torch reads no weights-only data from "
            f"it: {type(exc).__name__}); it is not loaded, since that could run code"
        ) from None
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in CHECKPOINT_KEYS):
        raise ValueError(f"{path} is not a forward-models checkpoint (it lacks {CHECKPOINT_KEYS})")
    model = build(ckpt["config"], ckpt["frame_shape"], ckpt["n_actions"], ckpt.get("action_dim", 0))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
