"""A PNG of an lmforge report or comparison page, for the docs: headless Chromium, network off.

    lmforge compare runs/a runs/b --metric val_loss --out cmp.html
    python benchmarks/screenshot.py cmp.html docs/img/cmp.png [--width 1280] [--height 900]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if browser is None:
        sys.exit("screenshot.py: no chromium on PATH (apt-get install chromium)")
    if not args.page.is_file():
        sys.exit(f"screenshot.py: {args.page}: no such file")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
                        f"--window-size={args.width},{args.height}", "--virtual-time-budget=10000",
                        f"--screenshot={args.png.resolve()}", args.page.resolve().as_uri()],
                       check=True, capture_output=True)
    print(args.png)


if __name__ == "__main__":
    main()
