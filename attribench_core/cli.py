"""The `attribench` command line. Heavy modules (torch, the runner, matplotlib) are imported inside the
commands that need them (`run`, `report`), never at start-up.

Errors: an `AttribenchError` is printed on one line (exit 1; exit 2 for usage problems); `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from attribench_core import __version__, plugins
from attribench_core.devices import check_device
from attribench_core.errors import AttribenchError, UsageProblem
from attribench_core.params import Param
from attribench_core.progress import RichProgress
from attribench_core.registry import KINDS, Entry
from attribench_core.seeding import MAX_SEED

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


class OneLineError(click.ClickException):
    """A ClickException printed as one line, with the exit code of its kind (1, or 2 for usage)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        label = "Usage error" if self.exit_code == 2 else "Error"
        click.echo(f"{label}: {self.message}", err=True)


class AttribenchGroup(click.Group):
    """The root group: adds the plugins' commands on first use and translates errors into one line."""

    _plugin_commands_for: object = None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """`--debug` is the root's option but may come anywhere (`attribench run ... --debug`): moved to the
        front, up to a `--` that ends the options."""
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:
            args = ["--debug", *(a for i, a in enumerate(args) if a != "--debug" or i >= end)]
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._add_plugin_commands(ctx)
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(ctx)
        return super().list_commands(ctx)

    def _add_plugin_commands(self, ctx: click.Context) -> None:
        """Load the plugins (once; strictly with `--strict`) and add their commands."""
        loaded = plugins.current(strict=bool(ctx.params.get("strict")))[0]
        if self._plugin_commands_for is not loaded:
            self._plugin_commands_for = loaded
            loaded.manager.hook.register_commands(cli=self)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except AttribenchError as exc:
            if ctx.params.get("debug"):
                raise
            raise OneLineError(str(exc), 2 if isinstance(exc, UsageProblem) else 1) from exc
        except Exception as exc:  # a bug or a library failure: one line unless --debug
            if ctx.params.get("debug"):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise OneLineError(f"{type(exc).__name__}: {first} (run with --debug for the traceback)") from exc


@click.group(cls=AttribenchGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="attribench")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "--strict", is_flag=True, help="Fail when a plugin does not load (also ATTRIBENCH_STRICT_PLUGINS=1)."
)
def cli(debug: bool, strict: bool) -> None:
    """Benchmark feature-attribution methods for PyTorch image classifiers."""
    # --debug and --strict are read where they act: errors (`invoke`) and plugin loading, which happens
    # before this runs (`_add_plugin_commands`, when the sub-command is looked up).


# -- list / plugins -------------------------------------------------------------------------------


def _of_category(entries: list[Entry], category: str, metrics: list[Entry]) -> list[Entry]:
    """The metrics among `entries` registered with this `category=...`; a category that none of `metrics`
    (all registered metrics) has is a usage error naming those there are."""
    known = sorted({e.meta["category"] for e in metrics if "category" in e.meta})
    if category not in known:
        raise UsageProblem(f"No metric of category '{category}'; categories: {', '.join(known) or 'none'}.")
    return [e for e in entries if e.kind == "metric" and e.meta.get("category") == category]


def _details(entry: Entry) -> dict[str, Any]:
    """What `list -v` adds: declared parameters (explainers), direction and options (metrics)."""
    target = entry.load()
    out: dict[str, Any] = {}
    if entry.kind == "explainer":
        out["parameters"] = {p.name: p.default for p in getattr(target, "parameters", ())}
    elif entry.kind == "metric":
        out.update(
            higher_is_better=target.higher_is_better,
            category=target.category,
            dataset=target.dataset,
            model=target.model,
            options={p.name: p.default for p in target.options},
        )
    elif entry.kind == "model":
        out["dataset"] = entry.create().dataset  # of an instance: registered arguments may choose it
    elif entry.kind == "executor":
        out["options"] = {f"--{entry.name}-{p.name.replace('_', '-')}": p.default for p in target.options}
    return out


@cli.command("list", context_settings=CONTEXT)
@click.argument("kind", required=False, type=click.Choice([f"{k}s" for k in KINDS]))
@click.option("--plugin", "namespace", help="Only what this plugin registered (e.g. methods).")
@click.option(
    "--category", help="Only metrics of this category (e.g. ground_truth, faithfulness), as registered."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Also show parameters and options (imports the plugins' code)."
)
def list_command(
    kind: str | None, namespace: str | None, category: str | None, as_json: bool, verbose: bool
) -> None:
    """List registered datasets, models, explainers, metrics, report sections and executors."""
    registry = plugins.get_registry()
    entries = registry.entries(kind[:-1] if kind else None, namespace)
    if category is not None:
        entries = _of_category(entries, category, registry.entries("metric"))
    rows = [
        {
            "name": e.qualified,
            "kind": e.kind,
            "plugin": e.namespace,
            "description": e.summary(),
            "aliases": list(e.aliases),
            **e.meta,
            **(_details(e) if verbose else {}),
        }
        for e in entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "description"):
        table.add_column(column)
    if verbose:
        table.add_column("details")
    for row in rows:
        cells = [
            row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else ""),
            row["kind"],
            row["description"],
        ]
        if verbose:
            extra = {
                k: v for k, v in row.items() if k not in ("name", "kind", "plugin", "description", "aliases")
            }
            cells.append("; ".join(f"{k}: {v}" for k, v in extra.items()))
        table.add_row(*cells)
    _console().print(table)


@cli.command("plugins", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """Show loaded plugins: namespace, distribution, version, hooks, and load errors."""
    records = plugins.current()[0].records.values()
    rows = [vars(r) for r in records]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in records:
        status = f"[red]failed: {r.error}[/red]" if r.error else ", ".join(r.hooks) or "(no hooks)"
        _console().print(f"[bold]{r.namespace}[/bold]  {r.dist or r.module} {r.version or ''}  {status}")


# -- run ------------------------------------------------------------------------------------------


def _metric_options(args: list[str]) -> dict[str, str]:
    """Parse the metric-specific `--name value` / `--name=value` arguments left over by Click."""
    options: dict[str, str] = {}
    items = iter(args)
    for arg in items:
        if not arg.startswith("--") or len(arg) < 3:
            raise UsageProblem(f"Unexpected argument '{arg}'. Metric options are written --name value.")
        name, sep, value = arg[2:].partition("=")
        if not sep:
            value = next(items, None)
            if value is None or value.startswith("--"):
                raise UsageProblem(f"Option --{name} needs a value.")
        options[name.replace("-", "_")] = value
    return options


def _executor_options(name: str, options: dict[str, str]) -> dict[str, str]:
    """Move the options of executor `name` (`--ray-address` for `ray` / `ray.ray`) out of `options`."""
    prefix = plugins.get_registry().resolve("executor", name).name + "_"
    return {key.removeprefix(prefix): options.pop(key) for key in list(options) if key.startswith(prefix)}


class RunCommand(click.Command):
    """`run`, whose `--help` after a METRIC also describes that metric (`attribench run bam.mcs --help`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(a in ctx.help_option_names for a in args):  # --help is eager: note METRIC before it acts
            ctx.meta["attribench.metric"] = self.make_parser(ctx).parse_args(list(args))[0].get("metric")
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help(ctx, formatter)
        name = ctx.meta.get("attribench.metric")
        if isinstance(name, str):  # not given: click's parser leaves a sentinel
            entry = plugins.get_registry().resolve("metric", name)
            _format_metric(entry, entry.load(), formatter)


def _format_metric(entry: Entry, metric: Any, formatter: click.HelpFormatter) -> None:
    """The metric's description, direction, defaults and options, as `run METRIC --help` shows them."""
    explainers = ", ".join(metric.default_explainers) or "every installed explainer"
    with formatter.section(f"Metric {entry.qualified}"):
        formatter.write_text(entry.summary())
        doc = (metric.__doc__ or "").strip().split("\n\n")[0]
        if doc and doc != entry.summary():
            formatter.write_paragraph()
            formatter.write_text(" ".join(doc.split()))
        formatter.write_paragraph()
        formatter.write_dl(
            [
                ("direction", "higher is better" if metric.higher_is_better else "lower is better"),
                ("category", metric.category),
                ("dataset", f"{metric.dataset} (--dataset)"),
                ("model", f"{metric.model} (--model)"),
                ("images", f"{metric.num_imgs} (--num-imgs)"),
                ("explainers", f"{explainers} (--explainer)"),
            ]
        )
    if metric.options:
        with formatter.section(f"Options of {entry.qualified} (--name value, after the metric)"):
            formatter.write_dl([_option_row(p) for p in metric.options])


def _option_row(param: Param) -> tuple[str, str]:
    """`--name TYPE` and its help with default, choices and range, as click shows its own options."""
    facts = [f"default: {param.default if param.default not in ('', None) else '(none)'}"]
    if param.choices is not None:
        facts.append("one of " + ", ".join(map(str, param.choices)))
    if param.range_text():
        facts.append(param.range_text())
    name = f"--{param.name.replace('_', '-')} {click.types.convert_type(param.type).name.upper()}"
    return name, f"{param.help}  [{'; '.join(facts)}]".strip()


@cli.command(
    "run",
    cls=RunCommand,
    context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("metric")
@click.option(
    "-e",
    "--explainer",
    "explainers",
    multiple=True,
    help="Explainer name, optionally with parameters: ig:steps=32,internal_batch_size=16. "
    "Repeat for several; 'all' runs every available explainer. Default: the metric's default explainers "
    "if it names any, else all.",
)
@click.option("--num-imgs", type=int, help="Number of test images to evaluate (default: the metric's).")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help=f"Drives data, sampling, noise and metrics; 0 to {MAX_SEED}.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Images per attribution batch.")
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("attribench.h5"),
    show_default=True,
    help="HDF5 attribution store.",
)
@click.option(
    "--compression",
    type=click.Choice(["none", "lzf", "gzip"]),
    default="none",
    show_default=True,
    help="Compression of the maps a run adds (after HDF5's shuffle filter): none writes fastest; gzip "
    "saves about 14 % on gradient maps (docs/store.md).",
)
@click.option("--dataset", help="Dataset to use instead of the metric's default.")
@click.option(
    "--model",
    help="Model to use instead of the metric's default: a registered name, your own FILE.py:CALLABLE or "
    "package.module:CALLABLE (returning a torch.nn.Module), a TorchScript file, or hf:DIR (a saved "
    "Hugging Face image classifier).",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="Weights file for the run's model (--model or the metric's): a state dict, bare or under "
    "'model', 'state_dict' or 'model_state_dict'.",
)
@click.option(
    "--normalize",
    help="Input normalisation of your own model, put before it as a first module (explainers see images "
    "in [0,1]): imagenet, none, or MEAN/STD with one value per channel (0.485,0.456,0.406/0.229,0.224,0.225)."
    " Default: none, or for hf:DIR the mean/std of its preprocessor_config.json.",
)
@click.option(
    "--cam-layer",
    help="Layer that CAM methods hook (a dotted module path of the model; NAME:tokens for a transformer "
    "block whose output is [B, 1+h*w, D]). Default: the model's declared layer, else its last "
    "convolution that is not a patch embedding.",
)
@click.option("--retrain", is_flag=True, help="Train the models again instead of using cached weights.")
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    help="Your image folder (DIR/<class>/<image>, optional classes.txt): the run uses core.images on it.",
)
@click.option(
    "--annotations",
    type=click.Path(path_type=Path),
    help="Ground-truth regions for --images: a COCO .json, or a folder of mask PNGs or VOC XML files.",
)
@click.option(
    "--size",
    type=int,
    help="Side of the --images after resizing the shorter side and centre cropping (default 224); "
    "without --images, the metric's own --size option.",
)
@click.option(
    "--executor",
    default="core.local",
    show_default=True,
    help="Where batches are computed: core.local (this process, --device), or a distributed executor "
    "such as ray (its own options follow as --ray-NAME value, e.g. --ray-address).",
)
@click.option("--workers", type=int, help="Workers of a distributed executor (default: its own).")
@click.option("--gpus-per-worker", type=float, help="GPUs per worker of a distributed executor.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON result here."
)
@click.pass_context
def run_command(
    ctx: click.Context,
    metric: str,
    explainers: tuple[str, ...],
    as_json: bool,
    out: Path | None,
    **kwargs: Any,
) -> None:
    """Run METRIC for some explainers; metric options follow as --name value (`attribench run METRIC
    --help` lists them, with the metric's defaults and direction)."""
    from attribench_core.result import json_text
    from attribench_core.runner import RunRequest, run

    check_device(kwargs["device"])
    if out is not None and not out.parent.is_dir():
        raise UsageProblem(f"Folder of --out '{out.parent}' does not exist.")
    options = _metric_options(ctx.args)
    kwargs["executor_options"] = _executor_options(kwargs["executor"], options)
    if kwargs["images"] is None and kwargs["size"] is not None:  # e.g. bam.mcs --size 64
        options["size"] = str(kwargs.pop("size"))
    request = RunRequest(
        metric=metric,
        explainers=list(explainers),
        options=options,
        keep_going=not ctx.find_root().params.get("debug", False),
        **kwargs,
    )
    with RichProgress(stderr=as_json) as progress:
        outcome = run(plugins.get_registry(), request, progress)
    evaluated = outcome.provenance["num_imgs"]
    if request.num_imgs is not None and evaluated < request.num_imgs:
        click.echo(
            f"note: --num-imgs {request.num_imgs} capped at the dataset's {evaluated} images.", err=True
        )
    payload = json_text(outcome.to_json(), indent=1)  # non-finite numbers as null: JSON has no NaN
    if out is not None:
        out.write_text(payload)
    if as_json:
        click.echo(payload)
    else:
        _print_outcome(outcome)


def _print_outcome(outcome: Any) -> None:
    from rich.table import Table

    from attribench_core.result import SMALL_N

    arrow = "higher is better" if outcome.higher_is_better else "lower is better"
    title = (
        f"{outcome.metric} ({arrow}) on {outcome.provenance['dataset']} / "
        f"{outcome.provenance['model']}, seed {outcome.provenance['seed']}"
    )
    source = outcome.provenance.get("dataset_source")
    table = Table(title=f"{title}\n{source}" if source else title)
    for column, justify in (
        ("explainer", "left"),
        ("value", "right"),
        ("95% interval", "right"),
        ("n", "right"),
        ("skipped", "right"),
    ):
        table.add_column(column, justify=justify)
    kinds, small = set(), False
    for label, result in outcome.results.items():
        u = result.uncertainty
        kinds |= {u.kind} if u else set()
        small |= result.small_n and u is not None
        reasons = ", ".join(f"{k}: {v}" for k, v in result.skipped.items())
        table.add_row(
            label,
            f"{result.value:.4f}",
            f"{u.low:.4f} – {u.high:.4f}" if u else "",
            f"{result.n}{'*' if result.small_n and u else ''}",
            f"{result.n_skipped}" + (f" ({reasons})" if reasons else ""),
        )
    notes = [f"interval: {', '.join(sorted(kinds))}"] if kinds else []
    if small:
        notes.append(
            f"* n < {SMALL_N}: too few images evaluated for the interval to be reliable "
            "(raise --num-imgs, or see why images were skipped)"
        )
    table.caption = "; ".join(notes) or None
    console = _console()
    console.print(table)
    models = []
    for check in outcome.models or [outcome.verification]:
        summary = ", ".join(f"{k} {val:.3f}" for k, val in check.items() if isinstance(val, float))
        failed = "; check failed" if check.get("passed") is False else ""  # a random-label twin's
        models.append(f"{check['model']} ({check['source']}{'; ' + summary if summary else ''}{failed})")
    console.print(
        f"model{'s' if len(models) > 1 else ''} {', '.join(models)}; "
        f"{outcome.computed} attributions computed, results saved in {outcome.provenance['store']}"
    )


# -- store ----------------------------------------------------------------------------------------


@cli.group("store", context_settings=CONTEXT)
def store_group() -> None:
    """Inspect the attribution store: ls, show, verify, export."""


_store_option = click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("attribench.h5"),
    show_default=True,
    help="HDF5 attribution store.",
)


def _open_store(path: Path):
    from attribench_core.store import AttributionStore

    if not path.exists():
        raise UsageProblem(f"No store at '{path}'; run a metric first or pass --store.")
    store = AttributionStore(path)
    store.check()
    return store


@store_group.command("ls")
@_store_option
@click.option("--json", "as_json", is_flag=True)
def store_ls(store: Path, as_json: bool) -> None:
    """List attribution groups and result runs."""
    from attribench_core.result import json_text

    groups = _open_store(store).groups()
    if as_json:
        click.echo(json_text([{k: v for k, v in g.items() if k != "attrs"} for g in groups], indent=1))
        return
    for g in groups:
        shape = "x".join(map(str, g["shape"]))
        diagnostics = ", ".join(g.get("diagnostics") or {})
        click.echo(
            f"{g['path']}  {g['kind']}  n={g['n']}"
            + (f"  [{shape}]" if shape else "")
            + f"  {g['bytes']:,} bytes"
            + (f"  diagnostics: {diagnostics}" if diagnostics else "")
        )


@store_group.command("show")
@click.argument("group")
@_store_option
def store_show(group: str, store: Path) -> None:
    """Show the provenance of GROUP (a path from `store ls`, or its names without hashes when they name one
    group: methods.ig, core.toy/core.toy_cnn/methods.ig) and a summary of its per-map diagnostics."""
    from attribench_core.result import json_text

    opened = _open_store(store)
    click.echo(json_text(opened.show(opened.resolve(group)), indent=1))


@store_group.command("verify")
@_store_option
def store_verify(store: Path) -> None:
    """Check integrity (checksums, lengths, duplicate indices, non-finite counts): exit 1 on damage; notes
    (batches not merged yet, batches set aside, leftovers of interrupted commits) keep exit 0."""
    verification = _open_store(store).verify()
    for problem in verification.problems:
        click.echo(problem)
    for note in verification.notes:
        click.echo(f"note: {note}")
    if not verification.ok:
        raise AttribenchError(f"{len(verification.problems)} problem(s) in '{store}'.")
    click.echo(f"{store}: OK")


def _check_writable(path: Path, force: bool) -> None:
    """A one-line usage error unless `path`'s folder exists and `path` is new (or `force` overwrites it)."""
    if not path.parent.is_dir():
        raise UsageProblem(f"Folder '{path.parent}' does not exist.")
    if path.exists() and not force:
        raise UsageProblem(f"'{path}' exists; pass --force to overwrite it, or choose another file.")


@store_group.command("export")
@click.argument("group")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@_store_option
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def store_export(group: str, out: Path, store: Path, force: bool) -> None:
    """Export attribution GROUP (a path from `store ls`, or its names without hashes when they name one
    group) to OUT (.npz with attribution, index, target, prediction, diag/<name>, provenance)."""
    _check_writable(out, force)
    opened = _open_store(store)
    click.echo(str(opened.export(opened.resolve(group), out)))


# -- report ---------------------------------------------------------------------------------------


TABLE_FORMATS = ("csv", "latex", "json")


@cli.command("report", context_settings=CONTEXT)
@_store_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("attribench-report"),
    show_default=True,
    help="Folder for index.html and/or report.md with figures/ (created if missing).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "both", *TABLE_FORMATS]),
    default="both",
    show_default=True,
    help="html: one self-contained index.html; md: report.md with figures/*.png; both. csv, latex, json: "
    "the leaderboards, the method × metric matrix (and, but for csv, the paired comparisons) as tables, "
    "to --output or stdout.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File for --format csv|latex|json (default: stdout).",
)
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@click.option(
    "--drill",
    multiple=True,
    metavar="METRIC:EXPLAINER",
    help="Drill down into this method on this metric's leaderboards (repeatable; default: each "
    "leaderboard's top method).",
)
def report_command(
    store: Path, out: Path, fmt: str, output: Path | None, force: bool, drill: tuple[str, ...]
) -> None:
    """Turn everything in the store into a report: a method × metric matrix, leaderboards, paired
    comparisons, rank agreement, plugin sections, a per-image drill-down, an attribution gallery and
    provenance; or export its tables (--format csv|latex|json)."""
    if fmt in TABLE_FORMATS:
        _export_tables(store, fmt, output, force)
        return
    if output is not None:
        raise UsageProblem(f"--output is for --format csv|latex|json; --format {fmt} writes into --out.")
    from attribench_core.report.assemble import FORMATS, make_report

    _open_store(store)
    formats = FORMATS if fmt == "both" else (fmt,)
    written, notes = make_report(store, plugins.get_registry(), out, formats, drill)
    for note in notes:
        click.echo(f"Warning: {note}", err=True)
    for path in written:
        click.echo(str(path))


def _export_tables(store: Path, fmt: str, output: Path | None, force: bool) -> None:
    """Write the report's tables in `fmt` to `output` (kept unless `force`) or to stdout."""
    from attribench_core.report.export import export

    if output is not None:
        _check_writable(output, force)
    _open_store(store)
    text = export(store, plugins.get_registry(), fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(str(output))


# -- entry point ----------------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="attribench")
    except AttribenchError as exc:  # raised while loading plugins, before any command runs
        OneLineError(str(exc)).show()
        sys.exit(1)
