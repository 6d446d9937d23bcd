"""Base for families that read the current frame at every step (teacher forcing is possible).

Their state is a dict holding at least ``frame``, the frame the next step reads: the last
precondition frame at first, then their own prediction (open loop, as in evaluation and play).
In training, ``teacher_forcing`` feeds the true previous frame instead, and ``sampling`` (the
probability of feeding the model's own prediction at a step anyway) schedules the move from
teacher forcing towards open loop.
"""

from __future__ import annotations

import torch

from forward_models.model_config import FrameFedConfig
from forward_models.models.base import ForwardModel, split_window, window_loss


class FrameFed(ForwardModel):
    Config = FrameFedConfig

    def loss(self, batch):
        context, actions, target, mask = split_window(batch, self.cfg.precondition)
        if self.training and self.cfg.teacher_forcing:
            pred = self.teacher_forced(context, actions, target, self.cfg.sampling)
        else:
            pred = self.rollout(context, actions)
        loss = window_loss(pred, context, target, mask, self.cfg.train)
        return loss, {"loss": loss.detach()}

    def one_step(self, context, actions, target):
        return self.teacher_forced(context, actions, target)

    def teacher_forced(self, context, actions, target, sampling: float = 0.0) -> torch.Tensor:
        """Predictions when step t reads the true frame before it (``target[t - 1]``).

        With ``sampling`` > 0, each step reads the model's own prediction with that probability.
        """
        inputs = torch.cat([context[:, -1:], target[:, :-1]], 1)  # true frame before each step
        state, frames = self.init_state(context), []
        for t in range(actions.shape[1]):
            if t > 0 and not (sampling and torch.rand(()) < sampling):
                state = {**state, "frame": inputs[:, t]}
            frame, state = self.step(state, actions[:, t])
            frames.append(frame)
        return torch.stack(frames, 1)
