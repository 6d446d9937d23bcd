"""Rule `figure_assets`: what an asset model learned (sprites, transforms, composite) on a test
episode.

Standalone: python scripts/figure_assets.py --env pong --model asset_stn --seed 0
"""

import numpy as np
import torch
from _rule import run
from forward_models import models
from forward_models.figures import asset_frames, asset_gif, asset_sheet

STEPS = 12  # open-loop steps drawn


def main(snakemake):
    i, o = snakemake.input, snakemake.output
    model = models.load(i.checkpoint)
    ex = dict(np.load(i.examples))
    context = torch.from_numpy(ex["context"][:1]).permute(0, 1, 4, 2, 3).float() / 255
    a = asset_frames(model, context, torch.from_numpy(ex["action"][:1]), STEPS)
    asset_sheet(a, ex["truth"][0], o.png, style=i.style)
    asset_gif(a, ex["truth"][0], o.gif)


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
