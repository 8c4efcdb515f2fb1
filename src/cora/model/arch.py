"""HF models described by architecture (``ArchSpec``): config building and random init.

This is how a reference-size model is built offline for dry runs, and how the tiny kit
creates the models it then saves as ordinary HF folders.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Any

from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from cora.config.base import ArchSpec

logger = logging.getLogger(__name__)


def hf_config_from_arch(spec: ArchSpec, **overrides: Any) -> PretrainedConfig:
    """Build the HF config for ``spec``; unknown model types or fields are errors.

    ``overrides`` win over the spec (the kit sets ``vocab_size`` from its tokenizer).
    """
    model_type = spec.model_type
    if model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING.keys()), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown HF model_type {model_type!r}{hint}")
    kwargs = {**spec.hf_kwargs(), **overrides}
    config_cls = CONFIG_MAPPING[model_type]
    defaults = config_cls()
    built = config_cls(**kwargs)
    signature = set(inspect.signature(config_cls.__init__).parameters)
    # HF configs keep unknown kwargs as stray attributes; legacy names they translate
    # (e.g. rope_theta -> rope_parameters) are consumed and not kept.
    unknown = [k for k in kwargs if k not in signature and not hasattr(defaults, k) and hasattr(built, k)]
    if unknown:
        valid = sorted(k for k in defaults.to_dict() if not k.startswith("_"))
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{model_type}: unknown config field(s) {', '.join(hints)}")
    return built
