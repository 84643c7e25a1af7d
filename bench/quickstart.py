"""Wall time of the README's headline command, `attribench run bam.mcs --explainer=ig`, cold and warm.

- cold: a fresh `ATTRIBENCH_HOME` in a temporary folder (no data, no weights) and no store: it draws the
  `bam-synth` composites, trains the object and the scene model, computes IG and scores;
- warm: the same home and the same store, run again (`--warm` times, median): everything is reused;
- new store: the same home (data and weights cached), the store deleted first: attributions recomputed.

The command runs as a user types it, in the temporary folder (its store `./attribench.h5` lands there),
with the default torch threads; the figures include interpreter start-up and imports.

Run: python bench/quickstart.py [--warm 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from timing import machine

COMMAND = ["attribench", "run", "bam.mcs", "--explainer=ig"]
TARGETS = {"cold": 180.0, "warm": 15.0}


def timed(folder: Path, home: Path) -> tuple[float, str]:
    """Seconds of one run of the command in `folder` with `ATTRIBENCH_HOME=home`, and its last output line
    that holds the value."""
    env = {**os.environ, "ATTRIBENCH_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run(COMMAND, cwd=folder, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    rows = [line for line in done.stdout.splitlines() if "methods.ig" in line]
    return seconds, " ".join(rows[-1].replace("│", " ").split()) if rows else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=3, help="warm runs (median)")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at the start {os.getloadavg()[0]:.1f}")
    print(f"command: {' '.join(COMMAND)}\n")
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp), Path(tmp) / "home"
        cold, row = timed(folder, home)
        warm = statistics.median(timed(folder, home)[0] for _ in range(args.warm))
        (folder / "attribench.h5").unlink()
        fresh, _ = timed(folder, home)
    print("| run | wall time | target | met |\n|---|---:|---:|---|")
    for name, seconds in (("cold (fresh home, no store)", cold), (f"warm (median of {args.warm})", warm)):
        target = TARGETS[name.split()[0]]
        print(f"| {name} | {seconds:.1f} s | ≤ {target:.0f} s | {'yes' if seconds <= target else 'no'} |")
    print(f"| new store (home cached) | {fresh:.1f} s | | |")
    print(f"\nresult row of the cold run: {row}")


if __name__ == "__main__":
    main()
