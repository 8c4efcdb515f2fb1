"""SynthPano scenes: a few objects on a ground plane around the viewer, sampled from a seed.

World frame (metres): x to the right (yaw +90°), y up, z ahead (yaw 0°); the viewer's eye
is at the origin, ``CAMERA_HEIGHT`` above the ground. Yaw follows
:mod:`cora.processors.geometry`: 0° = ERP centre column, positive to the right, wrapped
into [-180, 180), so an object "behind you" straddles the ERP's ±180° seam.

A scene is sampled in object space only (no pixels), so its text is independent of the
resolution it is rendered at.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from cora.processors.geometry import wrap_deg

CAMERA_HEIGHT = 1.5
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.60, 0.20, 0.75),
    "orange": (0.98, 0.50, 0.05),
}
SHAPES = ("sphere", "cube", "cylinder", "cone")
SIZES = ("small", "large")
# Eight 45° sectors, index = round(yaw / 45) mod 8; sector 4 is centred on the seam.
DIRECTIONS = (
    "ahead",
    "ahead to the right",
    "to the right",
    "behind you to the right",
    "behind you",
    "behind you to the left",
    "to the left",
    "ahead to the left",
)
SKIES = (
    ((0.55, 0.72, 0.95), (0.20, 0.40, 0.80)),  # (horizon, zenith): clear day
    ((0.85, 0.80, 0.75), (0.45, 0.55, 0.75)),  # hazy
    ((0.95, 0.70, 0.50), (0.30, 0.30, 0.55)),
)  # dusk
GROUNDS = ((0.55, 0.55, 0.52), (0.42, 0.36, 0.30), (0.66, 0.63, 0.58))
YAW_JITTER_DEG = 15.0  # keeps every object centre >= 7.5° from a sector boundary
MIN_GAP_DEG = 3.0  # free angle between neighbouring objects: none hides another
MIN_DISTANCE_GAP_M = 0.8  # "the nearest" is never a close call
DISTANCE_RANGE_M = (3.0, 7.5)


@dataclass(frozen=True)
class SynthObject:
    """One object resting on the ground at (yaw, distance)."""

    shape: str
    colour: str
    size: str
    yaw_deg: float
    distance_m: float
    radius_m: float  # sphere/cylinder/cone radius; half the cube's side
    height_m: float
    spin_deg: float = 0.0  # rotation of a cube about its vertical axis

    @property
    def name(self) -> str:
        """``"red sphere"``: unique within a scene (colours never repeat)."""
        return f"{self.colour} {self.shape}"

    @property
    def sector(self) -> int:
        return round(self.yaw_deg / 45.0) % 8

    @property
    def direction(self) -> str:
        return DIRECTIONS[self.sector]

    @property
    def base(self) -> np.ndarray:
        """Centre of the footprint on the ground, ``[3]``."""
        yaw = math.radians(self.yaw_deg)
        return np.array([self.distance_m * math.sin(yaw), -CAMERA_HEIGHT, self.distance_m * math.cos(yaw)])

    @property
    def centre(self) -> np.ndarray:
        return self.base + np.array([0.0, self.height_m / 2.0, 0.0])

    @property
    def pitch_deg(self) -> float:
        """Elevation of the object's centre seen from the viewer."""
        c = self.centre
        return math.degrees(math.atan2(c[1], math.hypot(c[0], c[2])))

    @property
    def half_width_deg(self) -> float:
        """Half the horizontal angle the object can cover (its footprint's bounding circle)."""
        reach = self.radius_m * (math.sqrt(2.0) if self.shape == "cube" else 1.0)
        return math.degrees(math.asin(min(1.0, reach / self.distance_m)))

    def to_dict(self) -> dict:
        return {**asdict(self), "pitch_deg": round(self.pitch_deg, 3)}


@dataclass(frozen=True)
class Scene:
    objects: tuple[SynthObject, ...]
    sky: int
    ground: int
    texture_offset: tuple[float, float]

    def ordered(self) -> list[SynthObject]:
        """Objects from ahead, turning right (clockwise seen from above) all the way round."""
        return sorted(self.objects, key=lambda o: o.yaw_deg % 360.0)

    def by_distance(self) -> list[SynthObject]:
        return sorted(self.objects, key=lambda o: o.distance_m)


def _shape_height(shape: str, radius: float) -> float:
    return {"sphere": 2.0, "cube": 2.0, "cylinder": 2.6, "cone": 2.8}[shape] * radius


def _separated(objects: list[SynthObject]) -> bool:
    ordered = sorted(objects, key=lambda o: o.yaw_deg % 360.0)
    for a, b in zip(ordered, ordered[1:] + ordered[:1]):
        if a is b:
            continue
        gap = (b.yaw_deg - a.yaw_deg) % 360.0
        if gap < a.half_width_deg + b.half_width_deg + MIN_GAP_DEG:
            return False
    dists = sorted(o.distance_m for o in objects)
    return all(d2 - d1 >= MIN_DISTANCE_GAP_M for d1, d2 in itertools.pairwise(dists))


def sample_scene(rng: np.random.Generator, min_objects: int = 2, max_objects: int = 5, max_tries: int = 200) -> Scene:
    """A scene of ``min_objects..max_objects`` objects in distinct sectors, distinct colours,
    none hiding another, distinct distances. Deterministic in ``rng``."""
    count = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(max_tries):
        sectors = rng.choice(8, size=count, replace=False)
        colours = rng.choice(len(COLOURS), size=count, replace=False)
        # Distances at least MIN_DISTANCE_GAP_M apart by construction, in random order.
        slack = (DISTANCE_RANGE_M[1] - DISTANCE_RANGE_M[0]) - (count - 1) * MIN_DISTANCE_GAP_M
        distances = rng.permutation(
            np.sort(rng.uniform(0.0, slack, count)) + MIN_DISTANCE_GAP_M * np.arange(count) + DISTANCE_RANGE_M[0]
        )
        objects = []
        for sector, colour, distance in zip(sectors, colours, distances):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            size = SIZES[int(rng.integers(2))]
            radius = float(rng.uniform(0.5, 0.65) if size == "small" else rng.uniform(0.9, 1.2))
            yaw = float(wrap_deg(45.0 * sector + rng.uniform(-YAW_JITTER_DEG, YAW_JITTER_DEG)))
            objects.append(
                SynthObject(
                    shape=shape,
                    colour=list(COLOURS)[int(colour)],
                    size=size,
                    yaw_deg=round(yaw, 3),
                    distance_m=round(float(distance), 3),
                    radius_m=round(radius, 3),
                    height_m=round(_shape_height(shape, radius), 3),
                    spin_deg=round(float(rng.uniform(0, 90)), 3),
                )
            )
        if _separated(objects):
            return Scene(
                objects=tuple(objects),
                sky=int(rng.integers(len(SKIES))),
                ground=int(rng.integers(len(GROUNDS))),
                texture_offset=(float(rng.uniform(0, 2)), float(rng.uniform(0, 2))),
            )
        # Too crowded for this draw: try again with one object fewer now and then.
        if count > min_objects and rng.random() < 0.1:
            count -= 1
    raise RuntimeError(f"could not place {count} separated objects in {max_tries} tries")
