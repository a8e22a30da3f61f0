"""The experiment's settings as code: one frozen dataclass, overridable from the command line."""

from __future__ import annotations

import dataclasses
import math

from experiments.mwvae.data import SOURCES

MODELS = ("poe", "factorized", "wvae", "wvae_full", "wvae_shared")
# The default run leaves out wvae_full: its W2 gradient (a batched 64 x 64 SVD per step) makes
# it over ten times slower per step than the others on a CPU (``--models wvae_full`` runs it).
DEFAULT_MODELS = ("poe", "factorized", "wvae", "wvae_shared")
MODEL_DESCRIPTIONS = {
    "poe": "MVAE, product of experts with the prior expert (Wu & Goodman 2018)",
    "factorized": "factorized MVAE: one posterior per modality, no coupling (lambda = 0)",
    "wvae": "multimodal Wasserstein VAE: factorized + lambda * W2^2, diagonal covariances",
    "wvae_full": "multimodal Wasserstein VAE with full covariances (Cholesky factors)",
    "wvae_shared": "Wasserstein VAE with shared + private latents, W2 on the shared part only, "
    "cross terms decode each modality from the other's shared part and a prior private part",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run; every field can be overridden from the command line.

    The defaults are sized so that ``python -m experiments.mwvae`` trains and evaluates the four
    default models on the bundled MNIST digits in one to two minutes on a two-core CPU.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    run_dir: str = "runs/mwvae"
    data: str = "mnist5k"  # one of data.SOURCES
    data_dir: str | None = None  # directory of IDX files (implies data="idx")
    seed: int = 0

    # model
    latent_size: int = 64  # k, the latent size of each modality's posterior (as in the talk)
    shared_size: int | None = None  # shared part of the latent in wvae_shared; None: k // 2
    hidden: int = 256  # width of the image MLPs (two hidden layers)
    label_hidden: int = 64  # width of the label MLPs (one hidden layer)
    w2_weight: float = 1.0  # lambda in front of W2^2 (wvae, wvae_full, wvae_shared)
    label_weight: float = 50.0  # weight of log p(label | z) in training (Wu & Goodman: 50)

    # optimisation
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    checkpoint_every_epochs: int = 5
    log_every_steps: int = 20

    # evaluation
    nll_samples: int = 64  # importance samples per test example for the joint NLL
    classifier_epochs: int = 15  # the judge of label -> image coherence
    figure_columns: int = 10  # grid width of the reconstruction figures (one class a column)
    figure_rows: int = 6
    # compile with XLA's backend optimisations off: half the compile time, a third of the speed
    # per step; for short runs (the smoke setting) where compiling dominates
    fast_compile: bool = False

    @property
    def shared(self) -> int:
        return self.shared_size if self.shared_size is not None else max(1, self.latent_size // 2)

    def validate(self) -> Config:
        """Raises ``ValueError`` naming the first bad setting; returns ``self``."""
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ValueError(
                f"unknown model(s) {', '.join(map(repr, unknown)) or '(none given)'}; expected "
                f"one or more of {', '.join(MODELS)}."
            )
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"`models` lists a model twice: {self.models}.")
        if self.data not in SOURCES:
            raise ValueError(f"unknown data source {self.data!r}; expected one of {SOURCES}.")
        if self.data == "idx" and self.data_dir is None:
            raise ValueError("data source 'idx' needs `data_dir` (--data-dir DIR).")
        for name in (
            "latent_size",
            "hidden",
            "label_hidden",
            "epochs",
            "batch_size",
            "checkpoint_every_epochs",
            "log_every_steps",
            "nll_samples",
            "classifier_epochs",
            "figure_columns",
            "figure_rows",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if "wvae_shared" in self.models and not 1 <= self.shared < self.latent_size:
            raise ValueError(
                f"`shared_size` must be in [1, latent_size - 1] = [1, {self.latent_size - 1}] for "
                f"wvae_shared (the rest is private), got {self.shared}."
            )
        for name in ("learning_rate", "w2_weight", "label_weight"):
            value = getattr(self, name)
            positive_only = name == "learning_rate"
            if not math.isfinite(value) or value < 0 or (positive_only and value == 0):
                kind = "> 0" if positive_only else ">= 0"
                raise ValueError(f"`{name}` must be finite and {kind}, got {value!r}.")
        return self

    # Fields that change what is trained; a checkpoint from a run that differs in any of them
    # cannot be resumed (epochs may grow: the data order of an epoch does not depend on it).
    TRAINING_FIELDS = (
        "data",
        "data_dir",
        "seed",
        "latent_size",
        "shared_size",
        "hidden",
        "label_hidden",
        "w2_weight",
        "label_weight",
        "batch_size",
        "learning_rate",
    )

    def training_signature(self, model: str) -> dict:
        sig = {name: getattr(self, name) for name in self.TRAINING_FIELDS}
        sig["shared_size"] = self.shared
        sig["model"] = model
        return sig


def smoke_config(run_dir: str, **overrides) -> Config:
    """A shrunken setting on the 8x8 digits that trains each model for a few steps (for tests)."""
    base = Config(
        models=MODELS,
        run_dir=run_dir,
        data="digits",
        latent_size=8,
        hidden=32,
        label_hidden=16,
        epochs=2,
        batch_size=64,
        checkpoint_every_epochs=1,
        learning_rate=3e-3,
        log_every_steps=5,
        nll_samples=4,
        classifier_epochs=2,
        figure_rows=2,
        fast_compile=True,
    )
    return dataclasses.replace(base, **overrides)
