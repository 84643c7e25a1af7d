"""The researcher's road end to end, as issue 13 writes it: their model (a torchvision-layout ResNet-18,
VGG-11-BN or EfficientNet-B0 in a Python file, a Hugging Face ViT saved with save_pretrained), their image
folder with COCO annotations or mask PNGs, localisation and faithfulness metrics, then the report."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from photo_folder import DRAWN, box_mask, write_coco, write_photos
from PIL import Image

from attribench_core.cli import cli

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"  # pycocotools on numpy 2
)

MODEL_FILE = """\
import torch

from attribench_core import reference_models


def build(num_classes):
    torch.manual_seed(0)
    return reference_models.{call}
"""
ARCHITECTURES = {
    "resnet18": "resnet18(num_classes, width=8)",
    "vgg11_bn": "vgg11_bn(num_classes, width=4, classifier_width=16)",
    "efficientnet_b0": "efficientnet_b0(num_classes, width_mult=0.25, depth_mult=0.25)",
}


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["run", *args, "--num-imgs", "4", "--size", "32", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def values(payload: dict) -> dict[str, float]:
    return {row["explainer"]: row["value"] for row in payload["results"]}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_pointing_game_on_your_folder_with_coco_and_your_model_file(tmp_path, architecture):
    write_photos(tmp_path / "photos")
    coco = write_coco(tmp_path / "instances.json")
    (tmp_path / "my.py").write_text(MODEL_FILE.format(call=ARCHITECTURES[architecture]))
    payload = run(
        *("core.pointing_game", "--images", "photos", "--annotations", str(coco), "--model", "my.py:build"),
        *("--normalize", "imagenet", "-e", "gradcam", "-e", "ig:steps=8"),
    )
    scores = values(payload)
    assert set(scores) == {"methods.gradcam", "methods.ig:steps=8"}
    # four of the five drawn images are evaluated; those without a region of their class are skipped
    for row in payload["results"]:
        assert 0.0 <= row["value"] <= 1.0
        assert row["n"] + row["n_skipped"] == 4
    assert payload["provenance"]["dataset"] == "core.images"
    assert payload["provenance"]["model"] == "file:my.build"


def test_relevance_mass_from_mask_pngs_then_the_report(tmp_path):
    photos = write_photos(tmp_path / "photos")
    for name, (target, _) in DRAWN.items():
        mask = (box_mask(target) * 255).astype(np.uint8)
        Image.fromarray(mask).save(photos / name.replace(".png", ".mask.png"))
    (tmp_path / "my.py").write_text(MODEL_FILE.format(call=ARCHITECTURES["resnet18"]))
    payload = run(
        *("core.relevance_mass", "--images", "photos", "--model", "my.py:build", "--normalize", "imagenet"),
        *("-e", "lrp_epsilon", "-e", "deeplift", "-e", "random"),
    )
    assert set(values(payload)) == {"methods.lrp_epsilon", "methods.deeplift", "methods.random"}
    report = CliRunner().invoke(cli, ["report", "--out", "report", "--format", "html"])
    assert report.exit_code == 0, report.output
    page = Path("report/index.html").read_text()
    assert "file:my.build" in page and "core.relevance_mass" in page and "summation gap" in page


def test_road_on_your_folder_with_a_hugging_face_vit(tmp_path):
    pytest.importorskip("transformers")
    from attribench_core.reference_models import tiny_hf_model

    write_photos(tmp_path / "photos")
    torch.manual_seed(0)
    tiny_hf_model("vit", num_labels=3, image_size=32).save_pretrained(tmp_path / "vit")
    payload = run(
        "soco.road", "--images", "photos", "--model", "hf:./vit", "-e", "ig:steps=8", "-e", "gradient"
    )
    assert set(values(payload)) == {"methods.ig:steps=8", "methods.gradient"}
    assert payload["provenance"]["model"] == "hf:vit"
    curves = payload["results"][0]["values"]
    assert len(curves["morf"]["y"]) == len(curves["lerf"]["y"]) == 9
