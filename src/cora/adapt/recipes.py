"""Training recipes for adapted VLMs and adapter save/load/merge.

``aligner``: only the projector/merger trains (LLM and ViT frozen); its weights save alone.
``lora``: PEFT LoRA on every linear layer of the LLM, the aligner trained whole through
``modules_to_save``; the PEFT adapter folder saves alone and merges into the base for export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from cora.adapt.model import AdaptedVLM
from cora.config.sections.training import LoRAConfig
from cora.utils.io import atomic_write_json

ALIGNER_FILE = "aligner.safetensors"
ADAPTER_META = "cora_adapter.json"


def aligner_module_names(model: nn.Module, suffixes: tuple[str, ...]) -> list[str]:
    """Concrete module names of the aligner (a ``ModuleList`` is expanded into its members)."""
    names = []
    for name, module in model.named_modules():
        if any(name == s or name.endswith("." + s) for s in suffixes):
            if isinstance(module, nn.ModuleList):
                names += [f"{name}.{i}" for i in range(len(module))]
            else:
                names.append(name)
    if not names:
        raise ValueError(f"no aligner module matching {list(suffixes)} in {type(model).__name__}")
    return names


def llm_linear_names(model: nn.Module, prefix: str, targets: list[str]) -> list[str]:
    """Full names of the LLM's ``nn.Linear`` layers to adapt: all of them (``['all-linear']``) or those whose
    last name part is in ``targets``; ``lm_head`` never."""
    names = [
        n
        for n, m in model.named_modules()
        if n.startswith(prefix) and isinstance(m, nn.Linear) and not n.endswith("lm_head")
    ]
    if targets != ["all-linear"]:
        names = [n for n in names if n.rsplit(".", 1)[-1] in targets]
    if not names:
        raise ValueError(f"no linear layer under {prefix!r} matches LoRA targets {targets}")
    return names


def apply_recipe(adapted: AdaptedVLM, recipe: str, lora: LoRAConfig | None = None) -> dict[str, int]:
    """Set what trains for ``recipe``; returns ``{"trainable": n, "total": n}`` parameter counts."""
    model = adapted.model
    aligner = aligner_module_names(model, adapted.family.aligner_modules)
    if recipe == "aligner":
        for p in model.parameters():
            p.requires_grad_(False)
        for name in aligner:
            for p in model.get_submodule(name).parameters():
                p.requires_grad_(True)
    elif recipe == "lora":
        if adapted.peft is None:
            lora = lora or LoRAConfig(target_modules=["all-linear"])
            config = LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=llm_linear_names(model, adapted.family.language_model_prefix, lora.target_modules),
                modules_to_save=aligner,
            )
            adapted.set_peft(get_peft_model(model, config))  # injects in place: adapted.model keeps working
    else:
        raise ValueError(f"unknown recipe {recipe!r}; valid: aligner, lora")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


def save_adapter(adapted: AdaptedVLM, out_dir: str | Path) -> Path:
    """Write only what was trained: the PEFT adapter (LoRA + aligner copy) or the aligner's weights."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if adapted.peft is not None:
        adapted.peft.save_pretrained(out)
        kind = "lora"
    else:
        names = aligner_module_names(adapted.model, adapted.family.aligner_modules)
        state = {
            f"{n}.{k}": v.detach().cpu().contiguous()
            for n in names
            for k, v in adapted.model.get_submodule(n).state_dict().items()
        }
        tmp = out / f".{ALIGNER_FILE}.tmp"
        save_file(state, str(tmp))
        tmp.replace(out / ALIGNER_FILE)
        kind = "aligner"
    atomic_write_json(out / ADAPTER_META, {"kind": kind, "family": adapted.family.name})
    return out


def load_adapter(adapted: AdaptedVLM, adapter_dir: str | Path, trainable: bool = False) -> str:
    """Load what :func:`save_adapter` wrote onto ``adapted`` (same base weights); returns the adapter kind."""
    path = Path(adapter_dir)
    meta_file = path / ADAPTER_META
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: not an adapter folder (no {ADAPTER_META})")
    meta = json.loads(meta_file.read_text())
    if meta.get("family") != adapted.family.name:
        raise ValueError(f"{path}: adapter of family {meta.get('family')!r}, model is {adapted.family.name!r}")
    if meta["kind"] == "lora":
        adapted.set_peft(PeftModel.from_pretrained(adapted.model, str(path), is_trainable=trainable))
    else:
        state = load_file(str(path / ALIGNER_FILE))
        known = set(adapted.model.state_dict())
        missing = [k for k in state if k not in known]
        if missing:
            raise ValueError(f"{path}: aligner weights {missing[:3]} do not exist in the model")
        adapted.model.load_state_dict(state, strict=False)
    return meta["kind"]


def export_merged(adapted: AdaptedVLM, out_dir: str | Path) -> Path:
    """LoRA merged into the base, the trained aligner in place: a plain HF folder + processor.

    ``<ModelClass>.from_pretrained(out_dir)`` loads it with no PEFT installed.
    """
    out = Path(out_dir)
    model = adapted.peft.merge_and_unload() if adapted.peft is not None else adapted.model
    adapted.set_peft(None)
    adapted.model = model
    model.save_pretrained(out)
    adapted.processor.save_pretrained(out)
    _name_public_processor_class(out, adapted.processor)
    return out


def _name_public_processor_class(out: Path, processor: Any) -> None:
    """The saved files name the family's own processor class (e.g. ``Qwen2_5_VLProcessor``), not our
    image-only subclass: ``AutoProcessor`` resolves names in transformers, and with a name it does not know
    it silently returned the tokenizer alone (images were then dropped at generation)."""
    public = next(c for c in type(processor).__mro__ if c.__module__.startswith("transformers."))
    for path in out.glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("processor_class") not in (None, public.__name__):
            data["processor_class"] = public.__name__
            atomic_write_json(path, data)
