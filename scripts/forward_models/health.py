"""What stops training: a non-finite loss, gradient, parameter or statistic, or a gradient stuck
at exactly 0. Tracked on the device, so that no step waits for it."""

from __future__ import annotations

import torch


class TrainingDiverged(RuntimeError):
    """Training stopped: the loss, a gradient, a parameter or a normalisation statistic became
    non-finite, or the gradient stayed exactly 0 while the loss did not."""


NonFiniteLossError = TrainingDiverged  # the name it had when only the loss was checked
STUCK_STEPS = 50  # consecutive steps of an exactly-zero gradient (loss not ~0) that stop training


class Health:
    """The first step whose loss or gradient norm was non-finite, and runs of exactly-zero
    gradients while the loss is not ~0, kept as device tensors. :meth:`problem` reads them (one
    host sync) when the loop logs."""

    def __init__(self, device):
        zero = torch.zeros((), dtype=torch.long, device=device)
        self.bad_loss, self.bad_grad, self.zero_run, self.stuck = zero, zero, zero, zero
        self.loss = torch.zeros((), device=device)

    def update(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        loss, grad_norm = loss.float(), grad_norm.float()

        def first(at: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
            return torch.where((at == 0) & now, step, at)

        self.bad_loss = first(self.bad_loss, ~torch.isfinite(loss))
        self.bad_grad = first(self.bad_grad, ~torch.isfinite(grad_norm))
        zero = (grad_norm == 0) & (loss > 1e-6)
        self.zero_run = torch.where(zero, self.zero_run + 1, 0)
        self.stuck = first(self.stuck, self.zero_run >= STUCK_STEPS)
        self.loss = torch.where(self.stuck == step, loss, self.loss)

    def problem(self) -> tuple[str, int] | None:
        """(what went wrong first, its step), or None."""
        bad_loss, bad_grad, stuck = (int(t) for t in (self.bad_loss, self.bad_grad, self.stuck))
        if bad_loss and (not bad_grad or bad_loss <= bad_grad):
            return "the training loss became non-finite", bad_loss
        if bad_grad:
            return "the gradient norm became non-finite", bad_grad
        if stuck:
            return (
                f"the gradient had been exactly 0 for {STUCK_STEPS} steps while the loss was "
                f"{float(self.loss):.4g} (saturated outputs or dead units learn nothing)",
                stuck,
            )
        return None


def non_finite(model) -> str | None:
    """The first parameter or floating buffer (e.g. a BatchNorm running variance) holding a
    non-finite value, as ``"parameter NAME"``, or None."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"{kind} {name}"
    return None
