"""A user's own model, named after `--model`, and the run options that adapt a model to the benchmark
(`--normalize`, `--cam-layer`).

Besides a registered name, `--model` accepts:

- `path/to/file.py:callable` or `package.module:callable`: a callable returning a `torch.nn.Module`, called
  with no arguments, or with `num_classes=` (the dataset's class count) when its signature takes it;
- a TorchScript file (saved with `torch.jit.save`), kept as it is;
- `hf:DIR`: a Hugging Face image classifier saved with `save_pretrained`, loaded offline (`transformers` is
  the optional extra `attribench[hf]`).

Such a model is never trained here: it has its own weights, or a state dict given with `--weights`. It is
explained on the run's dataset. Its name in the store is derived from the spec (`file:net.build`,
`module:pkg.nets.build`, `torchscript:model`, `hf:vit`); the weights hash tells different contents apart.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from attribench_core.errors import ModelError, UsageProblem
from attribench_core.identity import short_hash
from attribench_core.model import TOKENS, Model, attach_info, model_info
from attribench_core.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize, Normalized
from attribench_core.state_dict import load_state_dict_file

Normalization = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std), one value per channel
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit")
NORMALIZE_USAGE = (
    "--normalize takes imagenet, none or MEAN/STD with one value per channel "
    "(e.g. 0.485,0.456,0.406/0.229,0.224,0.225)"
)


@dataclass(frozen=True)
class ModelSource:
    """Where a user's network comes from: `kind` "callable" (`location` a .py file or a module, and
    `attribute`), "torchscript" (`location` a file) or "hf" (`location` a folder)."""

    kind: str
    location: str
    attribute: str = ""

    @property
    def spec(self) -> str:
        """The source as written after --model."""
        if self.kind == "hf":
            return f"hf:{self.location}"
        return f"{self.location}:{self.attribute}" if self.kind == "callable" else self.location

    @property
    def name(self) -> str:
        """A stable name for store keys: `file:<stem>.<callable>`, `module:<module>.<callable>`,
        `torchscript:<stem>` or `hf:<folder name>`; characters other than letters, digits and `_.:-`
        become `_` (store groups are HDF5 paths)."""
        path = Path(self.location)
        if self.kind == "callable":
            is_file = self.location.endswith(".py")
            name = f"file:{path.stem}" if is_file else f"module:{self.location}"
            name += f".{self.attribute}"
        elif self.kind == "torchscript":
            name = f"torchscript:{path.stem}"
        else:
            name = f"hf:{path.resolve().name}"
        return re.sub(r"[^A-Za-z0-9_.:-]", "_", name)

    def load(self, num_classes: int) -> nn.Module:
        """The network with the weights it comes with; one-line errors for everything that can go wrong."""
        loader = {"callable": self._call, "torchscript": self._load_torchscript, "hf": self._load_hf}
        return loader[self.kind](num_classes)

    def default_normalization(self) -> Normalization | None:
        """A saved Hugging Face model's `image_mean`/`image_std` (preprocessor_config.json), else None."""
        config = Path(self.location) / "preprocessor_config.json"
        if self.kind != "hf" or not config.is_file():
            return None
        values = json.loads(config.read_text())
        mean, std = values.get("image_mean"), values.get("image_std")
        return (tuple(mean), tuple(std)) if mean and std else None

    def _call(self, num_classes: int) -> nn.Module:
        function = self._find_callable()
        try:
            takes_classes = "num_classes" in inspect.signature(function).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            takes_classes = False
        try:
            network = function(num_classes=num_classes) if takes_classes else function()
        except Exception as exc:
            raise ModelError(f"{self.spec} raised {_one_line(exc)}") from None
        if not isinstance(network, nn.Module):
            raise ModelError(
                f"{self.spec} returned a {type(network).__name__}, not a torch.nn.Module; return the network."
            )
        return network

    def _find_callable(self) -> Callable[..., object]:
        module = self._import()
        function = getattr(module, self.attribute, None)
        if not callable(function):
            names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
            close = difflib.get_close_matches(self.attribute, names, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UsageProblem(f"'{self.location}' has no callable '{self.attribute}'.{hint}")
        return function

    def _import(self) -> ModuleType:
        """The module named by `location`: a .py file (imported with its folder on `sys.path`, so that it can
        import its neighbours) or a dotted module name (looked up from the current folder too)."""
        if self.location.endswith(".py"):
            path = Path(self.location)
            if not path.is_file():
                raise UsageProblem(f"Model file '{path}' does not exist.")
            name = f"_attribench_model_{short_hash(str(path.resolve()))}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # classes defined there must be findable by their module's name
            try:
                with _on_path(path.resolve().parent):
                    spec.loader.exec_module(module)
            except Exception as exc:
                raise ModelError(f"Importing '{path}' failed: {_one_line(exc)}") from None
            return module
        try:
            with _on_path(Path.cwd()):
                return importlib.import_module(self.location)
        except ModuleNotFoundError as exc:
            if exc.name and f"{self.location}.".startswith(f"{exc.name}."):
                raise UsageProblem(f"No module named '{exc.name}' (--model {self.spec}).") from None
            raise ModelError(f"Importing module '{self.location}' failed: {_one_line(exc)}") from None
        except Exception as exc:
            raise ModelError(f"Importing module '{self.location}' failed: {_one_line(exc)}") from None

    def _load_torchscript(self, num_classes: int) -> nn.Module:
        path = Path(self.location)
        if not path.is_file():
            raise UsageProblem(f"Model file '{path}' does not exist.")
        try:
            with warnings.catch_warnings():  # torch ≥ 2.10 deprecates torch.jit; the user chose the format
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except Exception:
            raise UsageProblem(
                f"'{path}' is not a TorchScript file (torch.jit.save); for a state dict pass "
                f"--model file.py:build --weights {path}"
            ) from None

    def _load_hf(self, num_classes: int) -> nn.Module:
        folder = Path(self.location)
        if not (folder / "config.json").is_file():
            raise UsageProblem(
                f"'{folder}' holds no saved Hugging Face model (no config.json); save one there with "
                "model.save_pretrained(DIR)."
            )
        try:
            from transformers import AutoModelForImageClassification
        except ImportError:
            raise ModelError('hf:DIR needs the transformers package: pip install -e ".[hf]"') from None
        try:
            return AutoModelForImageClassification.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise ModelError(
                f"Loading the Hugging Face model in '{folder}' failed: {_one_line(exc)}"
            ) from None


def model_source(spec: str) -> ModelSource | None:
    """The user's model that `spec` (the text after --model) points to, or None for a registered name.

    `hf:DIR` is a Hugging Face folder; `LOCATION:CALLABLE` a callable; an existing file, or a name ending in
    a TorchScript suffix (.pt, .pth, .ts, .jit), a TorchScript file.
    """
    if spec.startswith("hf:"):
        return ModelSource("hf", spec[3:])
    if ":" in spec:
        location, _, attribute = spec.rpartition(":")
        if not location or not attribute.isidentifier():
            raise UsageProblem(f"--model {spec}: write FILE.py:CALLABLE or package.module:CALLABLE.")
        return ModelSource("callable", location, attribute)
    if spec.endswith(".py"):
        raise UsageProblem(f"--model {spec}: name the callable that builds the network, e.g. {spec}:build.")
    if spec.endswith(TORCHSCRIPT_SUFFIXES) or Path(spec).is_file():
        return ModelSource("torchscript", spec)
    return None


def parse_normalization(text: str) -> Normalization | None:
    """`imagenet`, `none` or `MEAN/STD` (comma-separated, one value per channel) -> (mean, std) or None."""
    if text == "none":
        return None
    if text == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    mean, sep, std = text.partition("/")
    try:
        values = (tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(",")))
        Normalize(*values)  # one std per mean, all positive
    except ValueError:
        sep = ""
    if not sep:
        raise UsageProblem(f"{NORMALIZE_USAGE}; got '{text}'.")
    return values


class Logits(nn.Module):
    """`network(x).logits`: the logits tensor of a network that returns an output object (Hugging Face's
    `ImageClassifierOutput`), so that every explainer sees a plain `[B, K]` tensor."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x).logits


class UserModel(Model):
    """A user's network from a `ModelSource`, explained on the run's dataset: its output object turned into
    logits (`Logits`), its input normalisation made a first module (`Normalized`), and checked on `probe`,
    one image `[1,C,H,W]` of that dataset. It is never trained here."""

    built_with_weights = True

    def __init__(
        self, source: ModelSource, dataset: str, normalization: Normalization | None, probe: torch.Tensor
    ) -> None:
        self.source, self.normalization, self.probe = source, normalization, probe
        self.dataset = dataset  # type: ignore[misc]  # the run's dataset, whichever it is

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return self.adapt(self.source.load(num_classes), num_classes)

    def from_file(self, path: Path, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        """The network with the state dict in `path`, loaded before any wrapper, so that its keys are the
        network's own."""
        network = self.source.load(num_classes)
        load_state_dict_file(network, path)
        return self.adapt(network, num_classes)

    def adapt(self, network: nn.Module, num_classes: int) -> nn.Module:
        """`network` in eval mode, wrapped in `Logits` when it returns an output object and in `Normalized`
        when a normalisation is given, after a probe forward that checks it gives `num_classes` logits."""
        network.eval()
        normalize = None
        if self.normalization is not None:
            channels, given = self.probe.shape[1], len(self.normalization[0])
            if given != channels:
                raise UsageProblem(
                    f"--normalize gives a mean and std for {given} channel(s) but the images of "
                    f"{self.dataset} have {channels}."
                )
            normalize = Normalize(*self.normalization)
        shape = "x".join(map(str, self.probe.shape[1:]))
        try:
            with torch.no_grad():
                output = network(self.probe if normalize is None else normalize(self.probe))
        except Exception as exc:
            raise ModelError(
                f"{self.source.spec} fails on a {shape} image of {self.dataset}: {_one_line(exc)}"
            ) from None
        if not isinstance(output, torch.Tensor) and isinstance(getattr(output, "logits", None), torch.Tensor):
            network, output = Logits(network), output.logits
        if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 1:
            got = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ModelError(f"{self.source.spec} returns {got} for one {shape} image, not logits [1, K].")
        if output.shape[1] != num_classes:
            raise ModelError(
                f"model gives {output.shape[1]} logits but dataset {self.dataset} has {num_classes} classes; "
                "for an image folder, list the model's classes in output order in classes.txt"
            )
        return network if normalize is None else Normalized(normalize, network)


def set_cam_layer(module: nn.Module, given: str) -> None:
    """Declare `given` (`NAME` or `NAME:tokens`, NAME a dotted module path of the user's network, inside
    any `Normalized`/`Logits` wrapper) as the CAM layer in `module`'s `ModelInfo`."""
    layer, sep, reshape = given.partition(":")
    if sep and reshape != TOKENS:
        raise UsageProblem(f"--cam-layer takes NAME or NAME:{TOKENS}; got '{given}'.")
    prefix, network = "", module
    while isinstance(network, (Normalized, Logits)):
        prefix, network = f"{prefix}network.", network.network
    names = [name for name, _ in network.named_modules() if name]
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else " See model.named_modules() for the names."
        raise UsageProblem(f"--cam-layer: the model has no layer '{layer}'.{hint}")
    attach_info(module, replace(model_info(module), cam_layer=prefix + given))


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """`folder` first on `sys.path` while importing a user's model."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
