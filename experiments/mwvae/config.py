"""The experiment's settings: one frozen dataclass, presets ``smoke`` / ``default`` / ``full``."""

from __future__ import annotations

import dataclasses
import math

from experiments.mwvae.data import SOURCES
from experiments.mwvae.poly import POLY_MODELS

MODELS = ("poe", "mmvae", "mopoe", "factorized", "kl_coupled", "wvae", "wvae_full", "wvae_shared")
# The default run leaves out wvae_full: its W2 gradient (a batched 64 x 64 SVD per step) makes
# it over ten times slower per step than the others on a CPU (``--models wvae_full`` runs it).
DEFAULT_MODELS = ("poe", "factorized", "wvae", "wvae_shared")
MODEL_DESCRIPTIONS = {
    "poe": "MVAE, product of experts with the prior expert (Wu & Goodman 2018)",
    "mmvae": "MMVAE, mixture of the two experts, stratified ELBO (Shi et al. 2019)",
    "mopoe": "MoPoE, mixture of the products of experts of every subset (Sutter et al. 2021)",
    "factorized": "factorized MVAE: one posterior per modality, no coupling (lambda = 0)",
    "kl_coupled": "factorized + lambda * symmetric KL between the two posteriors (JMVAE-style)",
    "wvae": "multimodal Wasserstein VAE: factorized + lambda * W2^2, diagonal covariances",
    "wvae_full": "multimodal Wasserstein VAE with full covariances (Cholesky factors)",
    "wvae_shared": "Wasserstein VAE with shared + private latents, W2 on the shared part only, "
    "cross terms decode each modality from the other's shared part and a prior private part",
}

# Fields that change what is trained; a model directory holding a run that differs in any of
# them is not resumed (``epochs`` may grow: the batches of a step do not depend on it).
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
    "kl_anneal_epochs",
    "batch_size",
    "learning_rate",
)

# the M-modality presets (--data polymnist): epochs of every model, importance samples of the NLL
POLY_EPOCHS = 10
POLY_NLL_SAMPLES = 100
POLY_NLL_EXAMPLES = 250  # of the 1,000 test examples (K x M decoder passes each)

FAST_COMPILE = {"xla_backend_optimization_level": 0}


def compiler_options(fast_compile: bool) -> dict | None:
    """XLA options for ``jax.jit``: backend optimisations off when ``fast_compile``."""
    return FAST_COMPILE if fast_compile else None


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run of ``python -m experiments.mwvae``; every field is a command-line flag.

    The default preset trains and evaluates the four default models on the bundled MNIST digits
    in one to two minutes on a two-core CPU.
    """

    run_dir: str = "runs/mwvae"  # results, figures/, and one directory per model (checkpoints)
    models: tuple[str, ...] = DEFAULT_MODELS  # any of MODELS
    # mnist5k (bundled), digits (8x8, scikit-learn), idx (data_dir), or polymnist: M image
    # modalities generated from the bundled digits (poly_source) and images (see polymnist.py)
    data: str = "mnist5k"
    data_dir: str | None = None  # directory of MNIST IDX files; setting it selects data "idx"
    seed: int = 0  # data split, initialisation, batch order and noise

    # model
    latent_size: int = 64  # k, the latent size of each modality's posterior (as in the talk)
    shared_size: int | None = None  # shared part of the latent in wvae_shared; None: k // 2
    hidden: int = 256  # width of the image MLPs (two hidden layers)
    label_hidden: int = 64  # width of the label MLPs (one hidden layer)
    w2_weight: float = 1.0  # lambda in front of W2^2 (wvae, wvae_full, wvae_shared)
    label_weight: float = 50.0  # weight of log p(label | z) in training
    # epochs over which the KL weight rises linearly from 0 to 1 (0: no annealing; Wu & Goodman
    # anneal the MVAE's KL term)
    kl_anneal_epochs: int = 0

    # optimisation
    epochs: int = 30  # passes over the training set (the last partial batch dropped)
    batch_size: int = 128
    learning_rate: float = 1e-3  # Adam's learning rate
    checkpoint_every_epochs: int = 5
    log_every_steps: int = 20  # steps between records of metrics.jsonl

    # evaluation
    nll_samples: int = 64  # importance samples per test example for the joint NLL
    # the M-modality run's joint NLL on the first n test examples (None: all); coherence always
    # uses every test example
    nll_examples: int | None = None
    classifier_epochs: int = 15  # the judge of label -> image coherence
    figure_columns: int = 10  # grid width of the reconstruction figures (one class a column)
    figure_rows: int = 6

    # more than two modalities (--data polymnist)
    modalities: int = 5  # M, the PolyMNIST-style image modalities
    poly_source: str = "mnist5k"  # the digits they are made of: mnist5k or digits (tests)
    poly_models: tuple[str, ...] = POLY_MODELS  # the models of the M-modality experiment
    # weight of every model's KL terms in the M-modality experiment (a beta-VAE's beta)
    kl_weight: float = 1.0
    # the M-modality networks: "cnn" (two convolutions each way, as the MoPoE paper's PolyMNIST
    # networks with fewer channels) or "mlp" (two hidden layers of `hidden` units)
    poly_arch: str = "cnn"

    # the fair comparison (the `full` preset): a validation split decides every choice
    comparison: bool = False  # tune every model on validation, then train `seeds` and test
    validation_fraction: float = 0.1  # of each class's training images, held out for selection
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # final runs per model (data split, init, noise)
    tune_runs: int = 4  # training runs per model in the search (the same budget for every model)
    grid_kl_anneal_epochs: tuple[int, ...] = (0, 10)  # the search space, every model
    grid_label_weight: tuple[float, ...] = (10.0, 50.0)
    grid_w2_weight: tuple[float, ...] = (0.3, 1.0, 3.0)  # coupled models only
    grid_epochs: tuple[int, ...] = (25, 50)  # each run evaluated on validation after these
    selection_nll_samples: int = 16  # K of the validation NLL (reported, not the criterion)

    # running
    overwrite: bool = False  # delete the run's model directories (checkpoints) first
    progress: bool = True  # tqdm progress bars
    # compile with XLA's backend optimisations off: half the compile time, a third of the speed
    # per step; for short runs (the smoke preset) where compiling dominates
    fast_compile: bool = False

    @property
    def shared(self) -> int:
        return self.shared_size if self.shared_size is not None else max(1, self.latent_size // 2)

    @property
    def source(self) -> str:
        """The data source used: ``"idx"`` when ``data_dir`` is set, else ``data``."""
        return "idx" if self.data_dir is not None else self.data

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
        if self.data not in (*SOURCES, "polymnist"):
            raise ValueError(
                f"unknown data source {self.data!r}; expected one of {(*SOURCES, 'polymnist')}."
            )
        if self.data == "polymnist":
            self._validate_polymnist()
        if self.source == "idx" and self.data_dir is None:
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
        if self.comparison:
            self._validate_comparison()
        if not isinstance(self.kl_anneal_epochs, int) or self.kl_anneal_epochs < 0:
            raise ValueError(
                f"`kl_anneal_epochs` must be an integer >= 0, got {self.kl_anneal_epochs!r}."
            )
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

    def _validate_polymnist(self) -> None:
        from experiments.mwvae.polymnist import MAX_MODALITIES

        if not isinstance(self.modalities, int) or not 2 <= self.modalities <= MAX_MODALITIES:
            raise ValueError(
                f"`modalities` must be an integer in [2, {MAX_MODALITIES}], got "
                f"{self.modalities!r}."
            )
        if self.poly_source not in ("mnist5k", "digits"):
            raise ValueError(
                f"`poly_source` must be 'mnist5k' or 'digits', got {self.poly_source!r}."
            )
        if not (isinstance(self.kl_weight, (int, float)) and 0.0 < self.kl_weight < math.inf):
            raise ValueError(f"`kl_weight` must be positive and finite, got {self.kl_weight!r}.")
        if self.nll_examples is not None and (
            not isinstance(self.nll_examples, int) or self.nll_examples < 1
        ):
            raise ValueError(
                f"`nll_examples` must be None or an integer >= 1, got {self.nll_examples!r}."
            )
        if self.poly_arch not in ("cnn", "mlp"):
            raise ValueError(f"`poly_arch` must be 'cnn' or 'mlp', got {self.poly_arch!r}.")
        unknown = [m for m in self.poly_models if m not in POLY_MODELS]
        if unknown or not self.poly_models:
            raise ValueError(f"unknown poly model(s) {unknown}; expected some of {POLY_MODELS}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct and non-empty, got {self.seeds!r}.")

    def _validate_comparison(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"`validation_fraction` must lie in (0, 1), got {self.validation_fraction!r}."
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct and non-empty, got {self.seeds!r}.")
        grids = {
            "grid_kl_anneal_epochs": (self.grid_kl_anneal_epochs, 0),
            "grid_epochs": (self.grid_epochs, 1),
            "grid_label_weight": (self.grid_label_weight, 0),
            "grid_w2_weight": (self.grid_w2_weight, 0),
        }
        for name, (values, low) in grids.items():
            if not values or any(not math.isfinite(v) or v < low for v in values):
                raise ValueError(f"`{name}` must be non-empty, each value >= {low}, got {values}.")
        for name in ("tune_runs", "selection_nll_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")

    def training_signature(self, model: str) -> dict:
        """What a model directory must have been trained with to be resumed."""
        sig = {name: getattr(self, name) for name in TRAINING_FIELDS}
        return sig | {"data": self.source, "shared_size": self.shared, "model": model}

    def as_dict(self) -> dict:
        """The fields, with ``shared_size`` and ``data`` resolved (for ``results.json``)."""
        return dataclasses.asdict(self) | {"shared_size": self.shared, "data": self.source}


def get_config(preset: str = "default", data: str | None = None) -> Config:
    """The settings of a preset: ``"smoke"`` (seconds, for tests), ``"default"``, ``"full"``.

    ``data="polymnist"`` gives the presets of the M-modality experiment (``python -m
    experiments.mwvae [--smoke | --full] --data polymnist`` picks them): ``default`` one seed
    (about 20 minutes on a two-core CPU), ``full`` three seeds (57 minutes), ``smoke`` the
    smoke preset at M = 2 on scikit-learn's digits.
    """
    if data == "polymnist":
        return _polymnist_config(preset)
    if preset == "default":
        return Config()
    if preset == "smoke":
        # every model a few steps on scikit-learn's 8x8 digits
        return Config(
            run_dir="runs/mwvae_smoke",
            models=MODELS,
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
            progress=False,
            fast_compile=True,
            seeds=(0,),
            modalities=2,
            poly_source="digits",
        )
    if preset == "full":
        # the fair comparison: every model but wvae_full (over ten times slower per step on a
        # CPU) tuned with the same budget on a validation split, then five seeds on the test set
        return Config(
            run_dir="runs/mwvae_full",
            models=tuple(m for m in MODELS if m != "wvae_full"),
            comparison=True,
            epochs=max(Config.grid_epochs),
            checkpoint_every_epochs=25,
            nll_samples=1000,
            classifier_epochs=15,
            progress=False,
        )
    raise ValueError(f"unknown preset {preset!r}; expected 'smoke', 'default' or 'full'.")


def _polymnist_config(preset: str) -> Config:
    if preset == "smoke":
        # the MLPs: the CNNs' compilation would double the smoke run (tests cover them apart)
        return dataclasses.replace(get_config("smoke"), data="polymnist", poly_arch="mlp")
    if preset not in ("default", "full"):
        raise ValueError(f"unknown preset {preset!r}; expected 'smoke', 'default' or 'full'.")
    # every model with the same settings (no search); the data and the judges are shared
    full = preset == "full"
    return Config(
        run_dir="runs/mwvae_polymnist_full" if full else "runs/mwvae_polymnist",
        data="polymnist",
        modalities=5,
        seeds=(0, 1, 2) if full else (0,),
        epochs=POLY_EPOCHS,
        checkpoint_every_epochs=10,
        classifier_epochs=10,
        nll_samples=POLY_NLL_SAMPLES,
        nll_examples=POLY_NLL_EXAMPLES,
        progress=not full,
    )
