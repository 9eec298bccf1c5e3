"""report.html and cmp.html opened by a real browser (headless Chromium, network off): no console message at
all, every chart drawn with the points it should have, and a screenshot that is not blank.

Skipped, saying why, where Chromium is not installed (`.ci/run` installs Debian's `chromium`)."""

import json
import re
import shutil
import subprocess

import pytest

from lmforge.report import write_compare
from lmforge.report.series import read_records

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")

OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--window-size=1280,2000"]


def browse(page, *args: str, profile) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *OFFLINE, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           *args, page.as_uri()], capture_output=True, text=True, timeout=120)


def open_page(page, tmp_path) -> dict:
    """The page's DOM after its scripts ran; what it drew; and every console message it printed."""
    shot = tmp_path / f"{page.stem}.png"
    done = browse(page, "--virtual-time-budget=10000", "--dump-dom", profile=tmp_path / "profile-dom")
    browse(page, "--virtual-time-budget=10000", f"--screenshot={shot}", profile=tmp_path / "profile-shot")
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    drawn = re.search(r'data-drawn="([^"]*)"', done.stdout)
    return {"console": console, "shot": shot,
            "drawn": json.loads(drawn.group(1).replace("&quot;", '"')) if drawn else None}


def not_blank(png) -> bool:
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    return pixels.shape[0] > 100 and float(pixels[..., :3].std()) > 0.05


def test_the_report_renders_in_a_browser_with_every_point_drawn(trained_run, tmp_path):
    seen = open_page(trained_run / "report.html", tmp_path)
    assert seen["console"] == []
    rows = read_records(trained_run / "metrics.jsonl").rows
    assert seen["drawn"]["loss"] == len([r for r in rows if "loss" in r])  # the training-loss line's points
    assert seen["drawn"]["lr"] == seen["drawn"]["loss"]
    assert all(n > 0 for n in seen["drawn"].values()), seen["drawn"]
    assert not_blank(seen["shot"])


def test_the_comparison_renders_in_a_browser(trained_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    out = write_compare([trained_run, other], tmp_path / "cmp.html", "val_loss", "time")
    seen = open_page(out, tmp_path)
    assert seen["console"] == []
    assert seen["drawn"] == {"val_loss": 2}  # two evaluations in the first run's line
    assert not_blank(seen["shot"])
