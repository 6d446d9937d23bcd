"""Play a learned model: a Gymnasium env whose dynamics are a checkpoint, and a keyboard window.

``gymnasium.make("forward_models/Dream-v0", checkpoint=PATH)`` resets the true environment the
checkpoint was trained on (its spec travels in the checkpoint), takes the first P frames as the
precondition and from then on steps the model alone: agents can be trained inside a model.

``forward-models play CHECKPOINT`` opens a pygame window showing truth | prediction |
|difference| on the same keyboard actions. Keys: the env's map (shown on screen), R resets,
S re-syncs the model to the true frames, N draws a new precondition (new seed), D draws another
future from the true frames (a stochastic family; a deterministic one re-syncs), Esc quits.

A stochastic family draws one future per dream, with a generator seeded at reset (the same
seed, the same dream); :meth:`Dream.redraw` draws another.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from forward_models import envs, frames, models
from forward_models.agents import keyboard_agent


def _to_float(shown: list[np.ndarray]) -> torch.Tensor:
    """P frames (H, W, C) uint8 -> (1, P, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.stack(shown)).permute(0, 3, 1, 2).float().div(255)[None]


def env_spec(checkpoint: str | Path) -> dict:
    """The env a checkpoint was trained on: saved in it, or in the run's config.yaml beside it."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "env" in ckpt:
        return ckpt["env"]
    resolved = Path(checkpoint).with_name("config.yaml")
    if resolved.is_file():
        import yaml

        return yaml.safe_load(resolved.read_text())["env"]
    raise ValueError(
        f"{checkpoint} names no env (neither inside it nor in a config.yaml beside it)"
    )


class Dream(gym.Env):
    """The dynamics of a trained forward model as a Gymnasium env (observations: its frames)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self, checkpoint: str | Path, render_mode: str | None = "rgb_array", device: str = "cpu"
    ):
        self.model = models.load(checkpoint, map_location=device)
        self.spec_env = env_spec(checkpoint)
        self.true_env = envs.make(
            self.spec_env["id"], self.spec_env["size"], self.spec_env["kwargs"]
        )
        self.render_mode = render_mode
        c, h, w = self.model.frame_shape
        self.observation_space = gym.spaces.Box(0, 255, (h, w, c), np.uint8)
        self.action_space = self.true_env.action_space
        self.p = self.model.cfg.precondition
        self._frame = np.zeros((h, w, c), np.uint8)
        self.generator = torch.Generator(device=device).manual_seed(0)

    def precondition(self, seed: int | None) -> list[np.ndarray]:
        """The true env's first P frames (no-op-free: the agent acts at random, seeded)."""
        obs, _ = self.true_env.reset(seed=seed)
        self.true_env.action_space.seed(seed)
        context = [obs]
        while len(context) < self.p:
            obs, *_ = self.true_env.step(self.true_env.action_space.sample())
            context.append(obs)
        return context

    @torch.no_grad()
    def sync(self, context: list[np.ndarray]) -> None:
        """(Re)start the model from ``context``, the last P true frames."""
        self.model.eval()
        draw = self.model.draw(self.generator)
        self.state = self.model.init_state(_to_float(context[-self.p :]), **draw)
        self._frame = context[-1]

    def redraw(self, context: list[np.ndarray]) -> None:
        """Start another future from ``context``: a new generator seed, then :meth:`sync`."""
        self.generator.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
        self.sync(context)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        self.generator.manual_seed(seed)
        self.sync(self.precondition(seed))
        return self._frame.copy(), {}

    @torch.no_grad()
    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        a = torch.as_tensor(np.asarray(action)[None])
        frame, self.state = self.model.step(self.state, a, **self.model.draw(self.generator))
        self._frame = frames.uint8_frames(frame[0])
        return self._frame.copy(), 0.0, False, False, {}

    def render(self):
        return self._frame.copy() if self.render_mode == "rgb_array" else None


def play(
    checkpoint: str | Path,
    record: str | Path | None = None,
    steps: int | None = None,
    keys: list[set[str]] | None = None,
    scale: int = 8,
    seed: int = 0,
    fps: int = 15,
) -> list[np.ndarray]:
    """Run the play window; ``keys`` scripts the held keys per step (for tests and demos).

    Returns the shown frames (and writes them to ``record`` if given: .mp4 or .gif).
    """
    import pygame

    dream = Dream(checkpoint)
    agent = keyboard_agent(dream.true_env)
    truth_frames = dream.precondition(seed)
    dream.sync(truth_frames)
    pygame.display.init()  # not pygame.init(): no audio device is needed (or present on servers)
    pygame.font.init()
    h, w, _ = dream.observation_space.shape
    width, height = 3 * w * scale + 2 * scale, h * scale + 40
    screen = pygame.display.set_mode((width, height))
    pygame.display.set_caption(f"forward-models play: {Path(checkpoint).parent}")
    font = pygame.font.Font(None, 18)
    clock, shown, t = pygame.time.Clock(), [], 0
    help_text = (
        "keys: "
        + ", ".join("+".join(k) for k in agent.keymap if k)
        + " | R reset  S sync  N new  D redraw  Esc quit"
    )
    while steps is None or t < steps:
        held = set()
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (
                event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE
            ):
                steps = t
            elif event.type == pygame.KEYDOWN and event.key in (pygame.K_r, pygame.K_n):
                seed += event.key == pygame.K_n
                truth_frames = dream.precondition(seed)
                dream.sync(truth_frames)
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_s:
                dream.sync(truth_frames)
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_d:
                dream.redraw(truth_frames)
        if steps is not None and t >= steps:
            break
        if keys is not None:
            held = keys[t % len(keys)]
        else:
            pressed = pygame.key.get_pressed()
            held = {pygame.key.name(k) for k in range(len(pressed)) if pressed[k]}
        agent.hold(held)
        action = agent.act()
        pred, *_ = dream.step(action)
        obs, _, term, trunc, _ = dream.true_env.step(action)
        truth_frames = (truth_frames + [obs])[-dream.p :]
        if term or trunc:
            truth_frames = dream.precondition(seed := seed + 1)
            dream.sync(truth_frames)
        frame = frames.side_by_side(obs[None], pred[None], scale=scale)[0]
        surface = pygame.surfarray.make_surface(frame.swapaxes(0, 1))
        screen.fill((30, 30, 30))
        screen.blit(surface, (0, 0))
        labels = ["truth", "prediction", "|difference|"]
        for i, label in enumerate(labels):
            screen.blit(
                font.render(label, True, (220, 220, 220)),
                (i * (w * scale + scale) + 4, h * scale + 4),
            )
        screen.blit(font.render(help_text, True, (160, 160, 160)), (4, h * scale + 22))
        pygame.display.flip()
        shown.append(pygame.surfarray.array3d(screen).swapaxes(0, 1).copy())
        clock.tick(fps if keys is None else 0)
        t += 1
    pygame.quit()
    if record:
        _write_video(shown, record, fps)
    return shown


def _write_video(shown: list[np.ndarray], path: str | Path, fps: int) -> None:
    import imageio.v2 as imageio

    if str(path).endswith(".gif"):
        imageio.mimsave(path, shown, duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(path, shown, fps=fps, macro_block_size=1)
