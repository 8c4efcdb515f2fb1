"""Off-the-shelf VLM families: one file each, named in ``cora.registry.VLM_FAMILIES``."""

from __future__ import annotations

from cora.adapt.families.base import AdaptConfigError, VLMFamily
from cora.registry import VLM_FAMILIES

FAMILIES = VLM_FAMILIES


def get_family(name: str) -> VLMFamily:
    """The family called ``name``; unknown names list the valid ones."""
    if name not in VLM_FAMILIES:
        try:
            VLM_FAMILIES.check(name)
        except ValueError as exc:
            raise AdaptConfigError(f"adapt.family: {exc}") from None
    return VLM_FAMILIES.load(name)()


__all__ = ["FAMILIES", "AdaptConfigError", "VLMFamily", "get_family"]
