"""The whole CORA configuration: one typed model per YAML section."""

from __future__ import annotations

from cora.config.base import ArchSpec, StrictModel
from cora.config.sections.adapt import AdaptConfig
from cora.config.sections.data import DataConfig
from cora.config.sections.demo import DemoConfig, LanguagePriorConfig, VisionPriorConfig
from cora.config.sections.evaluation import EvaluationConfig, JudgeConfig
from cora.config.sections.experiment import ExperimentConfig
from cora.config.sections.image import ImageProcessingConfig
from cora.config.sections.kit import KitConfig, TokenizerSpec
from cora.config.sections.models import ModelsConfig, ProjectorConfig, ResamplerConfig
from cora.config.sections.teacher import TeacherConfig
from cora.config.sections.training import REFERENCE_STAGES, LoRAConfig, LossConfig, StageConfig, TrainingConfig

__all__ = [
    "REFERENCE_STAGES",
    "ArchSpec",
    "CoraConfig",
    "DataConfig",
    "DemoConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "ImageProcessingConfig",
    "JudgeConfig",
    "KitConfig",
    "LanguagePriorConfig",
    "LoRAConfig",
    "LossConfig",
    "ModelsConfig",
    "ProjectorConfig",
    "ResamplerConfig",
    "StageConfig",
    "TeacherConfig",
    "TokenizerSpec",
    "TrainingConfig",
    "VisionPriorConfig",
]


class CoraConfig(StrictModel):
    experiment: ExperimentConfig = ExperimentConfig()
    models: ModelsConfig = ModelsConfig()
    image_processing: ImageProcessingConfig = ImageProcessingConfig()
    training: TrainingConfig = TrainingConfig()
    data: DataConfig = DataConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    kit: KitConfig | None = None
    adapt: AdaptConfig | None = None
    teacher: TeacherConfig | None = None
    # A recipe's section, absent unless a config sets it (as kit/adapt/teacher are): the library
    # never reads it, so a training run's saved config.yaml spells out no demo settings; the demo
    # reads a missing section as its defaults (both priors off).
    demo: DemoConfig | None = None
