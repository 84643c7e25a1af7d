"""`attribench bam ...`: building BAM's data from COCO and MiniPlaces."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(name="bam")
def bam_group() -> None:
    """BAM: build the real dataset."""


@bam_group.command()
@click.option(
    "--coco-root",
    type=click.Path(path_type=Path),
    required=True,
    help="COCO train2017 images (the folder, or one that holds train2017/).",
)
@click.option(
    "--coco-annotations",
    type=click.Path(path_type=Path),
    required=True,
    help="COCO's instances_train2017.json.",
)
@click.option(
    "--miniplaces-root",
    type=click.Path(path_type=Path),
    required=True,
    help="MiniPlaces, the folder that holds train/.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bam_data"),
    show_default=True,
    help="Where to write the built sets.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=int, default=128, show_default=True, help="Image side (MiniPlaces: 128).")
@click.option("--n", type=int, default=1000, show_default=True, help="Images per class (BAM: 1000).")
@click.option("--val", type=int, default=None, help="Validation images per class (default: the last 10 %).")
def build(
    coco_root: Path,
    coco_annotations: Path,
    miniplaces_root: Path,
    out: Path,
    seed: int,
    size: int,
    n: int,
    val: int | None,
) -> None:
    """Build BAM's sets from COCO objects and MiniPlaces scenes (the original recipe, seeded)."""
    from attribench_bam.build import build_real, load_meta

    folder = build_real(coco_root, coco_annotations, miniplaces_root, out, seed=seed, size=size, n=n, val=val)
    meta = load_meta(folder)
    rows = ", ".join(f"{split} {info['rows']}" for split, info in meta["splits"].items())
    click.echo(f"BAM built in {folder} ({rows} composites). Use it with: --data-root {folder}")
