"""The look-alike term (`Settings.neighbours`): figurines alike in what tells cultures apart stay near in the map.

Each code is drawn toward one of its figurine's nearest neighbours in the descriptor space the shares are read
in (`Settings.looks`, the default) or in the PCA space of the model's inputs,
and a few other codes of the batch are kept further away than it by a margin, so that nothing is pushed out
of the prior (as parametric UMAP does). The graph is found once per run, before training.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .settings import Neighbourhood, Settings

View = Callable[[torch.Tensor], torch.Tensor]  # rows -> what the model sees of those images


@torch.no_grad()
def neighbour_graph(view: View, n: int, seed: int, a: Neighbourhood = Neighbourhood(),
                    batch_size: int = 500) -> torch.Tensor:
    """(n, a.k) indices of each image's nearest neighbours (itself left out) in the PCA space of what the model
    sees (`view(rows)`); the PCA fitted on at most `a.fit_rows` drawn at random."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    def flat(rows: torch.Tensor) -> np.ndarray:
        return np.concatenate([view(rows[i:i + batch_size]).flatten(1).float().cpu().numpy()
                               for i in range(0, len(rows), batch_size)])

    fit = flat(torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(n)[:a.fit_rows])))
    pca = PCA(min(a.pca, len(fit) - 1, fit.shape[1]), random_state=seed).fit(fit)
    pcs = np.concatenate([pca.transform(flat(torch.arange(i, min(i + batch_size, n))))
                          for i in range(0, n, batch_size)])
    k = min(a.k, len(pcs) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(pcs).kneighbors(pcs)[1]
    # drop each image itself (not always listed first: a duplicate photograph is as near)
    not_self = np.argsort(idx == np.arange(len(idx))[:, None], axis=1, kind="stable")
    return torch.from_numpy(np.take_along_axis(idx, not_self, 1)[:, :k].copy())


def descriptor_looks(x: np.ndarray, is_source: np.ndarray | None = None) -> np.ndarray:
    """Descriptors (n, features) in the space the shares are read in: standardised and projected on components
    fitted to the source figurines (`is_source`; all of them where that is not given or not a proper part)."""
    from .influence import InfluenceSettings, descriptor_space

    source = is_source if is_source is not None and 1 < is_source.sum() < len(x) else np.ones(len(x), bool)
    return descriptor_space(x, source, InfluenceSettings().components)


def neighbour_cost(z: torch.Tensor, z_near: torch.Tensor, a: Neighbourhood = Neighbourhood()) -> torch.Tensor:
    """The margin cost of codes (in prior sds) against their neighbours' codes and other codes of the batch."""
    d_near = ((z - z_near) ** 2).sum(1) / a.kernel ** 2
    d_other = torch.stack([((z - z.roll(r, 0)) ** 2).sum(1) for r in range(1, a.negatives + 1)]) / a.kernel ** 2
    return a.weight * F.relu(d_near[None] - d_other + 1.0).mean()


class Neighbours:
    """A run's look-alike term, its graph found once over `view`, the model's view of all n images, or with
    `looks` over each image's descriptors (`Settings.looks`); nothing when `neighbours` is off, before epoch
    `after` + 1, or for a batch of one."""

    def __init__(self, s: Settings, view: View, n: int, device: torch.device, looks: np.ndarray | None = None):
        self.a = s.neighbourhood
        if looks is not None:
            view = lambda rows: torch.from_numpy(looks[rows.numpy()])  # noqa: E731
        self.near = neighbour_graph(view, n, s.seed, self.a).to(device) if s.neighbours and n > 2 else None

    def cost(self, model, codes: torch.Tensor, rows: torch.Tensor, epoch: int, see: View,
             g: torch.Generator) -> torch.Tensor | float:
        """The cost of the batch at `rows`, whose codes are `codes`: the first `share` of it, each against one of
        its neighbours drawn at random (with `g`), as `see(rows)` shows them to the encoder."""
        if self.near is None or epoch <= self.a.after or len(rows) < 2:
            return 0.0
        h = max(2, round(len(rows) * self.a.share))
        pick = torch.randint(self.near.shape[1], (h,), generator=g).to(self.near.device)
        near = model.encode(see(self.near[rows[:h], pick]))
        return neighbour_cost(codes[:h] / model.code_scale, near / model.code_scale, self.a)
