"""One source of valid names: the config accepts exactly the registered parts, and every registered part builds."""

from __future__ import annotations

import inspect
import pkgutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from cora.config import ConfigError, load_config
from cora.config.sections.adapt import AdaptConfig
from cora.config.sections.image import ImageProcessingConfig
from cora.config.sections.models import ModelsConfig
from cora.config.sections.training import LossConfig, TrainingConfig
from cora.registry import CROP_STRATEGIES, LOGGERS, LOSSES, REGISTRIES, RESAMPLERS, VLM_FAMILIES

ROOT = Path(__file__).resolve().parents[1]

# For each registry: a config built with one of its names (the config field that reads the registry).
CONFIG_WITH = {
    CROP_STRATEGIES.kind: lambda name: ImageProcessingConfig(crop_strategy=name),
    RESAMPLERS.kind: lambda name: ModelsConfig(resampler_type=name),
    LOSSES.kind: lambda name: LossConfig(type=name),
    LOGGERS.kind: lambda name: TrainingConfig(loggers=[name]),
    VLM_FAMILIES.kind: lambda name: AdaptConfig(family=name, tiny=True),
}


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_every_registered_name_is_accepted_by_the_config_and_resolves(registry):
    for name in registry:
        CONFIG_WITH[registry.kind](name)
        assert callable(registry.load(name)), name


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_an_unregistered_name_is_refused_with_the_closest_valid_one(registry):
    name = registry.names()[-1]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(ValidationError, match=rf"unknown {registry.kind} '{typo}' \(did you mean '{name}'"):
        CONFIG_WITH[registry.kind](typo)


def _modules(package: str, skip: set[str]) -> set[str]:
    import importlib

    pkg = importlib.import_module(package)
    return {m.name for m in pkgutil.iter_modules(pkg.__path__)} - skip


def test_every_implementation_in_the_code_is_registered():
    """The other direction: a part written but not registered would be unreachable from a config."""
    registered = {
        reg.kind: {target.split(":")[0].rsplit(".", 1)[1] for target in reg.entries.values()} for reg in REGISTRIES
    }
    assert _modules("cora.model.resamplers", {"base", "mamba", "scan"}) == registered[RESAMPLERS.kind]
    assert _modules("cora.training.losses", {"strips"}) == registered[LOSSES.kind]
    assert _modules("cora.adapt.families", {"base"}) == registered[VLM_FAMILIES.kind]
    # Crop strategies and loggers are functions of one module each: every public one returning views /
    # a logger is registered.
    import cora.processors.strategies as strategies
    import cora.training.loggers as loggers

    views = {n for n, f in vars(strategies).items() if inspect.isfunction(f) and f.__module__ == strategies.__name__
             and inspect.signature(f).return_annotation == "list[ViewGeometry]" and not n.startswith("_")
             and list(inspect.signature(f).parameters) == ["cfg"]}  # fmt: skip
    assert views == set(CROP_STRATEGIES)
    factories = {n.removesuffix("_logger") for n in vars(loggers) if n.endswith("_logger")}
    assert factories == set(LOGGERS)


def test_resampler_options_match_the_constructors():
    for name in RESAMPLERS:
        params = inspect.signature(RESAMPLERS.load(name).__init__).parameters
        assert RESAMPLERS.options[name] == tuple(k for k in params if k not in ("self", "in_dim", "out_dim")), name


def test_vlm_family_names_match_their_classes():
    for name in VLM_FAMILIES:
        assert VLM_FAMILIES.load(name).name == name


def test_every_crop_strategy_plans_views():
    from cora.processors.views import plan_views

    for name in CROP_STRATEGIES:
        assert plan_views(ImageProcessingConfig(crop_strategy=name, image_size=32)), name


def test_an_option_the_chosen_resampler_does_not_take_is_an_error_naming_it(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'tiny.yaml'}\nmodels:\n  resampler_type: spatial_pool\n"
        "  resampler: {pool_size: 2, d_state: 8}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"bad.yaml: models.resampler.d_state: d_state set, but resampler_type 'spatial_pool' does not take it",
    ):
        load_config(cfg)
    # Options equal to their defaults (as every saved config.yaml spells them out) are fine.
    ModelsConfig(resampler_type="spatial_pool", resampler={"d_state": 64, "pool_size": 4})


def test_a_misspelt_name_in_a_config_file_names_the_file_and_the_closest_name(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(f"extends: {ROOT / 'configs' / 'tiny.yaml'}\nmodels: {{resampler_type: spatial_pol}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    message = str(info.value)
    assert f"{cfg}: models.resampler_type" in message and "did you mean 'spatial_pool'" in message


def test_a_key_that_moved_sections_says_where_it_went(tmp_path):
    cfg = tmp_path / "old.yaml"
    cfg.write_text(f"extends: {ROOT / 'configs' / 'tiny.yaml'}\ntraining: {{language_prior: {{enabled: true}}}}\n")
    with pytest.raises(ConfigError, match=r"training.language_prior: unknown key \(it moved to demo.language_prior\)"):
        load_config(cfg)
