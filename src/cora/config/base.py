"""The strict pydantic base every config section derives from."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from cora.registry import Registry


class StrictModel(BaseModel):
    """Unknown keys are errors (typos must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def registered(registry: Registry) -> type[str]:
    """A ``str`` field whose value must be a name in ``registry`` (error: the closest valid names)."""
    return Annotated[str, AfterValidator(registry.check)]  # type: ignore[return-value]


class ArchSpec(BaseModel):
    """A model described by architecture instead of by weights: random init, no hub.

    ``model_type`` is the HF ``model_type`` (``siglip_vision_model``, ``qwen3``, ``llama``,
    ``clip_vision_model``, ``dinov2``...); every other key is a field of that HF config
    class (``hidden_size``, ``num_hidden_layers``...). Unknown fields are rejected when the
    model is built, because only the HF config class knows its own fields.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_type: str

    def hf_kwargs(self) -> dict:
        """The HF config keyword arguments (everything except ``model_type``)."""
        return dict(self.model_extra or {})
