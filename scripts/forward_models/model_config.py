"""Config classes every model family builds on. Pydantic only: validating a config imports no torch.

A family's own config class lives at the top of its model file (``models/<family>.py``) and
subclasses :class:`ModelConfig` (or a mixin below); :mod:`forward_models.families` reads those
classes without running the torch half of the file.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def cosine(fraction: float) -> float:
    """The cosine schedule's lr multiple after ``fraction`` of the budget (1 -> 0, then 0)."""
    return 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))


class Strict(BaseModel):
    """Config base: unknown keys are errors; attribute docstrings become schema descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class TrainConfig(Strict):
    steps: int = Field(2000, ge=0)
    """Optimiser steps."""
    batch_size: int = Field(32, ge=1)
    """Windows per batch."""
    seq_len: int = Field(32, ge=2)
    """Rows per training window: the precondition plus the frames predicted after it."""
    from_start: float = Field(0.0, ge=0, le=1)
    """Fraction of windows that start at their episode's first row, as evaluation's (and the
    thesis' training windows) do; the rest start anywhere in an episode. An episode's start is
    where the hidden state is best known (the ball at the centre), so a model trained only on
    windows from anywhere learns a blurrier guess for it."""
    to_end: float = Field(0.0, ge=0, le=1)
    """Fraction of windows that end at their episode's last row (``from_start + to_end`` at
    most 1). An episode's end is one row of it (on Pong the frame where the ball passed a
    paddle), so windows from anywhere show it rarely (~1% on the default Pong, against many
    bounces): a model learns to bounce the ball where the truth misses it, and an agent in its
    dream never sees an end. (An episode shorter than a window fills it from its start.)"""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate."""
    lr_decay_every: int = Field(15000, ge=1)
    """Step decay as in the thesis: lr / (step // lr_decay_every + 1)."""
    lr_schedule: Literal["step", "cosine"] = "step"
    """``step``: the thesis' step decay (``lr_decay_every``). ``cosine``: from ``lr`` down to 0
    at ``steps`` along a half cosine, which ends a short budget on settled weights."""

    @model_validator(mode="after")
    def _window_shares(self):
        if self.from_start + self.to_end > 1:
            raise ValueError(
                f"from_start={self.from_start} + to_end={self.to_end} exceeds 1: they are the "
                f"shares of windows that start at an episode's first row and end at its last"
            )
        return self

    def lr_factor(self, step: int, fraction: float | None = None) -> float:
        """The learning rate at ``step`` as a multiple of ``lr``; the cosine runs over
        ``fraction`` of the budget where given (a time budget), else over ``steps``."""
        if self.lr_schedule == "cosine":
            return cosine(step / max(self.steps, 1) if fraction is None else fraction)
        return 1.0 / (step // self.lr_decay_every + 1)

    grad_clip: float = Field(1.0, gt=0)
    """Clip the global gradient norm to this value."""
    loss: Literal["bce", "mse"] = "bce"
    """Per-pixel loss on [0, 1] frames, averaged over the real (unmasked) predicted steps."""
    step_weights: Literal["uniform", "copy_last"] = "uniform"
    """How the predicted steps of a window weigh in the loss. ``uniform``: equally.
    ``copy_last``: each step in inverse proportion to copy-last-frame's MSE at it in the batch,
    so the loss counts improvement over copying at every horizon; under ``uniform`` the far,
    uncertain steps dominate and a model learns a blur that costs it the near ones."""
    val_fraction: float = Field(0.1, ge=0, lt=1)
    """Fraction of the train split's episodes held out for the validation loss."""
    val_every: int = Field(250, ge=1)
    """Steps between validation losses."""
    val_batches: int = Field(4, ge=1)
    """Batches per validation loss (fixed windows, the same every time)."""
    log_every: int = Field(25, ge=1)
    """Steps between logged training losses."""
    checkpoint_every: int = Field(250, ge=1)
    """Steps between resume checkpoints (a killed job continues from the last one)."""
    precision: Literal["auto", "fp32", "tf32", "bf16"] = "auto"
    """Arithmetic of the training step. ``fp32``; ``tf32``: fp32 with TF32 matmuls and convs
    on CUDA (Ampere and later); ``bf16``: bf16 autocast (on the CPU too); ``auto``: ``bf16``
    on CUDA, ``fp32`` elsewhere. Small models are launch-bound on a GPU, where bf16 gains
    little; ``bench/train.py`` measures it."""
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"
    """``torch.compile`` the training step's loss with this mode (``reduce-overhead`` captures
    CUDA graphs: fewest launches for small models). The first steps compile (seconds to
    minutes); evaluation stays eager. Needs a C++ compiler on the CPU."""


# The debug overlay (``tiny: true``) trains every model this briefly on short windows.
TINY_TRAIN: dict[str, Any] = {
    "steps": 6,
    "batch_size": 4,
    "seq_len": 10,
    "log_every": 3,
    "val_every": 3,
    "checkpoint_every": 3,
}


class ModelConfig(Strict):
    """Fields every family shares. A family subclasses it with ``arch: Literal["name"] = "name"``:
    that literal is the family's registry key."""

    reference: ClassVar[bool] = False
    """A reference predictor (copy-last, mean-frame, the floor), not a learned model: figures
    and tables draw it as a reference."""
    floor: ClassVar[bool] = False
    """The floor: the best achievable prediction, which other models' errors are divided by
    (``x floor``). Run only on envs that have one (:func:`forward_models.floor.has_floor`)."""
    draws_pixels: ClassVar[bool] = False
    """Draws pixels from its state or the action (rather than only moving pixels it reads):
    the registry-wide tests check it can produce frames its inputs do not hold."""
    stochastic: ClassVar[bool] = False
    """Samples futures: its ``step`` and ``rollout`` take a ``generator`` (a
    :class:`torch.Generator`) and draw one future with it; evaluation draws
    ``evaluation.samples`` of them per episode (a deterministic family is rolled out once and
    counts as that many equal samples)."""
    has_assets: ClassVar[bool] = False
    """Learns sprites it composites (``assets()``, states with ``warped`` and ``theta``): the
    workflow draws its asset figures."""
    TINY: ClassVar[dict[str, Any]] = {}
    """The family's small sizes (a ``train`` key may adjust :data:`TINY_TRAIN`), used by the
    debug overlay (``tiny: true``) and the registry-wide tests."""
    FIT: ClassVar[dict[str, Any]] = {}
    """Sizes over ``TINY`` for the registry-wide tests that fit a batch, where ``TINY`` is too
    small to (the test then names no family)."""

    arch: str
    """Model family, a key of the registry (see ``forward_models.families``)."""
    precondition: int = Field(3, ge=1)
    """P: frames the model sees before predicting open loop."""
    train: TrainConfig = TrainConfig()
    """Training budget and optimiser."""

    @model_validator(mode="after")
    def _learns(self):
        if not type(self).reference and self.train.steps < 1:
            raise ValueError(
                f"train.steps={self.train.steps}: {self.arch} is a learned model and would be "
                f"evaluated and ranked untrained; give train.steps >= 1"
            )
        return self

    @model_validator(mode="after")
    def _window_holds_a_prediction(self):
        if self.train.seq_len <= self.precondition:
            raise ValueError(
                f"train.seq_len={self.train.seq_len} must exceed precondition="
                f"{self.precondition}: a training window holds the precondition frames and at "
                f"least one frame to predict"
            )
        return self

    def frame_problem(self, size: int) -> str | None:
        """Why this model cannot take ``size`` x ``size`` frames, or None if it can."""
        return None


class FrameFedConfig(ModelConfig):
    """Families that read the frame they predict from (teacher forcing is possible)."""

    teacher_forcing: bool = False
    """Feed the true previous frame at every training step (else the model's own prediction)."""
    sampling: float = Field(0.0, ge=0, le=1)
    """With teacher forcing: probability per step of feeding the model's own prediction
    (scheduled sampling); 0 is pure teacher forcing."""


class RecurrentConfig(ModelConfig):
    """The thesis' recurrent core: a GRU over action embeddings, optional dilated GRU layers."""

    TINY: ClassVar[dict[str, Any]] = {"hidden": 8}

    hidden: int = Field(64, ge=1)
    """GRU state size H."""
    embed: int = Field(32, ge=1)
    """Action embedding size E."""
    dilated_layers: int = Field(0, ge=0)
    """Dilated GRU layers after the first GRU (the thesis stacked 2; its sweep used 1)."""
    skip: int = Field(1, ge=1)
    """Recurrent skip k of the dilated layers (the thesis tried 1 and 8)."""
