"""The Adversarial Autoencoder: encoder, decoder, discriminator on the codes, and the prior.

`dense` is the reference study's model (flatten -> 1000 -> 1000 -> 2, mirrored decoder, discriminator
1000 -> 1000 -> 1); `conv` is a small convolutional encoder/decoder with the same interface. With `clusters`
K > 0 the encoder also gives a categorical code, and the 2-D map is a learned cluster head plus an offset from it
(Makhzani et al. 2015, section 6, where the offset is called the style): `encode` returns that map, `parts` the
two codes. The model also holds its costs beyond the reconstruction (`critic_cost`, `generator_cost`,
`head_cost`, `label_cost`), each nothing where its option is off, and `encode_images` for inference.
Images enter as uint8 (n, H, W, 3) and are normalised on the model's device (mean 0.5, sd 0.5); with
`style="form"` the model sees each figure's brightness standardised within it, without colour (`form`).
With `local` the decoder is also told whether it draws a figurine of the target culture, so that what all of
them share and no source has (local clay, bases, coatings) is drawn from that flag, not from the map.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .settings import Settings


def dense_encoder(s: Settings) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * s.image_size ** 2, s.width), nn.ReLU(),
                         nn.Linear(s.width, s.width), nn.ReLU(), nn.Linear(s.width, s.latent_dim + s.clusters))


def dense_decoder(s: Settings) -> nn.Module:
    return nn.Sequential(nn.Linear(s.latent_dim + s.local, s.width), nn.ReLU(), nn.Linear(s.width, s.width), nn.ReLU(),
                         nn.Linear(s.width, 3 * s.image_size ** 2), nn.Tanh(),
                         nn.Unflatten(1, (3, s.image_size, s.image_size)))


def _channels(s: Settings) -> list[int]:
    """Channels after each stride-2 layer, from the image size down to 8 x 8."""
    n = int(math.log2(s.image_size // 8))
    return [min(s.width * 2 ** i, 8 * s.width) for i in range(n)]


def conv_encoder(s: Settings) -> nn.Module:
    layers, c_in = [], 3
    for c in _channels(s):
        layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
        c_in = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * 64, s.latent_dim + s.clusters))


def conv_decoder(s: Settings) -> nn.Module:
    chans = _channels(s)[::-1]
    layers = [nn.Linear(s.latent_dim + s.local, chans[0] * 64), nn.LeakyReLU(0.2), nn.Unflatten(1, (chans[0], 8, 8))]
    for c_in, c in zip(chans, chans[1:]):
        layers += [nn.ConvTranspose2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1), nn.Tanh())


def discriminator(s: Settings, n_in: int | None = None) -> nn.Module:
    """D(z), or D(z, label) for a guided run with a mixture prior: the code with a one-hot of its source (or
    "unlabelled"); with `n_in`, a discriminator of that many inputs (the categorical code's)."""
    w = s.disc_width
    n_in = n_in or s.latent_dim + (s.prior_components + 1 if s.guided and not s.clusters else 0)
    return nn.Sequential(nn.Linear(n_in, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 1))


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of critic logits against all-real or all-fake."""
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits) if real else torch.zeros_like(logits))


class Judged(NamedTuple):
    """What the critic step leaves for the generator step and the metrics."""
    fake: torch.Tensor            # the codes as the critic saw them (with its input noise), still attached
    y: torch.Tensor | None        # with clusters: the encoder's softmax over them
    d_real: torch.Tensor          # the critic's logits on prior draws
    d_fake: torch.Tensor          # and on the codes

    def accuracy(self) -> torch.Tensor:
        return ((self.d_real > 0).float().mean() + (self.d_fake < 0).float().mean()) / 2


class Prior(nn.Module):
    """Gaussian N(0, sd^2 I), or a mixture of Gaussians centred on a circle of radius 2 sd."""

    def __init__(self, s: Settings):
        super().__init__()
        self.kind, self.std, self.k = s.prior, s.prior_std, s.prior_components
        angles = torch.arange(self.k) * 2 * math.pi / self.k
        means = torch.zeros(self.k, s.latent_dim)
        means[:, 0] = 2 * s.prior_std * torch.cos(angles)
        if s.latent_dim > 1:
            means[:, 1] = 2 * s.prior_std * torch.sin(angles)
        self.register_buffer("means", means, persistent=False)

    def sample(self, n: int, generator: torch.Generator | None = None,
               components: torch.Tensor | None = None) -> torch.Tensor:
        """n draws; with `components` (a mixture's index per draw, -1 for any) from the components given."""
        dev = self.means.device
        if self.kind == "gaussian":
            return self.std * torch.randn(n, self.means.shape[1], device=dev, generator=generator)
        pick = torch.randint(self.k, (n,), device=dev, generator=generator)
        if components is not None:
            pick = torch.where(components >= 0, components, pick)
        return self.means[pick] + self.std / 2 * torch.randn(n, self.means.shape[1], device=dev, generator=generator)


FIGURE_LEVEL = 10 / 127.5  # summed distance of a pixel's channels from neutral grey above which it is figure
FORM_SD = 0.3              # one sd of a figure's brightness, in model units


def form(x: torch.Tensor) -> torch.Tensor:
    """Shape and relief without colour or tone: normalised images (n, 3, H, W) -> each figure's brightness,
    standardised over its own pixels (those off the neutral background), on a background of 0.

    Clay colour, firing, lighting and coatings that brighten or darken a whole figurine cancel out; folds,
    contours and the silhouette stay. On a background that was not flattened the whole image is the figure.
    """
    lum = x.mean(1, keepdim=True)
    fig = (x.abs().sum(1, keepdim=True) > FIGURE_LEVEL).to(x.dtype)
    n = fig.sum((2, 3), keepdim=True).clamp_min(1)
    mean = (lum * fig).sum((2, 3), keepdim=True) / n
    sd = (((lum - mean) ** 2 * fig).sum((2, 3), keepdim=True) / n).sqrt()
    out = (fig * (lum - mean) / (sd + 1 / 127.5) * FORM_SD).clamp(-1, 1)
    return out.expand(-1, 3, -1, -1).contiguous()


class AAEModel(nn.Module):
    """Encoder Q(z|x), decoder P(x|z), discriminator D(z) and the prior p(z) of one run."""

    def __init__(self, s: Settings):
        super().__init__()
        self.settings = s
        self.encoder = dense_encoder(s) if s.arch == "dense" else conv_encoder(s)
        self.decoder = dense_decoder(s) if s.arch == "dense" else conv_decoder(s)
        self.discriminator = discriminator(s)
        self.prior = Prior(s)
        if s.clusters:  # heads start on a circle of radius head_gap sd, in prior sds; a critic for the category
            angles = torch.arange(s.clusters) * 2 * math.pi / s.clusters
            heads = torch.zeros(s.clusters, s.latent_dim)
            heads[:, 0] = s.head_gap * torch.cos(angles)
            if s.latent_dim > 1:
                heads[:, 1] = s.head_gap * torch.sin(angles)
            self.heads = nn.Parameter(heads)
            self.cat_discriminator = discriminator(s, s.clusters)
        # With scale_codes the networks see codes in units of the prior's sd (a fixed rescaling of the
        # encoder's last layer and the discriminator's first): Adam's steps then fit the prior's scale.
        self.code_scale = s.prior_std if s.scale_codes else 1.0

    @staticmethod
    def to_unit(x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> float (n, 3, H, W) in [-1, 1], computed on x's device."""
        return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> what the model sees of them: `to_unit`, then the run's style."""
        x = self.to_unit(x)
        return form(x) if self.settings.style == "form" else x

    @staticmethod
    def denormalise(x: torch.Tensor):
        """float (n, 3, H, W) in [-1, 1] -> uint8 numpy (n, H, W, 3)."""
        return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(cluster logits or None, code) of normalised images: with clusters, the code is the offset from the
        cluster head, and what the prior is matched to."""
        out = self.encoder(x)
        k = self.settings.clusters
        return (out[:, :k], out[:, k:] * self.code_scale) if k else (None, out * self.code_scale)

    def place(self, logits: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """The map: the code, plus with clusters the soft-assigned cluster head."""
        if logits is None:
            return z
        return logits.float().softmax(1).to(z.dtype) @ self.heads.to(z.dtype) * self.code_scale + z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.place(*self.parts(x))

    def decode(self, z: torch.Tensor, local: torch.Tensor | None = None) -> torch.Tensor:
        """Images drawn from codes; with `Settings.local`, as figurines of the target culture where `local` (one
        flag per code; default: as source figurines)."""
        z = z / self.code_scale
        if self.settings.local:
            flag = torch.zeros(len(z), device=z.device) if local is None else local
            z = torch.cat([z, flag.to(z.dtype)[:, None]], 1)
        return self.decoder(z)

    def discriminate(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of "drawn from the prior"; a guided run with a mixture prior also gets each code's source
        index (-1: unlabelled)."""
        x = z / self.code_scale
        if self.settings.guided and not self.settings.clusters:
            x = torch.cat([x, nn.functional.one_hot(label + 1, self.prior.k + 1).to(x.dtype)], 1)
        return self.discriminator(x).squeeze(1)

    @property
    def critics(self) -> list[nn.Module]:
        """The discriminator, and with clusters the category's."""
        return [self.discriminator] + ([self.cat_discriminator] if self.settings.clusters else [])

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """What the reconstruction step trains: encoder, decoder and any cluster heads."""
        heads = [self.heads] if self.settings.clusters else []
        return [*self.encoder.parameters(), *self.decoder.parameters(), *heads]

    def critic_cost(self, logits: torch.Tensor | None, z: torch.Tensor, label: torch.Tensor | None, noise: float,
                    g: torch.Generator) -> tuple[torch.Tensor, Judged]:
        """The critics' cost: prior draws are real, the (detached) codes fake, both blurred by `noise` (instance
        noise, in code units); with clusters, one-hot draws are real and the encoder's softmax fake too. A guided
        run draws each labelled figurine's prior sample from its own component."""
        m, dev = len(z), z.device
        real = self.prior.sample(m, g, label)
        eps = noise * torch.randn(2, m, z.shape[1], device=dev, generator=g)
        d_real = self.discriminate(real + eps[0], label)
        d_fake = self.discriminate(z.detach() + eps[1], label)
        cost = bce(d_real, True) + bce(d_fake, False)
        y = None
        if self.settings.clusters:
            k = self.settings.clusters
            y = logits.float().softmax(1)
            onehot = F.one_hot(torch.randint(k, (m,), device=dev, generator=g), k)
            cost = cost + (bce(self.cat_discriminator(onehot.to(y.dtype)).squeeze(1), True)
                           + bce(self.cat_discriminator(y.detach()).squeeze(1), False))
        return cost, Judged(z + eps[1], y, d_real, d_fake)

    def generator_cost(self, judged: Judged, label: torch.Tensor | None) -> torch.Tensor:
        """The encoder's cost as generator: the (frozen) critics should call its codes, and softmax, real."""
        cost = bce(self.discriminate(judged.fake, label), True)
        if self.settings.clusters:
            cost = cost + bce(self.cat_discriminator(judged.y).squeeze(1), True)
        return cost

    def head_cost(self) -> torch.Tensor | float:
        """With clusters, Makhzani et al.'s cost keeping the heads apart: the mean shortfall of each pair's distance
        (in prior sds) below `head_gap`; else nothing."""
        if not self.settings.clusters:
            return 0.0
        d = torch.cdist(self.heads, self.heads)
        i, j = torch.triu_indices(len(self.heads), len(self.heads), 1, device=self.heads.device)
        return torch.relu(self.settings.head_gap - d[i, j]).mean()

    def label_cost(self, logits: torch.Tensor | None, label: torch.Tensor | None) -> torch.Tensor | float:
        """A guided run with clusters: each labelled figurine's cross-entropy against its source's cluster; else
        nothing (a guided mixture prior is matched per component by the critic instead)."""
        if not (self.settings.clusters and self.settings.guided):
            return 0.0
        seen = label >= 0
        return F.cross_entropy(logits[seen].float(), label[seen]) if seen.any() else 0.0


def normalised_batches(model: AAEModel, images, batch_size: int = 500):
    """uint8 images (array, memory map or tensor) in normalised batches on the model's device."""
    dev = next(model.parameters()).device
    for i in range(0, len(images), batch_size):
        b = images[i:i + batch_size]
        yield model.normalise((b if torch.is_tensor(b) else torch.from_numpy(np.array(b))).to(dev))


@torch.no_grad()
def encode_images(model: AAEModel, images, batch_size: int = 500, offsets: bool = False):
    """Codes of uint8 images (n, H, W, 3), in batches, on the model's device: their place on the map; with
    `offsets`, (place, code) from the same pass (for a cluster-head model the code is the offset from its head,
    which the prior is matched to; without clusters the two are the same)."""
    was_training = model.training
    model.eval()
    places, codes = [], []
    for x in normalised_batches(model, images, batch_size):
        logits, z = model.parts(x)
        places.append(model.place(logits, z).float().cpu())
        codes.append(z.float().cpu())
    model.train(was_training)
    empty = np.zeros((0, model.settings.latent_dim), np.float32)
    place, z = (torch.cat(places).numpy(), torch.cat(codes).numpy()) if places else (empty, empty)
    return (place, z) if offsets else place


def load_model(ckpt: dict, device: str | torch.device = "cpu") -> AAEModel:
    """The trained model from a checkpoint dict (see Run.load_checkpoint)."""
    model = AAEModel(Settings.from_run(ckpt["settings"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
