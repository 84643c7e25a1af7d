"""`attribench smerf ...`: the plugin's own commands."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(name="smerf")
def smerf_group() -> None:
    """SMERF: the paper's study."""


@smerf_group.command()
@click.option("--num-imgs", type=int, default=20, show_default=True, help="Images per bucket (paper: 20).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=Path("attribench.h5"),
              show_default=True)  # fmt: skip
@click.option("--preset", default="default", show_default=True, help="default or paper (Table 2).")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON result here."
)
def reproduce(
    num_imgs: int, seed: int, device: str, batch_size: int, store: Path, preset: str, out: Path | None
) -> None:
    """PAFL of SMERF's 17 methods on all seven settings, beside the paper's (trains missing models)."""
    from attribench_core import (
        RichProgress,
        RunRequest,
        UsageProblem,
        check_device,
        get_registry,
        json_text,
        run,
    )
    from attribench_smerf.reproduction import METHODS, report

    check_device(device)
    if out is not None and not out.parent.is_dir():
        raise UsageProblem(f"Folder of --out '{out.parent}' does not exist.")
    request = RunRequest(
        "smerf.afl",
        explainers=list(METHODS),
        num_imgs=num_imgs,
        seed=seed,
        device=device,
        batch_size=batch_size,
        store=store,
        options={"setting": "all", "preset": preset},
    )
    with RichProgress(stderr=True) as progress:
        outcome = run(get_registry(), request, progress)
    payload = outcome.to_json()
    if out is not None:
        out.write_text(json_text(payload, indent=1))
    click.echo(report(payload["results"]))
