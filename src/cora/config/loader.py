"""YAML loading with ``extends:``, provenance and errors that point at the culprit.

Every key remembers the file that set it last, so a validation error can say
``configs/my.yaml: training.stage_configs.vision.lrr: unknown key (did you mean 'lr'?)``.
"""

from __future__ import annotations

import difflib
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cora.config.schema import CoraConfig
from cora.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

Provenance = dict[str, Path]


class ConfigError(ValueError):
    """A configuration that cannot be loaded; the message names file and key."""


def _deep_merge(
    base: dict[str, Any], base_prov: Provenance, over: dict[str, Any], over_prov: Provenance, prefix: str = ""
) -> tuple[dict[str, Any], Provenance]:
    out = dict(base)
    prov = dict(base_prov)
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key], prov = _deep_merge(out[key], prov, value, over_prov, dotted + ".")
        else:
            # A replaced subtree forgets where its old children came from.
            prov = {k: v for k, v in prov.items() if not (k == dotted or k.startswith(dotted + "."))}
            prov.update({k: v for k, v in over_prov.items() if k == dotted or k.startswith(dotted + ".")})
            out[key] = value
    return out, prov


def _provenance(data: Any, path: Path, prefix: str = "") -> Provenance:
    prov: Provenance = {}
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{prefix}{key}"
            prov[dotted] = path
            prov.update(_provenance(value, path, dotted + "."))
    return prov


#: The configs shipped inside the package (``tiny.yaml``, ``small.yaml`` ...): what ``configs/tiny.yaml`` or
#: ``tiny`` names where no such file exists, so ``cora demo`` works from any folder after ``pip install``.
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def packaged_configs() -> list[str]:
    """The names of the packaged configs (without ``.yaml``)."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def _packaged(name: str | Path) -> Path | None:
    """The packaged config ``name`` means (``configs/tiny.yaml``, ``tiny.yaml`` or ``tiny``); None when the name
    has another folder in it or no such config is packaged."""
    name = Path(name)
    if name.parent.name not in ("", "configs") or len(name.parts) > 2:
        return None
    packaged = PACKAGED_CONFIGS / (name.name if name.suffix in (".yaml", ".yml") else f"{name.name}.yaml")
    return packaged if packaged.is_file() else None


def resolve_config_path(path: str | Path) -> Path:
    """``path`` when it exists; else the packaged config it names; else ``path`` unchanged (the caller
    reports it)."""
    path = Path(path)
    return path if path.is_file() else _packaged(path) or path


def _extended(config: Path, base: str) -> Path:
    """What ``extends: base`` in ``config`` names: the file beside ``config``, else the packaged config of that
    name; never a file of the working directory (the same config must mean the same thing from anywhere)."""
    local = config.parent / base
    return local if local.is_file() else _packaged(base) or local


def load_raw(path: str | Path, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Provenance]:
    """Read one YAML file and everything it ``extends`` (later bases win, the file itself wins last).

    A file name that does not exist but names a packaged config (``extends: tiny.yaml`` from a folder
    of your own) is the packaged one.
    """
    path = (resolve_config_path(path) if not _chain else Path(path)).resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain[_chain.index(path) :], path))
        raise ConfigError(f"extends cycle: {cycle}")
    if not path.is_file():
        where = f" (extended by {_chain[-1]})" if _chain else ""
        raise ConfigError(f"{path}: config file not found{where} (packaged configs: {', '.join(packaged_configs())})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")

    extends = data.pop("extends", None) or []
    if isinstance(extends, str):
        extends = [extends]
    if not isinstance(extends, list) or not all(isinstance(e, str) for e in extends):
        raise ConfigError(f"{path}: extends: must be a path or a list of paths, got {extends!r}")

    merged: dict[str, Any] = {}
    prov: Provenance = {}
    for base in extends:
        base_data, base_prov = load_raw(_extended(path, base), (*_chain, path))
        merged, prov = _deep_merge(merged, prov, base_data, base_prov)
    return _deep_merge(merged, prov, data, _provenance(data, path))


def _unwrap_models(annotation: Any) -> list[Any]:
    """The pydantic models or dict value types an annotation may hold."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _unwrap_models(arg)]
    if origin is dict:
        return [("dict", typing.get_args(annotation)[1])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


# Keys that moved to another section: an old file (or a run folder's saved config.yaml) gets told where.
MOVED_KEYS = {
    "training.language_prior": "demo.language_prior",
    "training.vision_prior": "demo.vision_prior",
}


def _valid_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """The field names allowed at ``loc`` (a path into CoraConfig), if a model lives there."""
    candidates: list[Any] = [CoraConfig]
    for part in loc:
        nxt: list[Any] = []
        for cand in candidates:
            if isinstance(cand, tuple):  # dict value type: the part was a free key
                nxt.extend(_unwrap_models(cand[1]))
            elif isinstance(part, str) and part in cand.model_fields:
                nxt.extend(_unwrap_models(cand.model_fields[part].annotation))
        if not nxt:
            return None
        candidates = nxt
    models = [c for c in candidates if not isinstance(c, tuple)]
    if not models:
        return None
    return sorted({name for m in models for name in m.model_fields})


def _source(dotted: str, prov: Provenance, root: Path) -> Path:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        hit = prov.get(".".join(parts[:i]))
        if hit is not None:
            return hit
    return root


def _explain(exc: ValidationError, prov: Provenance, root: Path) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        # A section-level check may name the key at fault (ctx "key"): blame the file that set that key.
        key = (err.get("ctx") or {}).get("key")
        dotted = f"{dotted}.{key}" if key else dotted
        source = _source(dotted, prov, root)
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(loc[:-1]) or []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            if dotted in MOVED_KEYS:
                hint = f" (it moved to {MOVED_KEYS[dotted]})"
            lines.append(f"{source}: {dotted}: unknown key{hint}; valid keys here: {', '.join(valid)}")
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict) else "a mapping"
            lines.append(f"{source}: {dotted}: {err['msg']} (got {shown})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(path: str | Path, overlays: Sequence[tuple[Mapping[str, Any], str]] = ()) -> CoraConfig:
    """Load, merge and validate a YAML config; raise ``ConfigError`` naming file and key.

    ``overlays``: ``(delta, source)`` pairs merged on top in order, by the same rules as ``extends``
    (maps key by key, lists replaced); an error in a delta names its ``source`` (e.g. ``sweep.yaml:
    rows.resize``).
    """
    root = resolve_config_path(path).resolve()
    data, prov = load_raw(root)
    for delta, source in overlays:
        if not isinstance(delta, Mapping):
            raise ConfigError(f"{source}: a config delta must be a mapping of sections, got {type(delta).__name__}")
        if "extends" in delta:
            raise ConfigError(f"{source}: extends: is not allowed in a config delta")
        data, prov = _deep_merge(data, prov, dict(delta), _provenance(dict(delta), Path(source)))
    try:
        return CoraConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, prov, root)) from None


def config_to_yaml(config: CoraConfig) -> str:
    """The resolved config as YAML (every default spelled out), loadable by ``load_config``."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_config(config: CoraConfig, path: str | Path) -> None:
    atomic_write_text(path, config_to_yaml(config))
