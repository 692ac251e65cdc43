"""Every setting of a training run, in one list: its default, label, help, CLI flag, group and range.

The CLI's `train` flags (`core.cli`) and the Train page's widgets (`pages/train.py`) are made from the
fields' metadata, so a new setting is added here and where it is used, nowhere else. `Settings.resolve`
decides what a run on one collection really uses.
"""
from __future__ import annotations

import numbers
import re
from dataclasses import Field, asdict, dataclass, field, fields, replace

import numpy as np
import pandas as pd

from .errors import UserError

PRESETS = {
    # The reference study's model and schedule (see DESIGN.md), with the stabilisers the AAE literature
    # uses switched on; `paper_exact=True` switches them off and reproduces the study's settings exactly.
    "paper": dict(arch="dense", image_size=256, width=1000, disc_width=1000, prior_std=5.0, batch_size=100,
                  epochs=200, lr=1e-3, beta1=0.9, snapshot_every=20, checkpoint_every=20, augment=False,
                  local=False, neighbours=False, shape=0.0),
    # A small convolutional autoencoder for CPUs and laptops: better reconstructions in minutes. Each view
    # varied at random, because that is what separates the cultures best on unseen labels; the target culture's
    # shared making told to the decoder and look-alikes kept together, because that is what places the
    # target figurines beside the sources they follow; the prior's shape held over hundreds of photographs,
    # because the look-alikes alone clump (docs/FINDINGS.md, bench/quality.py, bench/influence.py).
    "fast": dict(arch="conv", image_size=64, width=16, disc_width=256, prior_std=5.0, batch_size=100,
                 epochs=30, lr=2e-3, beta1=0.9, snapshot_every=5, checkpoint_every=5, augment=True,
                 local=True, neighbours=True, shape=2.0),
}
# What the study did, where our defaults differ from it.
PAPER_EXACT = dict(disc_lr=None, gen_lr=None, adv_beta1=None, disc_noise=0.0, scale_codes=False, balanced=False,
                   background="keep", style="colour", guided=False,
                   augment=False, clusters=0, local=False, neighbours=False, shape=0.0)
# What counts as style: what the model is shown of each photograph (see model.AAEModel.normalise).
STYLES = {"form": "shape and relief: each figure's brightness standardised within it, colour dropped, so that "
                  "clay colour, firing and coatings do not decide",
          "colour": "everything photographed: colour, tone and surface count as style"}
BACKGROUNDS = {"separate": "each figure is cut out of its backdrop (studio paper, velvet, spotlight, cloth) and set on "
                           "one neutral grey, so that nothing groups figurines by how they were photographed",
               "flatten": "only a plain studio backdrop (a light gradient) becomes grey; dark, spot-lit and cloth "
                          "backdrops stay (the default of earlier runs)",
               "keep": "as photographed"}
MATCHED = {"views": "the varied views the encoder learns from", "photographs": "the photographs as taken, whose "
           "codes the map shows, so that the map itself has the prior's shape"}
LOOKS = {"descriptors": "in the descriptor space the Influence numbers are read in (HOG: shape and relief, blind to "
         "clay colour; its axes fitted to the source figurines, so that local making does not decide)",
         "pixels": "in what the model sees of them (a PCA of its pixels; the default of earlier runs)"}
GROUPS = ("preset", "basic", "expert")  # set by the preset alone; shown up front; folded away
RESUMABLE = ("epochs", "device")        # what a resumed run may change


def setting(default, label: str, help: str, group: str = "expert", range: tuple | None = None,
            choices: dict | tuple | None = None, options: tuple | None = None, flag: bool = True,
            architecture: bool = False) -> Field:
    """A field of Settings with what the CLI, the Train page and the validation need to know of it.

    `range`: the (lowest, highest) value allowed; `choices`: the values allowed (a dict: with what each
    means); `options`: the values the Train page offers of a wider range; `flag`: whether the CLI has
    `--name`; `architecture`: whether the setting shapes a checkpoint's weights."""
    assert group in GROUPS
    meta = dict(label=label, help=help, group=group, range=range, choices=choices, options=options, flag=flag,
                architecture=architecture)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Augmentation:
    """How far `Settings.augment` varies each view: mirror, scale, rotation and shift of the framing, one hidden
    patch; on colour, also brightness, contrast and saturation of the figure (see core.augment)."""

    scale: float = 1.15          # rescaled by 1/scale .. scale
    degrees: float = 10.0        # rotated by up to this
    shift: float = 0.08          # shifted by up to this share of the side
    area: tuple = (0.05, 0.25)   # the hidden patch's share of the image
    brightness: float = 0.1      # colour: figure brightness moved by up to this (in [-1, 1] units)
    contrast: float = 1.25       # colour: contrast times 1/contrast .. contrast
    saturation: float = 1.3      # colour: saturation times 1/saturation .. saturation


@dataclass(frozen=True)
class Neighbourhood:
    """The neighbour term of `Settings.neighbours` (see core.neighbours): each code is drawn toward one of its
    figurine's `k` nearest neighbours in the `pca`-D PCA space of what `Settings.looks` names (fitted on `fit_rows`),
    and `negatives` other codes of the batch are kept further away than it by (`kernel` prior sd)^2, with
    weight `weight`, from epoch `after` + 1 on; the first `share` of each batch stands for it."""

    k: int = 15
    pca: int = 50
    fit_rows: int = 5000
    weight: float = 0.2
    kernel: float = 0.5
    negatives: int = 5
    after: int = 5
    share: float = 0.75


NESTED = {"Augmentation": Augmentation, "Neighbourhood": Neighbourhood}


@dataclass(frozen=True)
class Settings:
    """All settings of a run. Build with `Settings.from_preset(name, **overrides)`."""

    preset: str = setting("fast", "Preset", "fast: a small convolutional AAE at 64 px, minutes on a CPU; paper: "
                          "the study's dense 1000-1000-2 AAE at 256 px, for a GPU", "preset", choices=tuple(PRESETS))
    # model
    arch: str = setting("conv", "Network", "dense: the study's fully connected AAE; conv: a small convolutional "
                        "one with the same interface", "preset", choices=("dense", "conv"), architecture=True)
    image_size: int = setting(64, "Image size (px)", "the detail the model sees: larger shows finer relief and "
                              "trains slower (64: minutes on a CPU; 256: a GPU)", "basic", range=(8, 1024),
                              options=(16, 32, 64, 128, 256), architecture=True)
    background: str = setting("separate", "Backgrounds", "what the model is shown of each photograph's backdrop",
                              "basic", choices=BACKGROUNDS)
    style: str = setting("form", "What counts as style", "form suits terracottas: local clay, firing and coatings, "
                         "shared by every figurine made in one place, are not read as influence", "basic",
                         choices=STYLES, architecture=True)
    latent_dim: int = setting(2, "Latent size", "dimensions of each code; Explore draws the first two, so 2 gives a "
                              "map read whole", range=(1, 512), architecture=True)
    width: int = setting(16, "Autoencoder width", "units (dense) or first-layer channels (conv): more capacity sees "
                         "finer differences, trains slower and can memorise a small collection",
                         range=(1, 100_000), architecture=True)
    disc_width: int = setting(256, "Critic width", "the discriminator's hidden units", range=(1, 100_000),
                              architecture=True)
    prior: str = setting("gaussian", "Prior", "gaussian: one cloud; mixture: Gaussians on a circle of radius 2 sd, "
                         "which pulls the figurines into separate groups (a guided run always uses one per source "
                         "culture)", choices=("gaussian", "mixture"), architecture=True)
    prior_std: float = setting(5.0, "Prior sd", "the map's scale (its circles on Explore): units, not neighbours",
                               range=(0.01, 1000))
    prior_components: int = setting(8, "Mixture components", "Gaussians on the mixture prior's circle",
                                    range=(1, 1000), architecture=True)
    clusters: int = setting(0, "Cluster heads", "0: none; K > 0 draws the map as K learned cluster heads plus each "
                            "figurine's offset from its head (Makhzani et al. 2015, section 6): groups sit apart, "
                            "and distances are read within a cluster; guided runs get one per source", range=(0, 64))
    head_gap: float = setting(6.0, "Cluster head gap (prior sd)", "cluster heads closer than this are pushed apart "
                              "(each head's cloud of offsets reaches 3 sd)", range=(0.0, 100.0))
    guided: bool = setting(False, "Guided by source labels", "The map gives each source culture its own region, "
                           "learned from the labels of all but the held-out share of each; the map's figures are then "
                           "measured on those alone. The numbers read in the descriptor space rarely change.", "basic")
    label_holdout: float = setting(0.4, "Labels held out", "the share of each source culture whose labels a guided "
                                   "run never sees: what it is judged on", range=(0.1, 0.9))
    augment: bool = setting(True, "Vary each view", "Each figurine is shown as another photograph might show it "
                            "(mirrored, closer, tilted, partly hidden; on colour, lit differently too), so its place "
                            "in the map does not hang on how it was photographed; it changes the map, not the numbers "
                            "read in the descriptor space.", "basic")
    matched: str = setting("views", "Codes matched to the prior", "whose codes the critic compares with the prior's "
                           "draws when each view is varied", choices=MATCHED)
    augmentation: Augmentation = setting(Augmentation(), "How far each view varies", Augmentation.__doc__,
                                         "preset", flag=False)
    local: bool = setting(True, "Tell it which are local", "What only the target culture has (local clay, bases, "
                          "coatings) is not given a place in the map, so its figurines sit nearer the sources whose "
                          "models they follow; the map's figures are then measured among the sources.", "basic")
    neighbours: bool = setting(True, "Keep look-alikes together", "Figurines that look alike are kept near each "
                               "other in the map, as UMAP does, so target figurines sit beside the sources "
                               f"they follow, from epoch {Neighbourhood.after + 1} on. It changes the map, not the "
                               "numbers read in the descriptor space.", "basic")
    looks: str = setting("descriptors", "Look-alikes judged", "where the look-alike term finds each figurine's nearest "
                         "neighbours", choices=LOOKS)
    shape: float = setting(2.0, "Hold the prior's shape", "how hard the codes of the photographs as taken are drawn "
                           "toward the prior's shape, over hundreds at a time where the critic sees a batch, so that "
                           "look-alikes kept together do not clump (0: the critic alone)", range=(0.0, 1000.0))
    neighbourhood: Neighbourhood = setting(Neighbourhood(), "The look-alike term", Neighbourhood.__doc__, "preset",
                                           flag=False)
    scale_codes: bool = setting(True, "Codes in prior sds", "the encoder's last layer works in units of the prior's "
                                "sd, so Adam's steps fit the prior's scale", "preset", architecture=True)
    # training
    epochs: int = setting(30, "Epochs", "passes over the collection; the losses on the Train page show when the map "
                          "has settled", "basic", range=(1, 100_000))
    batch_size: int = setting(100, "Batch size", "figurines per training step: mostly speed and memory",
                              range=(2, 100_000))
    lr: float = setting(2e-3, "Reconstruction learning rate", "how fast the autoencoder learns to redraw figurines; "
                        "too high and the map jumps between epochs", range=(1e-6, 1.0))
    beta1: float = setting(0.9, "Reconstruction momentum (Adam beta1)", "momentum of the reconstruction step",
                           range=(0.0, 0.999))
    disc_lr: float | None = setting(5e-4, "Critic learning rate", "how fast the discriminator learns to tell codes "
                                    "from prior draws; it keeps the map shaped like the prior, so distances compare "
                                    "(none: the reconstruction rate)", range=(1e-6, 1.0))
    gen_lr: float | None = setting(5e-4, "Prior-matching learning rate", "how hard the encoder is pushed toward the "
                                   "prior: higher fills the circles evenly at the cost of faithful reconstructions "
                                   "(none: the reconstruction rate)", range=(1e-6, 1.0))
    adv_beta1: float | None = setting(0.5, "Adversarial momentum (Adam beta1)", "momentum of both adversarial steps; "
                                      "0.5 keeps them stable (none: the reconstruction momentum)", range=(0.0, 0.999))
    disc_noise: float = setting(0.1, "Critic input noise (sd)", "blurs the critic's view a little, in prior sds, so "
                                "it cannot win outright, which keeps training stable", range=(0.0, 10.0))
    paper_exact: bool = setting(False, "Paper-exact", "the study's settings exactly, stabilisers off: to reproduce "
                                "its figures, not for new readings")
    balanced: bool = setting(False, "Each culture equally often", "Small cultures are shown as often as large ones, "
                             "so a large culture does not shape the map alone (the study's data was 70% one culture). "
                             "The shares on Influence already correct for culture sizes.", "basic")
    seed: int = setting(0, "Seed", "the random start: train two seeds to see how much of a map is chance",
                        range=(0, 2**31 - 1))
    device: str = setting("auto", "Device", "where to train: auto (a CUDA GPU, then Apple MPS, then the CPU), cpu, "
                          "cuda, cuda:N or mps", "basic")
    amp: bool = setting(True, "bf16 on CUDA", "compute in bfloat16 on a CUDA GPU (the weights stay 32-bit)")
    snapshot_every: int = setting(5, "Snapshot every (epochs)", "how often the Train page records the map of a fixed "
                                  "sample", range=(1, 100_000))
    snapshot_size: int = setting(1000, "Snapshot sample", "how many figurines each snapshot shows",
                                 range=(1, 1_000_000))
    checkpoint_every: int = setting(5, "Checkpoint every (epochs)", "how often a resumable checkpoint is written; "
                                    "Explore opens a run at its latest", range=(1, 100_000))

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides) -> "Settings":
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        s = cls(preset=preset, **PRESETS[preset])
        return replace(s, **{k: v for k, v in overrides.items() if v is not None}).validated()

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        """Settings from a dict (a settings file, a run's config); what it leaves out comes from its preset."""
        preset = d.get("preset", "fast")
        base = PRESETS.get(preset, {}) if isinstance(preset, str) else {}
        given = {}
        for f in fields(cls):
            if f.name in d:
                v, kind = d[f.name], NESTED.get(str(f.type))
                given[f.name] = _nested(kind, v, f.name) if kind and isinstance(v, dict) else v
        return cls(**{**base, **given}).validated()

    @classmethod
    def from_run(cls, d: dict) -> "Settings":
        """A run's stored settings; runs from before `style` existed were shown colour photographs, runs
        from before `augment` existed saw each image as it is, and those from before `local` and
        `neighbours` had neither, nor those before `shape` the prior's shape."""
        return cls.from_dict({"style": "colour", "augment": False, "local": False, "neighbours": False, "shape": 0.0,
                              **d})

    def to_dict(self) -> dict:
        return asdict(self)

    def effective(self) -> "Settings":
        """The settings training actually uses: `paper_exact` applied, None learning rates filled in."""
        s = replace(self, **PAPER_EXACT) if self.paper_exact else self
        return replace(s, disc_lr=s.disc_lr or s.lr, gen_lr=s.gen_lr or s.lr,
                       adv_beta1=s.beta1 if s.adv_beta1 is None else s.adv_beta1)

    def resolve(self, items: pd.DataFrame, sources: list[str] | None = None) -> "Resolved":
        """What a run on these figurines (a table with path, culture and site) really uses: a guided run gets one
        prior component (or, with clusters, one cluster) per source culture, from the `sources` a resumed run
        began with; a local run without a target culture is not local."""
        from . import labels

        s, guide = self, None
        if s.guided:
            guide, sources = labels.guide(items, s.label_holdout, s.seed, sources)
            if len(sources) < 2 or (np.bincount(guide[guide >= 0], minlength=len(sources)) == 0).any():
                raise UserError("a guided run needs at least two source cultures, each with images whose label it "
                                "may see; train it unguided")
            s = replace(s, clusters=max(s.clusters, len(sources))) if s.clusters else \
                replace(s, prior="mixture", prior_components=len(sources))
        if s.local and not labels.has_target(items):  # no culture is asked about: nothing to tell the decoder
            s = replace(s, local=False)
        cultures = items["culture"].astype("category").cat.codes.to_numpy()
        return Resolved(s, cultures, labels.is_target(items), guide, sources if s.guided else None)

    def validated(self) -> "Settings":
        """These settings if every value has its type and lies in its range; else a UserError saying which."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(msg)

        for f in fields(self):  # types first (a settings file may hold anything), then ranges
            v, kind, name = getattr(self, f.name), str(f.type).split(" |")[0], named(f.name)
            if kind in NESTED:
                need(isinstance(v, NESTED[kind]), f"{name} must be an object of its settings")
                _check_nested(v, name)
                continue
            need((v is None and "None" in str(f.type)) or _is(kind, v),
                 f"{name} must be {({'bool': 'true or false', 'str': 'text'}.get(kind, 'a number'))}, "
                 f"got {str(v)[:40]!r}")
            choices, span = f.metadata["choices"], f.metadata["range"]
            if choices:
                need(v in choices, f"{name} must be one of {', '.join(map(str, choices))}, got {v!r}")
            if span and v is not None:
                need(span[0] <= v <= span[1], f"{name} must be between {_number(span[0])} and {_number(span[1])}, "
                                              f"got {v}")
        if self.arch == "conv":
            need(self.image_size >= 16 and self.image_size & (self.image_size - 1) == 0,
                 f"the conv model needs a power-of-two image size of at least 16, got {self.image_size}")
        need(self.clusters != 1, f"{named('clusters')} must be 0 (none) or 2..64, got {self.clusters}")
        need(not (self.clusters and self.prior == "mixture"),
             "a cluster-head map has its own categorical code: use the gaussian prior for its style part")
        need(re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", self.device) is not None,
             f"{named('device')} must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        return self


@dataclass(frozen=True)
class Resolved:
    """What a run on one collection really uses (`Settings.resolve`)."""

    settings: Settings            # as given, with what the collection decides: stored as the run's settings
    cultures: np.ndarray          # each figurine's culture as an integer code (for balanced sampling)
    local: np.ndarray             # whether each figurine is of the target culture (told to a local run's decoder)
    guide: np.ndarray | None      # a guided run: each figurine's source component, -1 where its label is unseen
    sources: list[str] | None     # a guided run: its source cultures, in component order


def named(name: str) -> str:
    """A setting as a message names it, for the Train page and the CLI alike: "Epochs (--epochs)"."""
    meta = Settings.__dataclass_fields__[name].metadata
    return f"{meta['label']} (--{name.replace('_', '-')})" if meta["flag"] else meta["label"]


def _number(v) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


ARCHITECTURE = tuple(f.name for f in fields(Settings) if f.metadata["architecture"])
"""The settings a checkpoint's weights are shaped by."""


def _is(kind: str, v) -> bool:
    return {"bool": isinstance(v, bool), "str": isinstance(v, str),
            "int": isinstance(v, numbers.Integral) and not isinstance(v, bool),
            "float": isinstance(v, numbers.Real) and not isinstance(v, bool)}[kind]


def _nested(kind: type, d: dict, name: str):
    """A nested settings object from a stored dict (lists back to tuples); unknown keys are refused."""
    known = {f.name for f in fields(kind)}
    if set(d) - known:
        raise UserError(f"{name.replace('_', ' ')} has unknown setting(s): {', '.join(sorted(set(d) - known))}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _check_nested(obj, name: str) -> None:
    """Every value of a nested settings object a finite, non-negative number of its type (`area`: a pair)."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        parts = v if f.type == "tuple" else (v,)
        kind = "int" if f.type == "int" else "float"
        if len(parts) != (2 if f.type == "tuple" else 1) or not all(_is(kind, p) and 0 <= p < float("inf")
                                                                     for p in parts):
            raise UserError(f"{name} {f.name.replace('_', ' ')} must be a non-negative number, got {str(v)[:40]!r}")
