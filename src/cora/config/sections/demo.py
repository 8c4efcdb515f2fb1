"""The ``demo:`` section: settings of the ``cora demo`` recipe that the library never reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cora.config.base import StrictModel


class _PriorConfig(StrictModel):
    """A short pretraining of one tiny kit model before the stages (kit models only)."""

    enabled: bool = Field(False, description="run it before the stages")
    steps: int = Field(300, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    batch_size: int = Field(16, ge=1)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)


class VisionPriorConfig(_PriorConfig):
    """A short supervised pretraining of the tiny kit vision tower on SynthPano views (demo / tiny configs).

    A random tower hides small objects under the changing sky and floor; a few hundred steps of
    naming the colours and shapes in each view (training split only) stand in for the
    pretraining a real SigLIP has.
    """

    target: Literal["view", "patch"] = Field(
        "view",
        description="label each whole view with the objects in its "
        "field of view, or each ViT patch with those its footprint meets",
    )
    steps: int = Field(400, ge=1)
    lr: float = Field(2e-3, gt=0.0)
    batch_size: int = Field(64, ge=1)


class LanguagePriorConfig(_PriorConfig):
    """A short text-only pretraining of the tiny kit LLM on the synthetic corpus (demo / tiny configs).

    A random-init LLM cannot form a sentence; a few hundred steps on the corpus's captions and
    answers give it the language before the vision stages teach it to look.
    """

    seq_len: int = Field(64, ge=8, description="tokens per packed training sequence")


class DemoConfig(StrictModel):
    """What ``cora demo`` runs besides the stages: the two priors of the tiny kit models, and how many runs at once."""

    language_prior: LanguagePriorConfig = LanguagePriorConfig()
    vision_prior: VisionPriorConfig = VisionPriorConfig()
    jobs: int | None = Field(
        None,
        ge=1,
        description="runs trained (and evaluated) at once, each in its own process: the vision run and the "
        "blind run; None: 2 where the machine has 2 cores or more",
    )
