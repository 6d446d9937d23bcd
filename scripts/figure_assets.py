"""Rule `figure_assets`: what an asset model learned (sprites, transforms, composite) on a test episode."""

import sys

import numpy as np
import torch
from forward_models import models
from forward_models.figures import asset_frames, asset_gif, asset_sheet


def main(checkpoint: str, examples: str, style: str, png: str, gif: str, steps: int = 12) -> None:
    model = models.load(checkpoint)
    ex = dict(np.load(examples))
    context = torch.from_numpy(ex["context"][:1]).permute(0, 1, 4, 2, 3).float() / 255
    actions = torch.from_numpy(ex["action"][:1])
    a = asset_frames(model, context, actions, steps)
    asset_sheet(a, ex["truth"][0], png, style=style)
    asset_gif(a, ex["truth"][0], gif)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        i, o = snakemake.input, snakemake.output
        main(i.checkpoint, i.examples, i.style, o.png, o.gif)
elif __name__ == "__main__":
    main(*sys.argv[1:6])
