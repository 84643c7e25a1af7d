"""SMERF: time to generate each setting's TextBox data and to train its model to the per-bucket gate.

    python bench/smerf_training.py                          # default preset, all seven settings
    python bench/smerf_training.py --preset paper --epoch   # paper preset: data + one training epoch
    python bench/smerf_training.py --device cuda            # train on a GPU

Data generation is timed in-process (train + test split, written to the cache). Training is timed as the
CLI a user runs (`attribench run smerf.afl --setting S --explainer random --num-imgs 1`) after the data is
cached, so the same weights are reused by later runs; its record (`.json` beside the weights) gives the
training seconds, attempts and the worst bucket. `--epoch` instead times one epoch of training (for presets
too large to train here). Use a scratch `ATTRIBENCH_HOME` for cold figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from attribench_smerf.datasets import make_textbox
from attribench_smerf.models import SmerfModel
from attribench_smerf.settings import SETTINGS

from attribench_core.cache import home


def generate(setting: str, preset: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    train, test = make_textbox("train", 0, setting, preset), make_textbox("test", 0, setting, preset)
    return time.perf_counter() - started, len(train), len(test)


def train_with_cli(setting: str, preset: str, device: str) -> dict:
    started = time.perf_counter()
    command = ["attribench", "run", "smerf.afl", "--setting", setting, "--preset", preset, "--device", device]
    subprocess.run(
        [*command, "--explainer", "random", "--num-imgs", "1", "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    records = sorted((home() / "models" / f"smerf.{setting}").glob("*.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(records[-1].read_text())
    return {
        "wall": wall,
        "train": record.get("training", {}).get("seconds", float("nan")),
        "attempts": record.get("training", {}).get("attempts", "?"),
        "min_bucket": record["verification"]["summary"]["min_bucket_accuracy"],
    }


def one_epoch(setting: str, preset: str, device: str) -> float:
    train, test = make_textbox("train", 0, setting, preset), make_textbox("test", 0, setting, preset)
    model = SmerfModel(setting, epochs=1, gate=1.01)  # the gate never stops it early: exactly one epoch
    module = model.build(2, train.image_shape)
    started = time.perf_counter()
    model.fit(module, train, seed=0, validation=test, device=device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--epoch", action="store_true", help="time one training epoch instead of training")
    parser.add_argument("--data-only", action="store_true")
    parser.add_argument("--device", default="cpu", help="where the CLI trains (cpu, cuda)")
    args = parser.parse_args()
    print(
        f"# preset {args.preset}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"ATTRIBENCH_HOME={home()}"
    )
    for setting in args.settings:
        seconds, n_train, n_test = generate(setting, args.preset)
        line = f"{setting:12s} data {seconds:7.1f} s ({n_train} train, {n_test} test)"
        if args.epoch:
            line += f" | one epoch {one_epoch(setting, args.preset, args.device):7.1f} s"
        elif not args.data_only:
            t = train_with_cli(setting, args.preset, args.device)
            line += (
                f" | training {t['train']:7.1f} s ({t['attempts']} attempt(s), worst bucket "
                f"{t['min_bucket']:.3f}), run {t['wall']:.1f} s"
            )
        print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
