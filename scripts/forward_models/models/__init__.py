"""Forward-model families, registered by ``arch`` name. Importing this package registers them."""

from __future__ import annotations

from pathlib import Path

import torch

from forward_models.models import (  # noqa: F401  (registration)
    asset_stn,
    baselines,
    conv_gru_residual,
    frame_transformer_dense,
    rnn_deconv,
    rnn_dense,
    rnn_spatial_transformer,
    transform_kernel,
)
from forward_models.models.base import REGISTRY, ForwardModel, ModelConfig


def build(
    cfg: dict | ModelConfig, frame_shape, n_actions: int, action_dim: int = 0
) -> ForwardModel:
    """Build a model from its config (a dict is validated against its family's config)."""
    if isinstance(cfg, dict):
        cfg = parse_config(cfg)
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


def load(path: str | Path, map_location="cpu") -> ForwardModel:
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    model = build(ckpt["config"], ckpt["frame_shape"], ckpt["n_actions"], ckpt.get("action_dim", 0))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
