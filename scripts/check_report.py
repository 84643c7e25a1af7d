"""Open a report's index.html in headless Chromium: take a screenshot, fail on console errors, on
references to anything outside the page, and on a page that scrolls sideways at the window's width.

An optional check (Chromium is not a dependency; on Debian: `apt-get install -y chromium`):

    attribench report --store attribench.h5 --out report
    python scripts/check_report.py report/index.html --screenshot report.png

The page is loaded with name resolution switched off, and its `src`, `href` and CSS `url()` references are
checked to be inline (`data:`) or anchors (`#...`): headless Chromium does not log every failed load.
The width is measured on a copy of the page with a script added (the report itself has none) that records,
once loaded, how far the document is wider than the window and which elements stick out; Chromium's
`--dump-dom` hands that back. Exit status 0: the page is self-contained, rendered with an empty console
and fits the width (1280 px unless --width says otherwise).
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
MEASURE = """<script>
addEventListener("load", () => {
  const width = document.documentElement.clientWidth;
  const sticksOut = (e) => e.getBoundingClientRect().right > width + 1;
  const wide = [...document.querySelectorAll("body *")]
    .filter((e) => sticksOut(e) && !sticksOut(e.parentElement) && !e.parentElement.closest(".scroll"))
    .slice(0, 5)
    .map((e) => e.tagName.toLowerCase() + (e.className ? "." + e.className : ""));
  const over = document.documentElement.scrollWidth - width;
  document.body.setAttribute("data-overflow", over + "|" + wide.join(" "));
});
</script>"""
OVERFLOW = re.compile(r'data-overflow="(-?\d+)\|([^"]*)"')
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


def chromium_run(
    chromium: str, page: Path, width: int, height: int, *action: str
) -> subprocess.CompletedProcess:
    """Headless Chromium on `page` at `width` x `height`, offline, with a throw-away profile."""
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
            *action,
            page.resolve().as_uri(),
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)


def sideways_scroll(page: Path, chromium: str, width: int) -> list[str]:
    """A problem when the page is wider than a `width`-pixel window, naming what sticks out."""
    with tempfile.TemporaryDirectory() as folder:
        measured = Path(folder) / "measured.html"
        measured.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), "utf-8")
        done = chromium_run(chromium, measured, width, 800, "--dump-dom")
    found = OVERFLOW.search(done.stdout)
    if found is None:
        return [f"could not measure the page's width (chromium exited with status {done.returncode})"]
    over, wide = int(found.group(1)), found.group(2)
    if over > 0:
        return [f"the page scrolls sideways at {width} px by {over} px (too wide: {wide or 'unknown'})"]
    return []


def check(page: Path, screenshot: Path, chromium: str, width: int, height: int) -> list[str]:
    """Render `page` into `screenshot`; the console messages and problems found (empty: all good)."""
    done = chromium_run(chromium, page, width, height, f"--screenshot={screenshot}")
    problems = [line.strip() for line in done.stderr.splitlines() if CONSOLE.search(line)]
    if done.returncode != 0:
        problems.append(f"chromium exited with status {done.returncode}: {done.stderr.strip()[-500:]}")
    if not screenshot.exists() or not screenshot.read_bytes().startswith(PNG):
        problems.append(f"no screenshot was written to {screenshot}")
    return problems + sideways_scroll(page, chromium, width)


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
    print(f"{page}: rendered without console errors, fits {args.width} px; screenshot {args.screenshot}")


if __name__ == "__main__":
    main()
