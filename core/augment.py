"""Each view varied at random (`Settings.augment`): the figurine as a differently taken photograph might show it."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .model import FIGURE_LEVEL
from .settings import Augmentation, Settings


def augmented(x: torch.Tensor, g: torch.Generator, a: Augmentation = Augmentation(),
              colour: bool = False) -> torch.Tensor:
    """Normalised images (n, 3, H, W), each at random: mirrored (p 1/2), rescaled (1/a.scale to a.scale), rotated
    (up to a.degrees) and shifted (up to a.shift of the side), with neutral background filling what comes into
    view; one rectangle (a.area of the image, aspect 1:2 to 2:1) set to the background, so that no single part,
    such as a base or a head, decides the code alone (random erasing, Zhong et al. 2017); with `colour`, the
    figure's brightness, contrast and saturation varied too. Computed on x's device, in one pass for the batch."""
    n, _, h, w = x.shape
    u = torch.rand(12, n, device=x.device, generator=g) * 2 - 1  # uniform in [-1, 1]
    if colour:
        fig = x.abs().sum(1, keepdim=True) > FIGURE_LEVEL
        lum = x.mean(1, keepdim=True)
        sat = a.saturation ** u[0]
        con = a.contrast ** u[1]
        x = torch.where(fig, ((lum + sat[:, None, None, None] * (x - lum)) * con[:, None, None, None]
                              + a.brightness * u[2, :, None, None, None]).clamp(-1, 1), x)
    # the affine map from each output pixel to where it is read in x (grid coordinates in [-1, 1])
    inv = a.scale ** -u[3]
    ang = u[4] * math.radians(a.degrees)
    flip = torch.where(u[5] < 0, -1.0, 1.0)
    cos, sin = ang.cos() * inv, ang.sin() * inv
    theta = torch.stack([torch.stack([cos * flip, -sin, 2 * a.shift * u[6]], 1),
                         torch.stack([sin * flip, cos, 2 * a.shift * u[7]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [n, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    area = a.area[0] + (a.area[1] - a.area[0]) * (u[8] + 1) / 2
    r = torch.exp(u[9] * math.log(2))
    bh, bw = (area * r).sqrt().clamp(max=1) * h, (area / r).sqrt().clamp(max=1) * w
    top, left = (u[10] + 1) / 2 * (h - bh), (u[11] + 1) / 2 * (w - bw)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    box = ((ys >= top[:, None, None]) & (ys < (top + bh)[:, None, None])
           & (xs >= left[:, None, None]) & (xs < (left + bw)[:, None, None]))
    return x.masked_fill(box[:, None], 0.0)


class Augment:
    """`augmented` as a run's settings ask (on colour, the figure's lighting too); the images unchanged when
    `augment` is off."""

    def __init__(self, s: Settings):
        self.on, self.a, self.colour = s.augment, s.augmentation, s.style == "colour"

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return augmented(x, g, self.a, self.colour) if self.on else x
