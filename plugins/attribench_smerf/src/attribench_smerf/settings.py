"""SMERF's 12 TextBox buckets, its seven reasoning settings (paper Table 1) and the image-count presets.

A bucket is a combination of Box1 (absent/present) × Box2 (absent/present) × Text (none, 'A', 'B'), numbered
as in the paper (Figure 5 / Table 1, 1-based): id = 6·[Box1] + 3·[Box2] + t + 1 with t = 0 none, 1 A, 2 B.
Each setting is a rule that maps the objects of a bucket to a label (or "undefined": the bucket is not
generated) and to the regions a correct attribution should focus on (primary) or avoid (secondary). The
rules are the paper's (Kim et al. 2022), written as code; the tests check them against Table 1's rows.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from attribench_core import UsageProblem

REGIONS = ("box1", "box2", "text")
"""Region names, in the canonical order used in every `primary`/`secondary` tuple."""
LETTERS = ("", "A", "B")
"""The letter drawn for text code t (0: no text)."""
BUCKETS = tuple(range(1, 13))

SIMPLE = ("simple_fr", "simple_nr")
COMPLEX = ("complex_fr", "complex_cr1", "complex_cr2", "complex_cr3", "complex_cr4")
SETTINGS = SIMPLE + COMPLEX


class Objects(NamedTuple):
    """What a bucket's images contain: Box1, Box2 and the text code t (0 none, 1 'A', 2 'B')."""

    box1: bool
    box2: bool
    text: int

    @property
    def present(self) -> tuple[str, ...]:
        """Names of the regions present, canonical order."""
        return tuple(
            name for name, here in zip(REGIONS, (self.box1, self.box2, self.text > 0), strict=True) if here
        )

    @property
    def letter(self) -> str:
        return LETTERS[self.text]


def bucket_id(box1: bool, box2: bool, text: int) -> int:
    """The paper's 1-based bucket number of a combination of objects (text: 0 none, 1 'A', 2 'B')."""
    if text not in (0, 1, 2):
        raise ValueError(f"text must be 0 (none), 1 ('A') or 2 ('B'), not {text!r}")
    return 6 * int(bool(box1)) + 3 * int(bool(box2)) + text + 1


def bucket_objects(bucket: int) -> Objects:
    """Inverse of `bucket_id`."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket ids run from 1 to 12, not {bucket!r}")
    code = bucket - 1
    return Objects(box1=code >= 6, box2=code % 6 >= 3, text=code % 3)


@dataclass(frozen=True)
class BucketSpec:
    """A bucket of one setting: its label and the regions an attribution should focus on / avoid."""

    bucket: int
    label: int
    primary: tuple[str, ...]
    secondary: tuple[str, ...]

    @property
    def roles(self) -> dict[str, tuple[str, ...]]:
        """The core's per-sample roles mapping."""
        return {"primary": self.primary, "secondary": self.secondary}


# A rule maps a bucket's objects to (label or None when undefined, primary names, secondary names); names of
# absent objects may be listed: `bucket_specs` drops them ("if present" applies to every entry).
Rule = Callable[[Objects], tuple[int | None, Iterable[str], Iterable[str]]]


def _letter_label(o: Objects) -> int | None:
    """T(A) = 0, T(B) = 1; undefined without text."""
    return o.text - 1 if o.text else None


def _simple_fr(o: Objects):
    """y = [Box1]; focus Box1; avoid everything else."""
    return int(o.box1), ("box1",), ("box2", "text")


def _simple_nr(o: Objects):
    """y from the letter; focus Text; avoid both boxes."""
    return _letter_label(o), ("text",), ("box1", "box2")


def _complex_fr(o: Objects):
    """y = [Box1 and Box2]; focus both boxes in positives only (a lone box is neither); avoid Text.

    The paper's avoid row omits buckets 8-9 (Box1 + a letter); the original code lists Text as secondary
    whenever it is present, and so do we.
    """
    both = o.box1 and o.box2
    return int(both), ("box1", "box2") if both else (), ("text",)


def _switch_picks_box(switch: str, other: str, o: Objects):
    """CR1/CR2: switch present: y = [other box], focus switch (+ other), avoid Text; else y from letter."""
    if getattr(o, switch):
        return int(getattr(o, other)), (switch, other), ("text",)
    return _letter_label(o), ("text",), (other,)


def _switch_picks_text(switch: str, other: str, o: Objects):
    """CR3/CR4: switch present: the letter decides, focus switch + Text, avoid other; else y = [other]."""
    if getattr(o, switch):
        return _letter_label(o), (switch, "text"), (other,)
    return int(getattr(o, other)), (other,), ("text",)


RULES: dict[str, Rule] = {
    "simple_fr": _simple_fr,
    "simple_nr": _simple_nr,
    "complex_fr": _complex_fr,
    "complex_cr1": partial(_switch_picks_box, "box2", "box1"),
    "complex_cr2": partial(_switch_picks_box, "box1", "box2"),
    "complex_cr3": partial(_switch_picks_text, "box2", "box1"),
    "complex_cr4": partial(_switch_picks_text, "box1", "box2"),
}


def choose(kind: str, value: str, options: Iterable[str]) -> str:
    """`value` if it is one of `options`, else a `UsageProblem` naming them (with "Did you mean")."""
    options = tuple(options)
    if value in options:
        return value
    close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageProblem(f"Unknown SMERF {kind} {value!r}; choose one of {', '.join(options)}.{hint}")


def bucket_specs(setting: str) -> dict[int, BucketSpec]:
    """The buckets `setting` defines (undefined ones left out), by bucket id."""
    rule = RULES[choose("setting", setting, SETTINGS)]
    specs = {}
    for bucket in BUCKETS:
        objects = bucket_objects(bucket)
        label, primary, secondary = rule(objects)
        if label is None:
            continue
        keep = objects.present
        specs[bucket] = BucketSpec(
            bucket,
            label,
            tuple(n for n in REGIONS if n in keep and n in primary),
            tuple(n for n in REGIONS if n in keep and n in secondary),
        )
    return specs


@dataclass(frozen=True)
class Counts:
    """Images per bucket: `train` (`train_positive` for label-1 buckets when set) and `test`."""

    train: int
    test: int
    train_positive: int | None = None

    def per_bucket(self, split: str, label: int) -> int:
        if split == "test":
            return self.test
        return self.train_positive if label == 1 and self.train_positive is not None else self.train


def _preset(simple: Counts, complex_fr: Counts, cr: Counts) -> dict[str, Counts]:
    return {"simple_fr": simple, "simple_nr": simple, "complex_fr": complex_fr} | {
        s: cr for s in COMPLEX if s.startswith("complex_cr")
    }


PRESETS: dict[str, dict[str, Counts]] = {
    # Paper Table 2 ("test" is the paper's validation split). Complex-FR triples its 3 positive buckets
    # (label 1) in training so that the classes are balanced.
    "paper": _preset(Counts(2000, 500), Counts(2000, 500, 6000), Counts(15000, 400)),
    # Quick runs: each setting generates in a few seconds. Sized by measurement (Adam, batch 128): with
    # 300/bucket Simple-NR misses the 0.98 gate after 10 epochs at lr 1e-4, with 1000 it holds from epoch 5;
    # CR3 at 1000/bucket never learns the Box2 switch (buckets 3, 6, 11) in 10 epochs even at lr 1e-3; at
    # 4000 it passes the 0.95 gate after 5 epochs at lr 1e-3, but reaches only 0.88 after 10 at lr 1e-4.
    "default": _preset(Counts(1000, 200), Counts(1000, 200, 3000), Counts(4000, 200)),
    # For tests only: a handful of images per bucket.
    "tiny": _preset(Counts(6, 4), Counts(6, 4, 18), Counts(6, 4)),
}


def bucket_counts(setting: str, split: str, preset: str = "default") -> dict[int, int]:
    """Images to generate per bucket id for `setting`/`split` under `preset`."""
    counts = PRESETS[choose("preset", preset, PRESETS)][choose("setting", setting, SETTINGS)]
    split = choose("split", split, ("train", "test"))
    return {b: counts.per_bucket(split, spec.label) for b, spec in bucket_specs(setting).items()}
