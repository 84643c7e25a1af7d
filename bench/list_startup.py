"""`attribench list` start-up time (target < 0.5 s) and proof that it does not import torch.

Run: python bench/list_startup.py
"""

from __future__ import annotations

import subprocess
import sys

from timing import interleaved, machine

LIST = "from attribench_core.cli import main; import sys; sys.argv=['attribench', *sys.argv[1:]]; main()"


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-c", LIST, *args], check=True, capture_output=True)


def main() -> None:
    probe = (
        "import sys; from click.testing import CliRunner; from attribench_core.cli import cli; "
        "CliRunner().invoke(cli, ['list', '--json']); print('torch' in sys.modules)"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    times = interleaved(
        {
            "python -c pass": lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
            "attribench list": lambda: run("list"),
            "attribench list --json": lambda: run("list", "--json"),
        },
        repeats=10,
    )
    print(f"machine: {machine()}")
    for name, seconds in times.items():
        print(f"{name:28s} {seconds * 1000:7.0f} ms")
    print(f"torch imported by list --json: {imported.strip()}")


if __name__ == "__main__":
    main()
