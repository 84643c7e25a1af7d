"""Open a report's index.html in headless Chromium: take a screenshot, fail on console errors and on
references to anything outside the page.

An optional check (Chromium is not a dependency; on Debian: `apt-get install -y chromium`):

    attribench report --store attribench.h5 --out report
    python scripts/check_report.py report/index.html --screenshot report.png

The page is loaded with name resolution switched off, and its `src`, `href` and CSS `url()` references are
checked to be inline (`data:`) or anchors (`#...`): headless Chromium does not log every failed load.
Exit status 0: the page is self-contained and rendered with an empty console.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CONSOLE = re.compile(r"CONSOLE\(\d+\)\]|:CONSOLE:|Failed to load resource", re.IGNORECASE)
PNG = b"\x89PNG\r\n\x1a\n"
REFERENCE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?)([^"')\s>]*)""", re.IGNORECASE)


def external_references(html: str) -> list[str]:
    """References in `html` that are neither inline data nor anchors within the page."""
    return [
        f"external reference: {ref}" for ref in REFERENCE.findall(html) if not ref.startswith(("data:", "#"))
    ]


def find_chromium(given: str | None) -> str:
    """The Chromium executable to use, or exit with a message saying how to get one."""
    found = shutil.which(given) if given else next(filter(None, map(shutil.which, CANDIDATES)), None)
    if found is None:
        sys.exit(
            "No Chromium found; install it (Debian: apt-get install -y chromium) or pass --chromium PATH."
        )
    return found


def check(page: Path, screenshot: Path, chromium: str, width: int, height: int) -> list[str]:
    """Render `page` into `screenshot`; the console messages and problems found (empty: all good)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # Chromium refuses to run as root (containers, CI) otherwise
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={width},{height}",
            f"--screenshot={screenshot}",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    problems = [line.strip() for line in done.stderr.splitlines() if CONSOLE.search(line)]
    if done.returncode != 0:
        problems.append(f"chromium exited with status {done.returncode}: {done.stderr.strip()[-500:]}")
    if not screenshot.exists() or not screenshot.read_bytes().startswith(PNG):
        problems.append(f"no screenshot was written to {screenshot}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="index.html, or the report folder holding it")
    parser.add_argument("--screenshot", type=Path, default=Path("report-screenshot.png"))
    parser.add_argument("--chromium", help="Chromium executable (default: the first found on PATH)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=4000, help="screenshot height in pixels")
    args = parser.parse_args()
    page = args.page / "index.html" if args.page.is_dir() else args.page
    if not page.is_file():
        sys.exit(f"No report at '{page}'; run `attribench report --out DIR` first.")
    problems = external_references(page.read_text(encoding="utf-8"))
    problems += check(page, args.screenshot, find_chromium(args.chromium), args.width, args.height)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"{page}: {len(problems)} problem(s).")
    print(f"{page}: rendered without console errors; screenshot {args.screenshot}")


if __name__ == "__main__":
    main()
