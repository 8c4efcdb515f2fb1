"""The README's screenshots of the page of ``cora serve`` (docs/images/web-page*.png).

    python docs/make_screenshots.py [--run runs/cora-tiny] [--panorama .cora/synth/images/00000.png]

Serves the trained run on a free local port, opens the page in headless chromium (Playwright driving
Debian's chromium), loads the panorama, asks two questions and captures a desktop and a phone-sized page.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.test_server import served  # noqa: E402

from cora.inference import PanoramaGenerator  # noqa: E402
from cora.inference.server import create_app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/cora-tiny")
    parser.add_argument("--panorama", default=".cora/synth/images/00000.png")
    args = parser.parse_args()
    out = ROOT / "docs" / "images"
    app = create_app(PanoramaGenerator.from_run(args.run), model_name=Path(args.run).name)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with served(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
        )
        for name, viewport in (("web-page.png", (1280, 760)), ("web-page-phone.png", (390, 844))):
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(base)
            page.wait_for_function("window.cora && document.getElementById('model').textContent.includes('views')")
            page.set_input_files("#file", args.panorama)
            page.wait_for_function("window.cora.tiles > 0")
            for i, question in enumerate(("What is behind you?", "How many objects are there?"), start=1):
                page.fill("#question", question)
                page.click("#send")
                page.wait_for_function(f"window.cora.answers === {i}", timeout=60_000)
            page.click(".turn .up")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / name), full_page=name.endswith("phone.png"))
            print(out / name)
        browser.close()


if __name__ == "__main__":
    main()
