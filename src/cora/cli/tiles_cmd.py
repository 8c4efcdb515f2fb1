"""``cora tiles PANORAMA --out DIR``: every view of the configured crop strategy as PNG + geometry.

Writes ``view_00.png`` …, ``views.json`` (the geometry of each view, the ERP size and the
image-processing config) and ``contact_sheet.png`` (the panorama with each view's footprint
and the views below it, labelled with yaw/pitch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cora.cli.main import UserError

ORDER = 40


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tiles", help="cut a panorama into the configured views (PNGs, views.json, contact sheet)")
    parser.add_argument("panorama", nargs="?", help="ERP panorama image (2:1)")
    parser.add_argument("--image", dest="image", default=None, help="same as the positional PANORAMA")
    parser.add_argument("--config", default="configs/default.yaml", help="config whose image_processing is used")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=_tiles)


def write_png(path: Path, rgb) -> None:
    import cv2

    from cora.utils.io import atomic_open

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_open(path, "wb") as handle:
        handle.write(data.tobytes())


def _tiles(args: argparse.Namespace) -> int:
    from cora.config import load_config
    from cora.processors.contact_sheet import contact_sheet
    from cora.processors.image_io import ImageError
    from cora.processors.views import PanoramaViews
    from cora.utils.io import atomic_write_json

    image = args.image or args.panorama
    if not image:
        raise UserError("cora tiles: give the panorama (cora tiles PANO.jpg --out DIR)")
    cfg = load_config(args.config).image_processing
    views = PanoramaViews.from_config(cfg)
    try:
        erp = views.load(image)
    except ImageError as exc:
        raise UserError(str(exc)) from exc
    tiles = views.sample(erp)
    out = Path(args.out)
    records = []
    for geom, tile in zip(views.geometries, tiles):
        name = f"view_{geom.index:02d}.png"
        write_png(out / name, tile)
        records.append({**geom.to_dict(), "file": name})
    atomic_write_json(
        out / "views.json",
        {
            "image": str(image),
            "erp_size": [int(erp.shape[1]), int(erp.shape[0])],
            "image_processing": cfg.model_dump(mode="json"),
            "views": records,
        },
    )
    write_png(out / "contact_sheet.png", contact_sheet(erp, tiles, views.geometries))
    print(f"{len(records)} views ({cfg.crop_strategy}) of {image} -> {out}/ (views.json, contact_sheet.png)")
    return 0
