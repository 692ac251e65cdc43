"""The AAE with a scikit-learn / umap-learn face: settings in the constructor, `fit`, `transform`.

    codes = AAE("fast", epochs=30).fit_transform(images, cultures)
    pcs, umap_xy = UMAPBaseline().fit_transform(images)   # from core.embed
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from .devices import pick_device
from .model import encode_images, load_model
from .runs import Run
from .settings import Settings
from .train import train


class AAE:
    """Adversarial Autoencoder on uint8 images (n, H, W, 3). Fitted attributes end in `_`."""

    def __init__(self, preset: str = "fast", **settings):
        self.preset = preset
        self.settings = settings

    def get_params(self, deep: bool = True) -> dict:
        return {"preset": self.preset, **self.settings}

    def fit(self, X: np.ndarray, y=None, local=None) -> "AAE":
        """Train on images X; y (culture labels) is used only for `balanced=True` sampling, `local`
        (whether each image is of the target culture) only by a `local` run: without it the run is not local."""
        s = Settings.from_preset(self.preset, **{"image_size": X.shape[1], **self.settings})
        self.settings_ = replace(s, local=s.local and local is not None)
        cultures = pd.factorize(np.asarray(y))[0] if y is not None else None
        result = train(self.settings_, X, cultures, local=local)
        self.model_, self.history_ = result.model, result.history
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Latent codes (n, latent_dim)."""
        return encode_images(self.model_, X)

    def fit_transform(self, X: np.ndarray, y=None, local=None) -> np.ndarray:
        return self.fit(X, y, local).transform(X)

    @torch.no_grad()
    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """Images the decoder draws at codes Z, as uint8 (n, H, W, 3)."""
        dev = next(self.model_.parameters()).device
        return self.model_.denormalise(self.model_.decode(torch.as_tensor(np.asarray(Z, np.float32), device=dev)))

    @classmethod
    def load(cls, run_dir, device: str = "auto") -> "AAE":
        """The fitted estimator of a run folder's checkpoint."""
        ckpt = Run(run_dir).require().load_checkpoint("cpu")
        est = cls(ckpt["settings"]["preset"])
        est.settings_ = Settings.from_run(ckpt["settings"])
        est.model_ = load_model(ckpt, pick_device(device))
        est.history_ = pd.DataFrame(ckpt["history"])
        return est
