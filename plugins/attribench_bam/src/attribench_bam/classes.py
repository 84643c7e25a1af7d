"""BAM's 10 object and 10 scene classes, their label ids, and where the real data keeps each class.

A label is the class's index in `OBJECTS` or `SCENES`, the sorted order the original gave its ids
(backpack=0 … zebra=9; bamboo_forest=0 … track=9). The synthetic source keeps these names so that `dog`,
`bedroom` and `bamboo_forest` play the same roles in every set.
"""

from __future__ import annotations

OBJECTS = ("backpack", "bird", "dog", "elephant", "kite", "pizza", "stop_sign", "toilet", "truck", "zebra")
SCENES = (
    "bamboo_forest",
    "bedroom",
    "bowling_alley",
    "bus_interior",
    "cockpit",
    "corn_field",
    "laundromat",
    "runway",
    "ski_slope",
    "track",
)

DOG = OBJECTS.index("dog")
BEDROOM = SCENES.index("bedroom")
BAMBOO_FOREST = SCENES.index("bamboo_forest")

COCO_NAMES = {name: name.replace("_", " ") for name in OBJECTS}
"""COCO's category name of each object class. Only "stop sign" differs: the original asked for "stop_sign",
which matches no category, and pycocotools then returned every category's images and annotations."""

MINIPLACES_FOLDERS = {**{scene: scene for scene in SCENES}, "track": "track/outdoor"}
"""The MiniPlaces folder of each scene, under `train/<its first letter>/` (e.g. `train/t/track/outdoor`)."""
