"""Play a learned model in a keyboard window (the env itself, ``Dream-v0``, is
:mod:`forward_models.dream`).

``forward-models play CHECKPOINT`` opens a pygame window showing truth | prediction |
|difference| on the same keyboard actions. Keys: the env's map (shown on screen), R resets,
S re-syncs the model to the true frames, N draws a new precondition (new seed), D draws another
future from the true frames (a stochastic family; a deterministic one re-syncs), Esc quits.

A stochastic family draws one future per dream, with a generator seeded at reset (the same
seed, the same dream); :meth:`~forward_models.dream.Dream.redraw` draws another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forward_models import frames
from forward_models.agents import keyboard_agent
from forward_models.dream import Dream, env_spec  # noqa: F401  (env_spec: the old home)


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
