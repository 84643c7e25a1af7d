"""`attribench report`: ranks and rank correlations by hand, then a report built from a small store of
real runs (two explainers and a noise baseline, on a higher- and a lower-is-better metric)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import abfixture.plugin
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attribench_core import Explainer, hookimpl
from attribench_core.builtin import localisation
from attribench_core.builtin.metrics import LocalisationMetric
from attribench_core.cli import cli
from attribench_core.report import agreement, gallery, leaderboard, provenance
from attribench_core.report.assemble import build_sections
from attribench_core.report.content import Section, Table
from attribench_core.report.ranking import average_ranks, competition_ranks, kendall_tau_b, spearman
from attribench_core.report.reading import read_input
from attribench_core.result import StoredRun
from attribench_core.runner import RunOutcome, RunRequest, run
from attribench_core.store import AttributionStore, GroupKey
from attribench_core.testing import plugin_registry, using_plugins

PNG = b"\x89PNG\r\n\x1a\n"


# -- the maths, by hand ----------------------------------------------------------------------------


def test_competition_ranks_share_ties_and_follow_the_direction():
    assert competition_ranks([0.2, 0.9, 0.5, 0.9], higher_is_better=True) == [4, 1, 3, 1]
    assert competition_ranks([0.2, 0.9, 0.5, 0.9], higher_is_better=False) == [1, 3, 2, 3]
    with pytest.raises(ValueError, match="finite"):
        competition_ranks([1.0, float("nan")], higher_is_better=True)


def test_average_ranks_split_ties():
    assert average_ranks([10, 30, 20, 30]).tolist() == [1.0, 3.5, 2.0, 3.5]


def test_spearman_and_kendall_without_ties():
    # d = (-1, 1, -1, 1, 0): rho = 1 - 6*4/(5*24) = 0.8; 2 discordant of 10 pairs: tau = (8-2)/10 = 0.6
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert spearman(x, y) == pytest.approx(0.8)
    assert kendall_tau_b(x, y) == pytest.approx(0.6)
    assert spearman(x, x[::-1]) == pytest.approx(-1.0)
    assert kendall_tau_b(x, x[::-1]) == pytest.approx(-1.0)


def test_spearman_and_kendall_with_ties():
    # ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3, 4): rho = 4.5 / sqrt(4.5 * 5);
    # 5 concordant pairs, 0 discordant, 1 tie in x of 6 pairs: tau-b = 5 / sqrt(5 * 6)
    x, y = [1, 2, 2, 3], [1, 2, 3, 4]
    assert spearman(x, y) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert kendall_tau_b(x, y) == pytest.approx(5 / 30**0.5)


def test_a_constant_ranking_has_no_correlation():
    assert spearman([1, 1, 1], [1, 2, 3]) != spearman([1, 1, 1], [1, 2, 3])  # NaN
    assert kendall_tau_b([1, 2, 3], [4, 4, 4]) != kendall_tau_b([1, 2, 3], [4, 4, 4])


# -- a small store of real runs ----------------------------------------------------------------------


class Image(Explainer):
    """The input itself: bright squares get the mass, the object more than the distractor. Reports each
    map's mean as a per-map diagnostic, which the runner stores beside the map."""

    def explain(self, model, inputs, targets):
        self.diagnostics["brightness"] = inputs.mean((1, 2, 3))
        self.diagnostic_notes["brightness"] = "the image's mean"
        return inputs.clone()


class Outside(LocalisationMetric):
    """Share of attribution mass outside the primary regions: 1 - relevance mass, lower is better."""

    higher_is_better = False
    score_name = "outside"

    def score(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return 1 - localisation.relevance_mass(maps, masks)


def fixture_section(report):
    return [Section("Fixture <section>", "Runs seen: " + str(len(report.runs)), [Table("t", ["a"], [[1.5]])])]


def broken_section(report):
    raise RuntimeError("this plugin's section is broken")


class ReportPlugin:
    """Namespace `x`: an explainer, a lower-is-better metric and two report sections (one raises)."""

    @hookimpl
    def register_explainers(self, register):
        register("image", Image)

    @hookimpl
    def register_metrics(self, register):
        register("outside", Outside)

    @hookimpl
    def register_reports(self, register):
        register("fixture", fixture_section, description="A section for the test")
        register("broken", broken_section, description="A section that raises")


PLUGINS = {"t": abfixture.plugin, "x": ReportPlugin()}
EXPLAINERS = ["t.grad", "t.noise", "x.image", "t.broken"]
METRICS = ["core.relevance_mass", "x.outside", "core.relevance_rank"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> tuple[Path, list[RunOutcome]]:
    """A store of one run per metric, and the outcomes those runs returned."""
    path = tmp_path_factory.mktemp("report") / "runs.h5"
    registry = plugin_registry(PLUGINS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTRIBENCH_HOME", str(cache_home))
        return path, [
            run(registry, RunRequest(metric, EXPLAINERS, num_imgs=12, store=path)) for metric in METRICS
        ]


@pytest.fixture(scope="module")
def store(outcomes) -> Path:
    return outcomes[0]


def test_the_report_reads_every_result_back_as_it_was_computed(outcomes):
    path, computed = outcomes
    saved = AttributionStore(path).runs()
    assert [r.metric for r in saved] == METRICS
    for run_, outcome in zip(saved, computed, strict=True):
        assert run_.results == outcome.results and run_.higher_is_better == outcome.higher_is_better
        assert run_.category == outcome.category == "ground_truth"  # LocalisationMetric's, subclasses too


def _input(store: Path, extra: dict[str, object] = PLUGINS):
    return read_input(AttributionStore(store), plugin_registry(extra))


def test_leaderboards_rank_in_each_metrics_direction(store):
    boards = {b.metric: b for b in leaderboard.boards(_input(store))}
    assert set(boards) == set(METRICS)
    for metric, board in boards.items():
        table = leaderboard.rows(board)
        ranked = [r for r in table if r[0] is not None]
        assert [r[1] for r in ranked] != [] and {r[1] for r in ranked} == {"t.grad", "t.noise", "x.image"}
        values = [r[2] for r in ranked]
        assert values == sorted(values, reverse=board.higher_is_better), metric
        assert [r[0] for r in ranked] == [1, 2, 3]  # three different values
        assert table[-1][:3] == [None, "t.broken", None]  # failed: listed last, unranked
        assert ranked[0][3].count("–") == 1 and ranked[0][4] == "bootstrap_ci95"
        assert ranked[0][5] == "12*"  # fewer than 30 images: flagged
        assert board.source.startswith("core.toy: generated")
        assert "Data: core.toy: generated" in leaderboard.section(board).text
    assert boards["core.relevance_mass"].higher_is_better is True
    assert boards["x.outside"].higher_is_better is False
    assert (
        leaderboard.rows(boards["x.outside"])[0][1] == leaderboard.rows(boards["core.relevance_mass"])[0][1]
    )


def test_a_metric_whose_plugin_is_missing_is_ranked_by_the_direction_its_runs_saved(store):
    report = _input(store, {"t": abfixture.plugin})
    outside = {b.metric: b for b in leaderboard.boards(report)}["x.outside"]
    assert outside.higher_is_better is False
    assert [row[0] for row in leaderboard.rows(outside)][:3] == [1, 2, 3]


def test_runs_saved_without_a_direction_and_without_their_plugin_are_listed_unranked(store):
    report = _input(store, {"t": abfixture.plugin})
    report.runs = [
        StoredRun(
            r.metric, r.run_id, {k: v for k, v in r.payload.items() if k != "higher_is_better"}, r.arrays
        )
        for r in report.runs
    ]
    boards = {b.metric: b for b in leaderboard.boards(report)}
    outside = boards["x.outside"]
    assert outside.higher_is_better is None
    assert all(row[0] is None for row in leaderboard.rows(outside))
    assert "direction is unknown" in leaderboard.section(outside).text
    assert boards["core.relevance_mass"].higher_is_better is True  # from the installed metric


def test_rank_agreement_orients_values_by_direction(store):
    found = {
        (a, b): (n, rho, tau) for a, b, n, rho, tau in agreement.pairs(leaderboard.boards(_input(store)))
    }
    # outside = 1 - relevance mass per sample: opposite values, the same ranking once oriented
    assert found["core.relevance_mass", "x.outside"] == (3, pytest.approx(1.0), pytest.approx(1.0))
    assert len(found) == 3
    (section,) = agreement.sections(_input(store))
    assert "Caution: 3 of 3 pair(s) rest on fewer than 5 methods." in section.text


def test_the_gallery_shows_maps_without_inputs_when_the_dataset_cannot_be_rebuilt(store, monkeypatch):
    def unavailable(**kwargs):
        raise RuntimeError("dataset plugin not installed")

    monkeypatch.setattr("attribench_core.builtin.toy.make_toy", unavailable)
    (section,) = gallery.sections(_input(store))
    (figure,) = section.blocks
    assert figure.png.startswith(PNG)
    assert "Inputs not shown" in figure.caption and "dataset plugin not installed" in figure.caption


def test_a_failing_plugin_section_becomes_a_note(store):
    sections, notes = build_sections(_input(store))
    titles = [s.title for s in sections]
    assert titles[:4] == ["Method × metric matrix", "Leaderboard: core.relevance_mass",
                          "Leaderboard: core.relevance_rank", "Leaderboard: x.outside"]  # fmt: skip
    assert titles[4:] == ["Paired comparisons", "Rank agreement", "Fixture <section>",
                          "Report section x.broken", "Per-image drill-down", "Attribution gallery",
                          "Provenance"]  # fmt: skip
    assert notes == [
        "Report section x.broken could not be built: RuntimeError: this plugin's section is broken"
    ]
    assert sections[7].text == notes[0] and not sections[7].blocks


def test_the_report_command_writes_a_self_contained_page_and_markdown(store, tmp_path):
    with using_plugins(PLUGINS):
        result = CliRunner().invoke(cli, ["report", "--store", str(store), "--out", "out"])
    assert result.exit_code == 0, result.output
    assert "Warning: Report section x.broken could not be built" in result.stderr
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)  # every resource inline, every link internal
    assert "http:" not in page and "https:" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= len(METRICS) + 2  # a bar chart per leaderboard, the agreement matrix, the gallery
    assert all(base64.b64decode(data).startswith(PNG) and len(data) > 1000 for data in images)
    assert "Fixture &lt;section&gt;" in page and "Fixture <section>" not in page  # text is escaped
    for i in range(1, page.count("<section id=") + 1):
        assert f'href="#s{i}"' in page  # the table of contents
    mass = page[page.index("<h2>Leaderboard: core.relevance_mass") :]
    mass = mass[: mass.index("</table>")]
    values = [float(v) for v in re.findall(r'<td class="num">(\d\.\d{3})</td><td>\d', mass)]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert "t.broken" in mass and "this plugin&#x27;s section is broken" in page

    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| rank | method | value | uncertainty | kind | n | skipped |" in markdown
    figures = sorted((tmp_path / "out" / "figures").glob("*.png"))
    assert len(figures) == len(images)
    assert all(f.read_bytes().startswith(PNG) and f"]({f.parent.name}/{f.name})" in markdown for f in figures)


def test_diagnostics_are_stored_with_their_maps_and_summarised_in_the_report(store):
    report = _input(store)
    (path,) = [g["path"] for g in report.attribution_groups if g["attrs"]["explainer"] == "x.image"]
    key = GroupKey(*path.split("/")[1:])
    stored = AttributionStore(store).read(key, AttributionStore(store).completed(key))
    means = stored.attribution.mean(axis=(1, 2, 3))  # the maps are the images
    np.testing.assert_allclose(stored.diagnostics["brightness"], means, rtol=1e-6)
    table = provenance.groups_table(report)
    cells = {row[0]: row[table.columns.index("diagnostics")] for row in table.rows}
    expected = (
        f"brightness: median {np.median(means):.3g}, max {means.max():.3g} over 12 maps (the image's mean)"
    )
    assert cells["x.image"] == expected
    assert cells["t.grad"] is None
    for board in leaderboard.boards(report):  # and beside the values of every leaderboard
        text = leaderboard.section(board, report.attribution_groups).text
        assert text.endswith(f"Diagnostics of the maps: x.image: {expected}.")
    with using_plugins(PLUGINS):
        listed = CliRunner().invoke(cli, ["store", "ls", "--store", str(store)]).output
    assert sum("diagnostics: brightness" in line for line in listed.splitlines()) == 1


def test_only_the_asked_format_is_written(store, tmp_path):
    with using_plugins(PLUGINS):
        result = CliRunner().invoke(cli, ["report", "--store", str(store), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "attribench-report").iterdir()) == ["figures", "report.md"]


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda path: None, 2, "No store at 'store.h5'"),
        (lambda path: h5py.File(path, "w").close(), 1, "The store 'store.h5' holds no results"),
    ],
)
def test_a_missing_or_empty_store_is_a_one_line_error(make, code, message):
    make(Path("store.h5"))
    result = CliRunner().invoke(cli, ["report", "--store", "store.h5"])
    assert result.exit_code == code
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not Path("attribench-report").exists()
