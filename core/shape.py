"""The prior's shape held over many photographs (`Settings.shape`): sliced quantile matching.

The critic sees a batch of codes at a time, and a batch of 100 cannot show it clumps finer than about half a prior
sd: the look-alike term makes such clumps, and a classifier given every code finds them. Here each step projects
the batch's codes, of the photographs as taken, on directions spread over the half circle, ranks each among the
codes of `REFERENCE` more photographs drawn at random (encoded afresh, without gradient), and draws it toward the
prior's quantile at that rank: the sliced-Wasserstein cost of Kolouri et al. (2019, the SWAE) over a larger sample
than the batch. It is part of the reconstruction step (where the look-alike term pulls), from epoch `AFTER` + 1 on,
once the map has taken its first form, its weight growing over `RAMP` epochs.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .settings import Settings

DIRECTIONS = 32   # directions over the half circle, turned at random each step
REFERENCE = 400   # photographs beside the batch that each step ranks its codes among
AFTER = 5         # epochs of the reconstruction (and the critic) alone first
RAMP = 10         # epochs over which the weight then grows to its full value, so that the map is not jolted
PRIOR_DRAWS = 4096


class PriorShape:
    """A run's shape term over its n photographs (`see(rows)`: what the model sees of them); nothing when
    `Settings.shape` is 0."""

    def __init__(self, s: Settings, model, n: int, see: Callable[[torch.Tensor], torch.Tensor]):
        self.on, self.weight, self.std, self.n = bool(s.shape) and n > 2, s.shape, s.prior_std, n
        self.model, self.see = model, see

    def cost(self, codes: Callable[[], torch.Tensor], rows: torch.Tensor, epoch: int,
             g: torch.Generator) -> torch.Tensor | float:
        """The cost of the photographs at `rows`, whose codes (prior offsets, with gradient) `codes()` gives; `g`
        draws on the model's device."""
        if not self.on or epoch <= AFTER:
            return 0.0
        z = codes()
        with torch.no_grad():
            others = torch.randperm(self.n, generator=g, device=g.device)[:REFERENCE].to(rows.device)
            ref = torch.cat([z.detach(), self.model.parts(self.see(others))[1]]).float()
        with torch.autocast(z.device.type, enabled=False):  # ranks and quantiles in 32 bits, also under bf16
            dirs = _directions(z.shape[1], g)
            live = z.float() @ dirs                                        # (batch, directions)
            ranked = torch.sort(ref @ dirs, 0).values.T.contiguous()       # (directions, reference)
            q = (torch.searchsorted(ranked, live.detach().T.contiguous()).T + 0.5) / ranked.shape[1]
            draws = torch.sort(self.model.prior.sample(PRIOR_DRAWS, g).float() @ dirs, 0).values
            target = draws[(q * PRIOR_DRAWS).long().clamp_(0, PRIOR_DRAWS - 1),
                           torch.arange(dirs.shape[1], device=draws.device)]
            return self.weight * min(1.0, (epoch - AFTER) / RAMP) * (((live - target) / self.std) ** 2).mean()


def _directions(d: int, g: torch.Generator) -> torch.Tensor:
    """(d, DIRECTIONS) unit directions: in 2-D evenly spread over the half circle from a random start, else random."""
    if d == 2:
        turn = torch.rand(1, generator=g, device=g.device) + torch.arange(DIRECTIONS, device=g.device)
        a = turn * math.pi / DIRECTIONS
        return torch.stack([a.cos(), a.sin()])
    v = torch.randn(d, DIRECTIONS, generator=g, device=g.device)
    return v / v.norm(dim=0, keepdim=True)
