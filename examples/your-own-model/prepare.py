"""Make the material of the walk-through "Evaluate your own model" (docs/your-model.md) in a folder OUT:

    OUT/photos/<class>/<image>.png   240 photos-like images (160x128) of three shapes on textured scenes
    OUT/photos/classes.txt           the model's output order
    OUT/instances.json               COCO annotations: one polygon per shape, category = its class
    OUT/model.py                     build(num_classes): a torchvision-layout ResNet-18 (width 16)
    OUT/resnet.pt                    its state dict, trained here for a few epochs behind ImageNet
                                     normalisation (as torchvision's ImageNet models are)

It stands in for what a researcher brings (a trained ResNet and an annotated image folder) without
downloading anything. Run: python examples/your-own-model/prepare.py OUT [--images 240] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from attribench_core.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize, Normalized
from attribench_core.reference_models import resnet18

CLASSES = ("circle", "square", "triangle")
WIDTH, HEIGHT, SIDE = 160, 128, 96  # image size on disk; the side the runs crop to (--size)
MODEL_FILE = '''\
"""build(num_classes): the ResNet-18 that resnet.pt holds the weights of (torchvision's layout)."""

from attribench_core.reference_models import resnet18


def build(num_classes):
    return resnet18(num_classes, width=16)
'''


def outline(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The shape's polygon (a circle as 24 vertices), in pixel coordinates."""
    if kind == "circle":
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
    if kind == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]


def draw(rng: np.random.Generator, kind: str) -> tuple[Image.Image, list[tuple[float, float]]]:
    """A textured scene with one shape of `kind` inside the central crop, and the shape's polygon."""
    coarse = rng.uniform(40, 220, (6, 8, 3)).astype(np.uint8)
    scene = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 12, (HEIGHT, WIDTH, 3))
    scene = Image.fromarray(np.clip(np.asarray(scene) + noise, 0, 255).astype(np.uint8))
    r = rng.uniform(12, 22)
    margin = (WIDTH - SIDE * WIDTH / HEIGHT) / 2  # keep the shape inside what the centre crop keeps
    cx = rng.uniform(margin + r + 4, WIDTH - margin - r - 4)
    cy = rng.uniform(r + 4, HEIGHT - r - 4)
    polygon = outline(kind, cx, cy, r)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    ImageDraw.Draw(scene).polygon(polygon, fill=colour, outline=(0, 0, 0))
    return scene, polygon


def write_photos(out: Path, count: int) -> None:
    """The class folders, classes.txt and the COCO file."""
    rng = np.random.default_rng(0)
    photos = out / "photos"
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)],
    }
    for i in range(count):
        kind = CLASSES[i % len(CLASSES)]
        (photos / kind).mkdir(parents=True, exist_ok=True)
        scene, polygon = draw(rng, kind)
        name = f"{kind}/{i:04d}.png"
        scene.save(photos / name)
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        coco["images"].append({"id": i + 1, "file_name": name, "width": WIDTH, "height": HEIGHT})
        coco["annotations"].append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": CLASSES.index(kind) + 1,
                "segmentation": [[round(v, 2) for p in polygon for v in p]],
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "area": 0.0,
                "iscrowd": 0,
            }
        )
    (photos / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "instances.json").write_text(json.dumps(coco))


def train(out: Path, epochs: int) -> float:
    """Train the ResNet behind ImageNet normalisation on the photos (centre crops, as the runs see them);
    save the bare network's state dict; return the accuracy on the training photos."""
    from attribench_core.builtin.images import make_images

    photos = make_images(root=str(out / "photos"), size=SIDE)  # the images exactly as the runs read them
    everything = photos.batch(range(len(photos)))
    images, labels = everything.images, everything.labels
    torch.manual_seed(0)
    network = resnet18(len(CLASSES), width=16)
    model = Normalized(Normalize(IMAGENET_MEAN, IMAGENET_STD), network)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for pick in torch.randperm(len(images), generator=generator).split(32):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(images[pick]), labels[pick]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    torch.save(network.state_dict(), out / "resnet.pt")
    (out / "model.py").write_text(MODEL_FILE)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write_photos(args.out, args.images)
    accuracy = train(args.out, args.epochs)
    print(f"wrote {args.out}/photos ({args.images} images), instances.json, model.py, resnet.pt")
    print(f"training accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
