"""The experiment's settings: one frozen dataclass, presets ``smoke`` / ``default`` / ``full``."""

from __future__ import annotations

import dataclasses
import math

from experiments.dcca.models import METHODS


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run of ``python -m experiments.dcca``; every field is a command-line flag.

    The default preset trains the three deep methods for three seeds on 3,000 training pairs
    and evaluates them with the linear-CCA baseline in about four minutes on a two-core CPU
    (measured: 4 min 0 s wall, 3 min 41 s CPU, on a shared machine).

    Chosen on the validation split (``dcca`` / ``dccae``, seed 0, 300 steps; the number is the
    validation sum of the top-10 correlations under the CCA fitted on training projections):
    ``reg`` from 1e-3 (3.49), 0.1 (3.87), 1 (4.15), 10 (4.25), 100 (4.29), taking 10; with
    ``reg = 10``, 600 steps gave 4.38, batches of 1000 4.29, dropout 0.2 2.55, one hidden layer
    of 1024 (``reg = 1``) 3.51; DCCAE's ``ae_weight`` from 0.1 (2.15), 0.01 (2.86), 1e-3 (4.55).
    With 3,000 pairs the networks fit the training batches almost perfectly (sum > 9.8); the
    absolute ridge, in the units of the encoder outputs, slows that down.
    """

    run_dir: str = "runs/dcca"  # where results, figures and per-run checkpoints go
    seeds: tuple[int, ...] = (0, 1, 2)  # one training run of every deep method per seed
    devices: int | None = None  # devices of the data-parallel mesh; None: no mesh (one device)
    methods: tuple[str, ...] = METHODS  # of cca, dcca, dcca_squared, dccae

    data_seed: int = 0  # fixes the splits and views (the same for every training seed)
    n_train: int = 3000  # training pairs (of the 5,000 bundled digits, with n_val, n_test)
    n_val: int = 1000  # validation pairs (choose C, the pixel-CCA ridge, settings)
    n_test: int = 1000  # test pairs (reported only)
    max_angle: float = 45.0  # view 1: rotation uniform in [-max_angle, max_angle] degrees
    noise: float = 1.0  # view 2: + uniform [0, noise) per pixel, clipped to [0, 1]

    hidden: tuple[int, ...] = (256, 256)  # hidden widths of every encoder (decoders: reversed)
    k: int = 10  # outputs of each encoder = number of correlations summed
    reg: float = 10.0  # ridge on the within-view covariances of the DCCA losses (absolute)
    dropout: float = 0.0  # dropout rate on the encoders' hidden layers in training
    ae_weight: float = 1e-3  # DCCAE's lambda (squared error summed over pixels, both views)

    steps: int = 500  # Adam steps per run
    batch_size: int = 500  # pairs per step (DCCA estimates covariances from the batch)
    learning_rate: float = 1e-3  # Adam's learning rate
    log_every: int = 50  # steps between metric records and validation evaluations

    cca_regs: tuple[float, ...] = (0.1, 1.0, 10.0)  # ridge grid of the pixel-CCA baseline
    svm_cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)  # C grid of the linear SVM
    embedding: str = "cca"  # embedding.png: "cca" (first two canonical variates) or "tsne"
    progress: bool = True  # tqdm progress bars

    def validate(self) -> Config:
        """Raises ``ValueError`` naming the first bad setting; returns ``self``."""
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(
                f"`methods` must be distinct names from {METHODS}, got {self.methods}."
            )
        if not self.seeds:
            raise ValueError("`seeds` must name at least one seed.")
        for name in ("n_train", "n_val", "n_test", "k", "steps", "batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if not self.hidden or any(w < 1 for w in self.hidden):
            raise ValueError(f"`hidden` must list positive widths, got {self.hidden}.")
        if self.batch_size > self.n_train:
            raise ValueError(f"`batch_size` {self.batch_size} exceeds `n_train` {self.n_train}.")
        if self.devices is not None and (self.devices < 1 or self.batch_size % self.devices):
            raise ValueError(
                f"`batch_size` {self.batch_size} must be a multiple of `devices` {self.devices}."
            )
        if self.batch_size <= self.k:
            raise ValueError(f"`batch_size` must exceed k = {self.k} for covariance estimates.")
        for name in ("reg", "learning_rate"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"`{name}` must be finite and > 0, got {value!r}.")
        if not math.isfinite(self.ae_weight) or self.ae_weight < 0:
            raise ValueError(f"`ae_weight` must be finite and >= 0, got {self.ae_weight!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {self.dropout!r}.")
        if self.embedding not in ("tsne", "cca"):
            raise ValueError(f"`embedding` must be 'tsne' or 'cca', got {self.embedding!r}.")
        if not 0 <= self.max_angle <= 180 or not 0 <= self.noise:
            raise ValueError("`max_angle` must be in [0, 180] and `noise` >= 0.")
        return self


def get_config(preset: str = "default") -> Config:
    """The settings of a preset: ``"smoke"`` (seconds, for tests), ``"default"``, ``"full"``."""
    if preset == "default":
        return Config()
    if preset == "smoke":
        return Config(
            run_dir="runs/dcca_smoke",
            seeds=(0,),
            n_train=300,
            n_val=100,
            n_test=100,
            hidden=(32,),
            steps=40,
            reg=0.1,
            batch_size=150,
            learning_rate=3e-3,
            log_every=10,
            cca_regs=(1.0,),
            svm_cs=(0.1, 1.0),
            progress=False,
        )
    if preset == "full":
        # all 5,000 bundled digits and the paper's widths (1024 units, three hidden layers)
        return Config(
            run_dir="runs/dcca_full",
            seeds=(0, 1, 2, 3, 4),
            n_train=3000,
            n_val=1000,
            n_test=1000,
            hidden=(1024, 1024, 1024),
            steps=3000,
            batch_size=1000,
            embedding="tsne",
        )
    raise ValueError(f"unknown preset {preset!r}; expected 'smoke', 'default' or 'full'.")
