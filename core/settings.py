"""Every setting of a training run, its presets and its valid ranges, in one place (CLI, app and API)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .errors import UserError

PRESETS = {
    # The reference study's model and schedule (see DESIGN.md), with the stabilisers the AAE literature
    # uses switched on; `paper_exact=True` switches them off and reproduces the study's settings exactly.
    "paper": dict(arch="dense", image_size=256, width=1000, disc_width=1000, prior_std=5.0, batch_size=100,
                  epochs=200, lr=1e-3, beta1=0.9, snapshot_every=20, checkpoint_every=20, augment=False,
                  local=False, neighbours=False),
    # A small convolutional autoencoder for CPUs and laptops: better reconstructions in minutes. Each view
    # varied at random, because that is what separates the cultures best on unseen labels; the target culture's
    # shared making told to the decoder and pixel neighbours kept together, because that is what places the
    # target figurines beside the sources they follow (README, bench/quality.py, bench/influence.py).
    "fast": dict(arch="conv", image_size=64, width=16, disc_width=256, prior_std=5.0, batch_size=100,
                 epochs=30, lr=2e-3, beta1=0.9, snapshot_every=5, checkpoint_every=5, augment=True,
                 local=True, neighbours=True),
}
# What the study did, where our defaults differ from it.
PAPER_EXACT = dict(disc_lr=None, gen_lr=None, adv_beta1=None, disc_noise=0.0, scale_codes=False, balanced=False,
                   background="keep", style="colour", guided=False,
                   augment=False, clusters=0, local=False, neighbours=False)
# What counts as style: what the model is shown of each photograph (see model.AAEModel.normalise).
STYLES = {"form": "shape and relief: each figure's brightness standardised within it, colour dropped, so that "
                  "clay colour, firing and coatings do not decide",
          "colour": "everything photographed: colour, tone and surface count as style"}


@dataclass(frozen=True)
class Settings:
    """All settings of a run. Build with `Settings.from_preset(name, **overrides)`."""

    preset: str = "fast"
    # model
    arch: str = "conv"             # "dense" (the paper's MLP) or "conv"
    image_size: int = 64
    background: str = "flatten"    # "flatten": studio background -> one neutral grey; "keep": as photographed
    style: str = "form"            # what counts as style: a key of STYLES
    latent_dim: int = 2
    width: int = 16                # dense: hidden units; conv: channels of the first layer
    disc_width: int = 256
    prior: str = "gaussian"        # "gaussian" or "mixture" (components on a circle)
    prior_std: float = 5.0
    prior_components: int = 8
    clusters: int = 0              # K > 0: the map is one of K learned cluster heads plus a style code
    guided: bool = False           # source labels guide the map: one prior component (or cluster) per source
    label_holdout: float = 0.4     # share of each source culture whose labels a guided run never sees
    augment: bool = True           # the encoder sees each view framed, lit and partly hidden at random
    local: bool = True             # the decoder is told which figurines are of the target culture: what they all
    #                                share (local clay, bases, coatings) need not take a place in the map
    neighbours: bool = True        # figurines alike in their pixels are kept near each other in the map (from
    #                                the 6th epoch on, as parametric UMAP does), so the map reads as UMAP's does
    scale_codes: bool = True       # the encoder's last layer works in units of the prior's sd
    # training
    epochs: int = 30
    batch_size: int = 100
    lr: float = 2e-3               # reconstruction step (encoder + decoder)
    beta1: float = 0.9
    disc_lr: float | None = 5e-4   # discriminator step; None = lr
    gen_lr: float | None = 5e-4    # generator step (encoder vs discriminator); None = lr. With Adam per
    #                                step this is what sets the reconstruction/adversarial balance.
    adv_beta1: float | None = 0.5  # Adam beta1 of both adversarial steps; None = beta1
    disc_noise: float = 0.1        # sd of noise on the discriminator's inputs, in prior sds
    paper_exact: bool = False      # apply PAPER_EXACT: the study's settings, stabilisers off
    balanced: bool = False         # sample each culture equally often (the study's proposed fix)
    seed: int = 0
    device: str = "auto"           # auto, cpu, cuda, cuda:N, mps
    amp: bool = True               # bf16 autocast on CUDA
    snapshot_every: int = 5
    snapshot_size: int = 1000
    checkpoint_every: int = 5

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides) -> "Settings":
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise UserError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        s = cls(preset=preset, **PRESETS[preset])
        s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
        return s.validated()

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        """Settings from a dict (a settings file, a run's config); what it leaves out comes from its preset."""
        names = {f.name for f in fields(cls)}
        preset = d.get("preset", "fast")
        base = PRESETS.get(preset, {}) if isinstance(preset, str) else {}
        return cls(**{**base, **{k: v for k, v in d.items() if k in names}}).validated()

    @classmethod
    def from_run(cls, d: dict) -> "Settings":
        """A run's stored settings; runs from before `style` existed were shown colour photographs, runs
        from before `augment` existed saw each image as it is, and those from before `local` and
        `neighbours` had neither."""
        return cls.from_dict({"style": "colour", "augment": False, "local": False, "neighbours": False, **d})

    def to_dict(self) -> dict:
        return asdict(self)

    def effective(self) -> "Settings":
        """The settings training actually uses: `paper_exact` applied, None learning rates filled in."""
        s = replace(self, **PAPER_EXACT) if self.paper_exact else self
        return replace(s, disc_lr=s.disc_lr or s.lr, gen_lr=s.gen_lr or s.lr,
                       adv_beta1=s.beta1 if s.adv_beta1 is None else s.adv_beta1)

    def validated(self) -> "Settings":
        import numbers
        import re

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(msg)

        for f in fields(self):  # types first (a settings file may hold anything), then ranges
            v, kind = getattr(self, f.name), str(f.type).split(" |")[0]
            ok = (v is None and "None" in str(f.type)) or {
                "bool": isinstance(v, bool), "str": isinstance(v, str),
                "int": isinstance(v, numbers.Integral) and not isinstance(v, bool),
                "float": isinstance(v, numbers.Real) and not isinstance(v, bool)}[kind]
            want = {"bool": "true or false", "str": "text"}.get(kind, "a number")
            need(ok, f"{f.name.replace('_', ' ')} must be {want}, got {str(v)[:40]!r}")
        need(self.preset in PRESETS, f"unknown preset {self.preset!r}; choose one of: {', '.join(PRESETS)}")
        need(self.arch in ("dense", "conv"), f"arch must be dense or conv, got {self.arch!r}")
        need(8 <= self.image_size <= 1024, f"image size must be 8..1024 pixels, got {self.image_size}")
        if self.arch == "conv":
            need(self.image_size >= 16 and self.image_size & (self.image_size - 1) == 0,
                 f"the conv model needs a power-of-two image size of at least 16, got {self.image_size}")
        need(self.background in ("flatten", "keep"), f"background must be flatten or keep, got {self.background!r}")
        need(self.style in STYLES, f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        need(1 <= self.latent_dim <= 512, f"latent size must be 1..512, got {self.latent_dim}")
        need(1 <= self.width <= 100_000 and 1 <= self.disc_width <= 100_000, "widths must be positive")
        need(self.prior in ("gaussian", "mixture"), f"prior must be gaussian or mixture, got {self.prior!r}")
        need(self.clusters == 0 or 2 <= self.clusters <= 64, f"clusters must be 0 (none) or 2..64, got {self.clusters}")
        need(not (self.clusters and self.prior == "mixture"),
             "a cluster-head map has its own categorical code: use the gaussian prior for its style part")
        need(0.01 <= self.prior_std <= 1000, f"prior sd must be between 0.01 and 1000, got {self.prior_std}")
        need(1 <= self.prior_components <= 1000, "the mixture prior needs 1..1000 components")
        need(0.1 <= self.label_holdout <= 0.9, f"the label hold-out must be in 0.1..0.9, got {self.label_holdout}")
        need(1 <= self.epochs <= 100_000, f"epochs must be 1..100000, got {self.epochs}")
        need(0 <= self.seed < 2**31, f"seed must be 0..{2**31 - 1}, got {self.seed}")
        need(self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}")
        for name in ("lr", "disc_lr", "gen_lr"):
            v = getattr(self, name)
            need(v is None or 0 < v <= 1, f"{name.replace('_', ' ')} must be in (0, 1], got {v}")
        for name in ("beta1", "adv_beta1"):
            v = getattr(self, name)
            need(v is None or 0 <= v < 1, f"{name} must be in [0, 1), got {v}")
        need(0 <= self.disc_noise <= 10, f"discriminator noise must be 0..10 prior sds, got {self.disc_noise}")
        need(self.snapshot_every >= 1 and self.checkpoint_every >= 1 and self.snapshot_size >= 1,
             "snapshot and checkpoint intervals must be at least 1")
        need(re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", self.device) is not None,
             f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        return self
