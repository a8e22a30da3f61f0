"""The experiment's settings: one frozen dataclass, presets ``smoke`` / ``default`` / ``full``."""

from __future__ import annotations

import dataclasses
import math

from experiments.contrastive.models import LOSSES


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run of ``python -m experiments.contrastive``; every field is a flag.

    The default preset trains the five losses for three seeds on 3,000 training pairs and
    evaluates them on 1,000 test pairs: 167 s of CPU time (300 s and 422 s of wall time in two
    runs on the shared two-core CPU, load averages 8 to 10 and 8 to 13).

    Chosen on the validation split (seed 0; the number is validation R@1, the mean of both
    directions, at step 275 of 300 unless said): ``scale_learning_rate`` 1e-3 (clip 0.364,
    siglip 0.417, siglip_prior 0.340) over 1e-2 (0.343, 0.343, 0.299: the scale grows faster,
    to 56 for CLIP, and validation R@1 peaks earlier); one hidden layer of 256 over 128 (at step
    225, scale learning rate 1e-2: clip 0.339 against 0.316, siglip 0.353 against 0.304).
    ``siglip_chunked``: a batch of 1,000 for 100 steps (0.237 at step 75) over 1,500 for 60
    steps (0.105); Adam at 3e-3 instead of 1e-3 failed at both batches (0.002 and 0.005).
    ``steps`` and the batch sizes were also bounded by the time budget: CLIP's and SigLIP's
    validation R@1 levels off between 200 and 300 steps, VSE++'s and the chunked SigLIP's are
    still rising at the end.
    """

    run_dir: str = "runs/contrastive"  # where results, figures and per-run checkpoints go
    seeds: tuple[int, ...] = (0, 1, 2)  # one training run of every loss per seed
    devices: int | None = None  # devices of the data-parallel mesh; None: no mesh (one device)
    losses: tuple[str, ...] = LOSSES  # of vse, clip, siglip, siglip_prior, siglip_chunked

    data_seed: int = 0  # fixes the splits (the same for every training seed)
    n_train: int = 3000  # training pairs (of the 5,000 bundled digits, with n_val, n_test)
    n_val: int = 1000  # validation pairs (the curves; settings were chosen on them)
    n_test: int = 1000  # test pairs (evaluated once, at the end of each run)
    cut: int = 14  # modality A: image rows [0, cut); modality B: rows [cut, 28)

    hidden: tuple[int, ...] = (256,)  # hidden widths of both encoders
    k: int = 64  # the shared embedding dimension (L2-normalised)

    steps: int = 300  # Adam steps per run (all losses but siglip_chunked)
    batch_size: int = 256  # pairs per step (all losses but siglip_chunked)
    chunked_steps: int = 100  # Adam steps of siglip_chunked
    chunked_batch_size: int = 1000  # pairs per step of siglip_chunked ([b, b] = 15x [256, 256])
    chunk_size: int = 200  # columns per block of chunked_siglip_loss: [b, 200] logits at a time
    learning_rate: float = 1e-3  # Adam's learning rate (encoders)
    scale_learning_rate: float = 1e-3  # Adam's learning rate of the logit scale and bias
    margin: float = 0.2  # VSE++ margin
    log_every: int = 25  # steps between metric records and validation evaluations

    optimised: tuple[str, ...] = ("siglip_chunked",)  # losses compiled at XLA's full optimisation
    progress: bool = True  # tqdm progress bars

    def batch_of(self, loss: str) -> int:
        """The batch size of ``loss`` (``chunked_batch_size`` for ``siglip_chunked``)."""
        return self.chunked_batch_size if loss == "siglip_chunked" else self.batch_size

    def steps_of(self, loss: str) -> int:
        """The number of steps of ``loss`` (``chunked_steps`` for ``siglip_chunked``)."""
        return self.chunked_steps if loss == "siglip_chunked" else self.steps

    def compiler_options(self, loss: str) -> dict | None:
        """XLA options of the training step of ``loss``: the default (full) optimisation for
        the losses in ``optimised``, backend optimisation level 0 for the others.

        On the two-core CPU, level 0 compiles a small-batch step in 2-3 s instead of 7-10 s and
        runs it about as fast (measured at batch 256); the large steps of ``siglip_chunked`` run
        about three times faster fully optimised (batch 2000), which repays the compilation."""
        if loss in self.optimised:
            return None
        return {"xla_backend_optimization_level": 0}

    def validate(self) -> Config:
        """Raises ``ValueError`` naming the first bad setting; returns ``self``."""
        bad = [m for m in self.losses if m not in LOSSES]
        if bad or not self.losses or len(set(self.losses)) != len(self.losses):
            raise ValueError(f"`losses` must be distinct names from {LOSSES}, got {self.losses}.")
        if not self.seeds:
            raise ValueError("`seeds` must name at least one seed.")
        for name in (
            "n_train",
            "n_val",
            "n_test",
            "k",
            "steps",
            "batch_size",
            "chunked_steps",
            "chunked_batch_size",
            "chunk_size",
            "log_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if not 1 <= self.cut <= 27:
            raise ValueError(f"`cut` must be in [1, 27] (both halves non-empty), got {self.cut}.")
        if not self.hidden or any(w < 1 for w in self.hidden):
            raise ValueError(f"`hidden` must list positive widths, got {self.hidden}.")
        if min(self.n_val, self.n_test) < 10:
            raise ValueError("`n_val` and `n_test` must be at least 10 (recall@10).")
        for loss in self.losses:
            b = self.batch_of(loss)
            if not 2 <= b <= self.n_train:
                raise ValueError(
                    f"the batch of {loss} ({b}) must be in [2, n_train = {self.n_train}]."
                )
            if self.devices is not None and (self.devices < 1 or b % self.devices):
                raise ValueError(
                    f"the batch of {loss} ({b}) must be a multiple of `devices` {self.devices}."
                )
        bad = [m for m in self.optimised if m not in LOSSES]
        if bad:
            raise ValueError(f"`optimised` must name losses from {LOSSES}, got {self.optimised}.")
        for name in ("learning_rate", "scale_learning_rate"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"`{name}` must be finite and > 0, got {value!r}.")
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ValueError(f"`margin` must be finite and >= 0, got {self.margin!r}.")
        return self


def get_config(preset: str = "default") -> Config:
    """The settings of a preset: ``"smoke"`` (seconds, for tests), ``"default"``, ``"full"``."""
    if preset == "default":
        return Config()
    if preset == "smoke":
        return Config(
            run_dir="runs/contrastive_smoke",
            seeds=(0,),
            n_train=400,
            n_val=100,
            n_test=100,
            hidden=(64,),
            k=32,
            steps=30,
            batch_size=64,
            chunked_steps=10,
            chunked_batch_size=400,
            chunk_size=64,
            log_every=10,
            optimised=(),
            progress=False,
        )
    if preset == "full":
        # wider encoders, five seeds, longer training (not timed on the 2-core CPU)
        return Config(
            run_dir="runs/contrastive_full",
            seeds=(0, 1, 2, 3, 4),
            hidden=(512, 512),
            k=128,
            steps=2000,
            chunked_steps=500,
        )
    raise ValueError(f"unknown preset {preset!r}; expected 'smoke', 'default' or 'full'.")
