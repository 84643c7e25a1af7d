"""The faithfulness checks as attribench `Metric`s: does what the map predicts of random perturbations
match what the model does? Thin classes around `faithfulness`.

Each reads the stored maps and runs the model itself on the device, batch by batch: the perturbations of
a batch are drawn and applied together (`STEP_ELEMENTS` input values at a time) and go through the model
in passes sized for the device (`pass_rows`). The
perturbations of an image come from its own generator (`ctx.rng`, from the run seed, the metric and the
image's dataset index), so every explainer is scored on the same perturbations, whatever the batch size;
the model's outputs on them are computed once per run and reused for every explainer. The output f_y is
the model's output (logit) for the stored target y.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from attribench_core import (
    AttributionRequest,
    Metric,
    MetricContext,
    Param,
    ParameterError,
    Result,
    mean_result,
)

from . import faithfulness

NONFINITE = "non-finite attribution"
STEP_ELEMENTS = 2**25  # perturbed input values held at once (128 MiB of float32): 10922 images of 3×32×32
# Input values per forward pass: large on an accelerator; small on a CPU, where passes of a few 224×224
# images ran twice as fast per image as passes of 16 or more (one thread, toy CNN; bench/RESULTS.md).
PASS_ELEMENTS = {"cpu": 2**19}
ACCELERATOR_PASS_ELEMENTS = 2**25


def pass_rows(device: torch.device, image_elements: int) -> int:
    """How many images of `image_elements` values one forward pass on `device` takes."""
    elements = PASS_ELEMENTS.get(device.type, ACCELERATOR_PASS_ELEMENTS)
    return max(1, elements // image_elements)


def target_outputs(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`[B]` the model's output for each image's target class."""
    with torch.no_grad():
        return model(images).gather(1, targets[:, None])[:, 0].float()


class PerturbationMetric(Metric):
    """Scores a map by the model's output drops under random perturbations of its image: subclasses say
    how a perturbation is drawn, applied and weighted, and how the map's predictions and the drops make
    a score. Maps with a non-finite value are skipped with that reason; so are samples whose score is
    undefined (`undefined`). By default on the core toy pair."""

    category = "faithfulness"
    dataset = "core.toy"
    model = "core.toy_cnn"
    num_imgs = 100
    score_name: ClassVar[str]
    count_option: ClassVar[str]  # the option holding the number of perturbations per image
    undefined: ClassVar[str] = "undefined score"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._drops: dict[tuple[Any, ...], torch.Tensor] = {}  # the model's drops, reused across explainers

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        self.check_shape(ctx.dataset.image_shape)
        return super().requests(ctx)

    def check_shape(self, image_shape: tuple[int, int, int]) -> None:
        """Raise a ParameterError when the options do not fit images of this shape; none by default."""

    @abstractmethod
    def draw(self, rng: np.random.Generator, count: int, image_shape: tuple[int, int, int]) -> np.ndarray:
        """`count` perturbations of one image, drawn from its generator."""

    @abstractmethod
    def perturb(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """`[B, N, C, H, W]`: the images perturbed by their draws `[B, N, ...]`."""

    @abstractmethod
    def weights(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """`[B, N, C|1, H, W]`: what each perturbation multiplies the map by, elementwise, before summing."""

    @abstractmethod
    def score(self, predicted: torch.Tensor, drops: torch.Tensor) -> torch.Tensor:
        """`[B]` per-sample values from the map's predictions and the output drops, both `[B, N]`."""

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        model = ctx.load_model(ctx.model_name)
        values, index, skipped = [], [], Counter()
        for batch, stored in ctx.attribution_batches(explainer):
            keep = ~np.asarray(stored.nonfinite, dtype=bool)
            skipped[NONFINITE] += int((~keep).sum())
            if not keep.any():
                continue
            device = ctx.device
            images = batch.images[torch.from_numpy(keep)].to(device)
            maps = torch.from_numpy(stored.attribution[keep]).to(device, torch.float32)
            targets = torch.as_tensor(stored.target[keep], dtype=torch.long, device=device)
            predicted, drops = self.evaluate(ctx, model, images, maps, targets, stored.index[keep])
            scores = self.score(predicted, drops).cpu().double().numpy()
            defined = ~np.isnan(scores)
            skipped[self.undefined] += int((~defined).sum())
            values.append(scores[defined])
            index.append(stored.index[keep][defined])
        return mean_result(
            self.score_name,
            np.concatenate(values) if values else np.zeros(0),
            np.concatenate(index) if index else np.zeros(0, np.int64),
            ctx.rng(f"bootstrap/{explainer}"),
            Counter({reason: count for reason, count in skipped.items() if count}),
        )

    def evaluate(
        self,
        ctx: MetricContext,
        model: torch.nn.Module,
        images: torch.Tensor,
        maps: torch.Tensor,
        targets: torch.Tensor,
        index: np.ndarray,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The map's predictions and the model's output drops `[B, N]` for N perturbations per image (the
        drops computed once per images and targets, then reused)."""
        key = (tuple(index.tolist()), tuple(targets.tolist()))
        rngs = [ctx.rng(f"{self.score_name}/{int(i)}") for i in index]
        known = self._drops.get(key)
        predicted, drops = [], []
        reference = target_outputs(model, images, targets) if known is None else None
        for draws in self.draws_in_steps(rngs, images):
            predicted.append(faithfulness.attribution_sums(maps, self.weights(images, draws)))
            if reference is not None:
                drops.append(reference[:, None] - self.outputs(model, self.perturb(images, draws), targets))
        if known is None:
            known = self._drops[key] = torch.cat(drops, dim=1)
        return torch.cat(predicted, dim=1), known

    def draws_in_steps(self, rngs: list[np.random.Generator], images: torch.Tensor) -> Iterator[torch.Tensor]:
        """Each image's perturbations `[B, n, ...]` on the images' device, n at a time: as many as
        `STEP_ELEMENTS` allows for the batch."""
        count, shape = self.opts[self.count_option], tuple(images.shape[1:])
        step = max(1, STEP_ELEMENTS // images.numel())
        for start in range(0, count, step):
            n = min(step, count - start)
            yield torch.from_numpy(np.stack([self.draw(rng, n, shape) for rng in rngs])).to(images.device)

    @staticmethod
    def outputs(model: torch.nn.Module, perturbed: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """`[B, n]` the target outputs of the perturbed images `[B, n, C, H, W]`, `pass_rows` a pass."""
        size, n = perturbed.shape[:2]
        rows, repeated = perturbed.flatten(0, 1), targets.repeat_interleave(n)
        step = pass_rows(rows.device, rows[0].numel())
        parts = [
            target_outputs(model, rows[s : s + step], repeated[s : s + step])
            for s in range(0, len(rows), step)
        ]
        return torch.cat(parts).view(size, n)


BASELINE = Param(
    "baseline",
    "zero",
    "value of removed pixels: zero, the image's channel mean, or its min (Quantus's black)",
    str,
    faithfulness.BASELINES,
)


class Infidelity(PerturbationMetric):
    """Infidelity (Yeh et al. 2019): E_I[(IᵀΦ(x) − (f_y(x) − f_y(x − I)))²], the mean squared error of the
    map's linear prediction of the output drop under random perturbations I. Lower is better.

    By default I ~ N(0, σ²) per input element (the paper's Gaussian perturbation) and Φ is first scaled by
    the β that minimises the error (as Yeh et al. do in their experiments, so that maps of any scale
    compare); `--scale none` takes the definition as written. `--perturbation square` removes one random
    square of pixels instead (set to the baseline), with I its indicator (the paper's square removal)."""

    higher_is_better = False
    score_name = "infidelity"
    count_option = "perturbations"
    options = (
        Param("perturbations", 100, "random perturbations per image", int, minimum=1),
        Param(
            "perturbation",
            "gaussian",
            "gaussian: I ~ N(0, noise²); square: a square removed",
            str,
            ("gaussian", "square"),
        ),
        Param(
            "noise",
            0.1,
            "std σ of the Gaussian perturbation, in the model's input units",
            float,
            greater_than=0,
        ),
        Param("patch", 4, "side of the removed square, in pixels", int, minimum=1),
        BASELINE,
        Param(
            "scale",
            "optimal",
            "optimal: Φ scaled by the best β first; none: as defined",
            str,
            ("optimal", "none"),
        ),
    )

    def check_shape(self, image_shape: tuple[int, int, int]) -> None:
        side = min(image_shape[1:])
        if self.opts["perturbation"] == "square" and self.opts["patch"] > side:
            raise ParameterError(
                f"--patch {self.opts['patch']} is larger than the images ({side} pixels a side); "
                f"give at most {side}."
            )

    @property
    def gaussian(self) -> bool:
        return self.opts["perturbation"] == "gaussian"

    def draw(self, rng: np.random.Generator, count: int, image_shape: tuple[int, int, int]) -> np.ndarray:
        if self.gaussian:
            return faithfulness.gaussian_noise(rng, count, image_shape, self.opts["noise"])
        return faithfulness.square_masks(rng, count, *image_shape[1:], self.opts["patch"])

    def perturb(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        if self.gaussian:
            return images[:, None] - draws
        return faithfulness.removed(
            images, draws, faithfulness.baseline_values(images, self.opts["baseline"])
        )

    def weights(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        return draws if self.gaussian else draws[:, :, None].to(images.dtype)

    def score(self, predicted: torch.Tensor, drops: torch.Tensor) -> torch.Tensor:
        return faithfulness.infidelity(predicted, drops, scaled=self.opts["scale"] == "optimal")


class FaithfulnessCorrelation(PerturbationMetric):
    """Faithfulness correlation (Bhatt et al. 2020): over random subsets S of `subset_size` pixels, the
    Pearson correlation of the map's sum over S (all its channels) and the output drop when S's pixels
    (all channels) are set to the baseline. Higher is better; undefined (skipped) when the sums or the
    drops do not vary, e.g. for a constant map."""

    higher_is_better = True
    score_name = "faithfulness_correlation"
    count_option = "subsets"
    undefined = "constant attribution sums or output drops"
    options = (
        Param("subsets", 100, "random pixel subsets per image", int, minimum=2),
        Param("subset_size", 224, "pixels in each subset", int, minimum=1),
        BASELINE,
    )

    def check_shape(self, image_shape: tuple[int, int, int]) -> None:
        pixels = image_shape[1] * image_shape[2]
        if self.opts["subset_size"] >= pixels:
            raise ParameterError(
                f"--subset-size {self.opts['subset_size']} leaves no pixel out of the images' {pixels}; "
                f"give fewer than {pixels}."
            )

    def draw(self, rng: np.random.Generator, count: int, image_shape: tuple[int, int, int]) -> np.ndarray:
        return faithfulness.subset_masks(rng, count, *image_shape[1:], self.opts["subset_size"])

    def perturb(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        return faithfulness.removed(
            images, draws, faithfulness.baseline_values(images, self.opts["baseline"])
        )

    def weights(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        return draws[:, :, None].to(images.dtype)

    def score(self, predicted: torch.Tensor, drops: torch.Tensor) -> torch.Tensor:
        return faithfulness.pearson(predicted, drops)
