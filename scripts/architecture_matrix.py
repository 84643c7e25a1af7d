"""Print the explainer × architecture matrix as a Markdown table (the one in the methods plugin's README).

    python scripts/architecture_matrix.py > matrix.md

Runs the cells of `attribench_methods.architecture_matrix` (the same ones the test suite pins): ✓ when the
maps are finite, the model is left as it was and the axiom holds (its gap shown), ✗ with the gap when the
axiom fails, "refuses" with the module named and a numbered note giving the refusal in full, "fails" with the
exception. Hugging Face columns need `transformers`; without it they are left out. Takes about 20 s on a CPU.
"""

from __future__ import annotations

import re
import warnings

import torch
from attribench_methods import architecture_matrix as matrix


def gap_text(gap: float) -> str:
    """The relative gap in percent: two significant digits below 10 %, whole percents above."""
    return f"{100 * gap:.2g} %" if gap < 0.1 else f"{100 * gap:,.0f} %"


def main() -> None:
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    explainers = matrix.explainers()
    columns = [name for name, architecture in matrix.ARCHITECTURES.items() if architecture.available]
    notes: dict[str, int] = {}
    rows = []
    names = sorted((cls.__name__ for cls in explainers.values()), key=len, reverse=True)
    for method, explainer_class in sorted(explainers.items()):
        cells = []
        for architecture in columns:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the axiom column already shows what the warnings say
                outcome = matrix.run_cell(method, architecture, explainer_class)
            if outcome.kind == "refuses":
                note = outcome.detail
                for name in names:  # one note for the refusal that several methods share
                    note = note.replace(f"{name}: ", "").replace(name, "The method")
                note = note[0].upper() + note[1:]
                number = notes.setdefault(note, len(notes) + 1)
                named = re.search(r"(?<=module )'[^']+'(?: \(\w+\))?", outcome.detail) or re.search(
                    r"'[^']+'(?: \(\w+\))?", outcome.detail
                )
                cells.append(f"refuses: {named.group(0) + ' ' if named else ''}[{number}]")
            elif outcome.kind == "fails":
                cells.append(f"fails: {outcome.detail}")
            elif outcome.gap is None:
                cells.append("✓")
            else:
                cells.append(f"{'✓' if outcome.kind == 'ok' else '✗'} {gap_text(outcome.gap)}")
        rows.append(f"| `{method}` | {' | '.join(cells)} |")
    print(f"| explainer | {' | '.join(columns)} |")
    print(f"|---|{'---|' * len(columns)}")
    print("\n".join(rows))
    print()
    for note, number in notes.items():
        print(f"{number}. {note}")


if __name__ == "__main__":
    main()
