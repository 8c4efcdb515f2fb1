"""The strict pydantic base every config section derives from."""

from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator

from cora.registry import Registry


def _takes_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(arg) for arg in typing.get_args(annotation))


class StrictModel(BaseModel):
    """Unknown keys are errors (typos must not be silently ignored); so are booleans where a number is
    expected (pydantic would read ``max_steps: true`` as 1) and infinite or NaN numbers."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        takes_bool = info.field_name is None or _takes_bool(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool) and not takes_bool:
            raise ValueError(f"expected a number or a name, got the boolean {str(value).lower()}")
        return value


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
