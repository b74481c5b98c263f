"""Synthetic MERSV-like data: microscope videos of swimming sperm and a simulated expert panel.

Plain numpy/OpenCV/pandas, no Django. The demo, the tests and the benchmarks (tracking,
rater model, retirement, training) use it because the real dataset cannot be published.

Each tagged *target* sperm gets a latent motility ``m`` and morphology ``h`` in [0, 1]; its
latent quality ``z = quality_scale * (w * m + (1 - w) * h) + quality_offset`` (higher is
better) is graded by the ordinal expert panel of `simulator.panel`. Both latents show in the
video: ``m`` picks the motion (immotile < non-progressive < sluggish < progressive, speed
rising inside each band), ``h`` the head (normal oval, tapered, pear, round, amorphous, and
vacuoles as ``h`` falls). How vacuoles look (size range, grey value, count, edge softness) is
set by ``SyntheticConfig.vacuole_*``; at their defaults every file is what it was before
those knobs existed.

Rendering looks like phase contrast: a grey field with a smooth illumination gradient and
per-frame sensor noise; a sperm head is a dark core inside a bright halo, with a darker
midpiece and a thin tail carrying a travelling wave. Shapes are drawn with OpenCV at 1/16 px
(``shift``) on a 4x supersampled patch that is area-averaged down, so positions are exact to
a few hundredths of a pixel and motion is smooth. Only the patches around moving things are
drawn; the background is computed once per video and the noise comes from a bank of noise
fields, cut at a random offset and flip per frame.

Coordinates are (x, y) in pixels of the frame, pixel (row r, column c) centred at (c, r).

Files written by `generate_dataset` (the exchange format plus the truth)::

    clips.csv           clip_id, patient_id, video, fps, x, y, pixel_size_um
    ratings.csv         clip_id, rater_id, grade
    videos/v0001.mp4    the full-field videos
    truth_clips.csv     clip_id, quality, motility, morphology, motion_type, head_shape,
                        n_vacuoles, p_A .. p_E    (the panel's expected grade distribution)
    truth_tracks.csv    clip_id, frame, x, y      (the target's head centre in every frame)
    truth_experts.csv   rater_id, severity, noise
    truth_panel.json    {"thresholds": [...], "seed": ..., "config": {...}}

``failure_mode`` stages a way tracking fails around each video's first target
(``FAILURE_MODES``: it swims out of the frame about half way through the clip, or late, in
its last quarter, a static cluster lies beside its path, a
brighter still copy of its head lies beside it at frame 0); ``pixel_size_um`` sets the
magnification (``MAGNIFICATIONS_UM_PER_PX``: heads of about 9, 18 and 37 px). With the
defaults every file is what it always was. ``heads_frame0(config)`` is the truth of every
head in frame 0 of every video (for judging a head detector).

Command line: ``python -m simulator.synthetic OUT_DIR --clips 30 --seed 0``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.stats import beta, norm

from annotation import exchange
from annotation.grades import GRADES, PROB_COLUMNS
from simulator.panel import Panel, panel_expected_distribution, panel_sample, panel_votes

# Worst to best: the order of the motility bands in [0, 1].
MOTION_TYPES: tuple[str, ...] = ("immotile", "non_progressive", "sluggish", "progressive")
MOTILITY_BANDS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.55, 1.0)
HEAD_SHAPES: tuple[str, ...] = ("normal", "tapered", "pear", "round", "amorphous")
VIDEO_FORMATS: dict[str, str] = {"mp4": "mp4v", "avi": "MJPG"}
# The ways a tracker fails on real fields, each staged around the first target of a video:
# - "leaves_frame": it starts near a border and swims straight out of the field (its path is
#   not reflected back in; its true track runs outside the frame);
# - "static_cluster": a clump of immotile cells and debris sits beside its path, half way;
# - "bright_neighbour": a still copy of its head, with more contrast, lies beside it at frame 0.
FAILURE_MODES: tuple[str, ...] = (
    "none",
    "leaves_frame",
    "leaves_frame_late",
    "static_cluster",
    "bright_neighbour",
)
# Three magnifications (µm per px): heads of about 9, 18 and 37 px.
MAGNIFICATIONS_UM_PER_PX: tuple[float, ...] = (0.5, 0.25, 0.125)

# Brightness offsets from the background (grey levels, before the per-cell contrast factor).
HEAD_VALUE = -62
# The head is thickest in the middle, so its centre is darkest: an inner core of the outline
# shrunk by HEAD_CORE_SCALE around the centroid.
HEAD_CORE_VALUE = -92
HEAD_CORE_SCALE = 0.55
HALO_VALUE = 42
VACUOLE_VALUE = -36  # paler than the head core: a light spot inside a dark head (the default)
# A soft-edged vacuole (SyntheticConfig.vacuole_softness_um > 0) is drawn as this many discs
# from its outer to its inner edge, stepping from the head core's value to the vacuole's.
VACUOLE_EDGE_STEPS = 4
MIDPIECE_VALUE = -55
TAIL_VALUE = -40
END_PIECE_VALUE = -26
HALO_WIDTH_UM = 0.7

SUPERSAMPLE = 4  # drawing resolution per output pixel
_SHIFT = 4  # cv2 fixed-point bits: coordinates in 1/16 of a (supersampled) pixel
_NEUTRAL = 128  # canvas value meaning "no change to the background"
_BROWNIAN_UM = 0.12  # head jitter per frame of an immotile cell (thermal motion)

# Independent random streams, so that e.g. changing the scene code leaves the votes alone.
_STREAM_PANEL, _STREAM_CELLS, _STREAM_VOTES, _STREAM_SCENE, _STREAM_NOISE = range(1, 6)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator. Lengths in µm, speeds in µm/s, times in s, unless named px.

    The defaults give one MERSV-like dataset: 1392 x 976 px at 15 fps, 0.5 µm/px, about 40
    experts voting on every clip, one target per video and one video per patient.
    """

    # Dataset shape.
    n_clips: int = 30
    n_experts: int = 40
    seed: int = 0
    videos_per_patient: int = 1  # >1 puts several videos under one patient_id
    targets_per_video: int = 1  # >1 tags several sperm in one video (several clips per video)
    votes_per_clip: int | None = None  # None: every expert votes on every clip
    # Video.
    width: int = 1392
    height: int = 976
    fps: float = 15.0
    n_frames: int = 32
    pixel_size_um: float = 0.5
    video_format: str = "mp4"  # "mp4" (mp4v) or "avi" (MJPG)
    # Scene.
    n_distractors: int = 4  # other sperm in each video, drawn like the targets
    n_debris: int = 6  # blobs; about half only move with the field's drift
    near_distractor_prob: float = 0.35  # chance that a distractor starts near a target, aimed at it
    drift_um_s: float = 2.0  # largest speed of the whole field's drift
    min_separation_um: float = 10.0  # at frame 0 nothing else comes this close to a target's head
    target_margin_um: float = 6.0  # a target's head centre stays this far inside the frame
    # A way tracking fails, staged around the first target of every video (FAILURE_MODES;
    # "none" leaves the scene as it always was, byte for byte).
    failure_mode: str = "none"
    # Optics.
    background_level: float = 150.0  # mean grey level of the field
    illumination_gradient: float = 0.08  # relative brightness change across the field
    noise_sd: float = 4.0  # sensor noise, grey levels
    blur: float = 0.6  # Gaussian sigma (px) of the optics on cells and debris; 0 = sharp
    # Cells.
    head_length_um: float = 4.6
    head_width_um: float = 3.0
    # Vacuoles, the pale spots of a defective head (a normal head has none). A head whose
    # defect is d (0..1, from its morphology) gets Poisson(vacuole_rate[0] + vacuole_rate[1]
    # * d ** 1.2) of them, at most vacuole_max, of radius U(vacuole_radius_um); each is
    # ``vacuole_value`` grey levels from the background (the head core is HEAD_CORE_VALUE,
    # -92: nearer 0 is paler) and its edge ramps from the core's value to its own over
    # ``vacuole_softness_um`` (0: a sharp disc). The defaults are the generator's first look.
    vacuole_radius_um: tuple[float, float] = (0.3, 0.6)
    vacuole_value: float = VACUOLE_VALUE
    vacuole_rate: tuple[float, float] = (0.6, 2.5)
    vacuole_max: int = 4
    vacuole_softness_um: float = 0.0
    midpiece_length_um: float = 5.0
    tail_length_um: float = 40.0  # principal piece + end piece
    # Latents and quality: m ~ Beta(motility_beta), h ~ Beta(morphology_beta), correlated
    # through a Gaussian copula (poor cells tend to be poor in both). With a 40-expert panel
    # the defaults put the grade modes at about A 6-13%, B 33-37%, C 31-37%, D 15-19%,
    # E 4-6% (the range over panels drawn with different seeds).
    motility_beta: tuple[float, float] = (2.2, 1.2)
    morphology_beta: tuple[float, float] = (2.2, 1.2)
    latent_correlation: float = 0.5
    motility_weight: float = 0.55  # w in z = quality_scale * (w m + (1 - w) h) + quality_offset
    quality_scale: float = 4.6
    quality_offset: float = -2.7

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "n_clips", "n_experts", "width", "height", "n_frames", "videos_per_patient",
            "targets_per_video",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if not -1 < self.latent_correlation < 1:
            problems.append("latent_correlation must lie strictly between -1 and 1")
        if self.votes_per_clip is not None and not 1 <= self.votes_per_clip <= self.n_experts:
            problems.append("votes_per_clip must lie between 1 and n_experts (or be None)")
        if self.fps <= 0 or self.pixel_size_um <= 0:
            problems.append("fps and pixel_size_um must be positive")
        if self.failure_mode not in FAILURE_MODES:
            problems.append(f"failure_mode must be one of {list(FAILURE_MODES)}")
        if self.video_format not in VIDEO_FORMATS:
            problems.append(f"video_format must be one of {sorted(VIDEO_FORMATS)}")
        if self.seed < 0:
            problems.append("seed must be a non-negative integer")
        low, high = self.vacuole_radius_um
        if not 0 < low <= high:
            problems.append("vacuole_radius_um must be (low, high) with 0 < low <= high")
        if min(self.vacuole_rate) < 0 or self.vacuole_max < 0 or self.vacuole_softness_um < 0:
            problems.append(
                "vacuole_rate, vacuole_max and vacuole_softness_um must not be negative"
            )
        if not -255 < self.vacuole_value < 255:
            problems.append("vacuole_value must be a grey-level offset in (-255, 255)")
        margin_px = self.target_margin_um / self.pixel_size_um
        if min(self.width, self.height) <= 2 * margin_px + 2:
            problems.append(
                f"a {self.width} x {self.height} frame leaves no room inside the "
                f"{self.target_margin_um} µm margin: use a larger frame or a smaller margin"
            )
        if problems:
            raise ValueError("invalid SyntheticConfig: " + "; ".join(problems))

    @property
    def px_per_um(self) -> float:
        return 1.0 / self.pixel_size_um

    def quality(self, motility: np.ndarray, morphology: np.ndarray) -> np.ndarray:
        """Latent quality z of clips with these latents (higher is better)."""
        mix = self.motility_weight * np.asarray(motility) + (1 - self.motility_weight) * (
            np.asarray(morphology)
        )
        return self.quality_scale * mix + self.quality_offset


# --------------------------------------------------------------------------------------------
# Cells: what they look like and how they move


@dataclass(frozen=True, eq=False)
class CellSpec:
    """One sperm cell, independent of where it is. Head geometry in µm, in the head's own frame:
    x points forward along the head axis, the head's area centroid is (0, 0)."""

    motility: float
    morphology: float
    motion_type: str
    head_shape: str
    head_outline_um: np.ndarray  # (K, 2) closed contour
    halo_outline_um: np.ndarray  # (K, 2) the contour pushed HALO_WIDTH_UM outwards
    vacuoles_um: np.ndarray  # (n, 3): x, y, radius
    speed_um_s: float  # along the path (progressive, sluggish) or the circle (non_progressive)
    turn_rad_s: float  # steady curvature of the path
    circle_radius_um: float  # non_progressive only
    lateral_um: float  # amplitude of the head's side-to-side motion
    yaw_rad: float  # amplitude of the head's rocking about its axis
    beat_hz: float  # flagellar beat (0: no beat)
    tail_amplitude_um: float  # wave amplitude at the tail's end
    wavelength_um: float
    midpiece_length_um: float
    tail_length_um: float  # principal piece + end piece
    tail_bend_rad: float  # frozen bend of the tail (immotile cells)
    contrast: float  # scales every brightness offset of this cell (focus)
    # How its vacuoles look (SyntheticConfig's vacuole_value and vacuole_softness_um).
    vacuole_value: float = VACUOLE_VALUE
    vacuole_softness_um: float = 0.0

    @property
    def n_vacuoles(self) -> int:
        return len(self.vacuoles_um)

    @cached_property
    def flagellum_arc(self) -> tuple[np.ndarray, list[int]]:
        return _flagellum_arc(self)


def latents_sample(
    *, n: int, config: SyntheticConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Motility and morphology of n cells, (n,) each in [0, 1]."""
    rho = config.latent_correlation
    g = rng.standard_normal((n, 2))
    u = norm.cdf(np.stack([g[:, 0], rho * g[:, 0] + math.sqrt(1 - rho**2) * g[:, 1]], axis=1))
    return beta.ppf(u[:, 0], *config.motility_beta), beta.ppf(u[:, 1], *config.morphology_beta)


def _lerp(lo: float, hi: float, fraction: float) -> float:
    return lo + (hi - lo) * fraction


def _band(value: float, edges: Sequence[float]) -> tuple[int, float]:
    """Index of the band of ``edges`` holding value, and where in the band it lies (0..1)."""
    index = min(int(np.searchsorted(edges, value, side="right")) - 1, len(edges) - 2)
    index = max(index, 0)
    lo, hi = edges[index], edges[index + 1]
    return index, float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))


def _polygon_centroid(points: np.ndarray) -> np.ndarray:
    """Area centroid of a simple polygon (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2.0
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6.0 * area)


def head_outline_sample(
    *, morphology: float, config: SyntheticConfig, rng: np.random.Generator, n_points: int = 40
) -> tuple[str, np.ndarray, np.ndarray]:
    """A head shape for morphology h: (head_shape, outline (K, 2) µm, vacuoles (n, 3) µm).

    h >= 0.6 gives a normal oval; 0.2 <= h < 0.6 a tapered, pear or round head; below, an
    amorphous one. The defect's size and the number of vacuoles grow as h falls.
    """
    defect = float(np.clip((0.65 - morphology) / 0.65, 0.0, 1.0))
    if morphology >= 0.6:
        shape = "normal"
    elif morphology >= 0.2:
        shape = str(rng.choice(["tapered", "pear", "round"]))
    else:
        shape = "amorphous"
    a = config.head_length_um / 2 * (1 + rng.normal(0, 0.04))
    b = config.head_width_um / 2 * (1 + rng.normal(0, 0.04))
    phi = np.linspace(0.0, 2 * np.pi, n_points, endpoint=False)
    # Small harmonic wobble on every head, large on amorphous ones.
    wobble_amp = 0.15 + 0.2 * defect if shape == "amorphous" else 0.02 + 0.04 * defect
    radial = np.ones_like(phi)
    for k in range(2, 6):
        radial += wobble_amp / (k - 1) * rng.uniform(0.5, 1) * np.cos(k * phi + rng.uniform(0, 6.3))
    if shape == "tapered":  # long and thin
        a *= 1.12 + 0.2 * defect
        b *= 0.82 - 0.15 * defect
    elif shape == "round":
        scale = rng.uniform(0.85, 1.0)
        a, b = a * 0.72 * scale, a * 0.68 * scale
    elif shape == "amorphous":
        scale = rng.uniform(0.8, 1.3)
        a, b = a * scale, b * scale
    x = a * np.cos(phi) * radial
    y = b * np.sin(phi) * radial
    if shape == "pear":  # wide front, narrow back
        taper = 0.3 + 0.4 * defect
        y *= 1 + taper * x / a
    outline = np.stack([x, y], axis=1)
    outline -= _polygon_centroid(outline)

    base, slope = config.vacuole_rate
    n_vacuoles = (
        0
        if shape == "normal"
        else min(int(rng.poisson(base + slope * defect**1.2)), config.vacuole_max)
    )
    radii = rng.uniform(*config.vacuole_radius_um, size=n_vacuoles)
    # Uniform inside the inner half of the head, so a vacuole never touches the rim.
    r = np.sqrt(rng.uniform(0, 1, size=n_vacuoles)) * 0.5
    angle = rng.uniform(0, 2 * np.pi, size=n_vacuoles)
    vacuoles = np.stack([r * a * np.cos(angle), r * b * np.sin(angle), radii], axis=1)
    return shape, outline, vacuoles


def _outline_grow(outline: np.ndarray, by: float) -> np.ndarray:
    """Push every point of a star-shaped outline (around (0, 0)) outwards by ``by``."""
    norm = np.linalg.norm(outline, axis=1, keepdims=True)
    return outline * (1 + by / np.maximum(norm, 1e-6))


def cell_sample(
    *, motility: float, morphology: float, config: SyntheticConfig, rng: np.random.Generator
) -> CellSpec:
    """A cell whose motion shows motility m and whose head shows morphology h."""
    band, frac = _band(motility, MOTILITY_BANDS)
    motion_type = MOTION_TYPES[band]
    jitter = rng.uniform(0.9, 1.1)
    speed = turn = radius = lateral = yaw = beat = amplitude = bend = 0.0
    if motion_type == "progressive":  # VCL about 60..135 µm/s at 15 fps
        speed = _lerp(50.0, 130.0, frac) * jitter
        turn = rng.normal(0, 0.25)
        lateral = _lerp(1.2, 2.4, frac)
        yaw = rng.uniform(0.12, 0.25)
        beat = _lerp(7.0, 12.0, frac)
        amplitude = _lerp(3.5, 6.0, frac)
    elif motion_type == "sluggish":
        speed = _lerp(8.0, 28.0, frac) * jitter
        turn = rng.normal(0, 0.4)
        lateral = _lerp(0.4, 1.0, frac)
        yaw = rng.uniform(0.05, 0.12)
        beat = _lerp(3.0, 6.0, frac)
        amplitude = _lerp(2.0, 3.5, frac)
    elif motion_type == "non_progressive":  # circling on the spot
        speed = _lerp(18.0, 40.0, frac) * jitter
        radius = rng.uniform(4.0, 9.0)
        lateral = _lerp(0.4, 1.0, frac)
        yaw = rng.uniform(0.08, 0.15)
        beat = _lerp(4.0, 8.0, frac)
        amplitude = _lerp(2.0, 4.0, frac)
    else:  # immotile; the upper half of the band twitches its tail in place
        twitch = max(0.0, 2 * frac - 1)
        beat = 3.0 if twitch > 0 else 0.0
        amplitude = 1.2 * twitch
        bend = rng.uniform(-0.7, 0.7)
    shape, outline, vacuoles = head_outline_sample(morphology=morphology, config=config, rng=rng)
    return CellSpec(
        motility=float(motility),
        morphology=float(morphology),
        motion_type=motion_type,
        head_shape=shape,
        head_outline_um=outline,
        halo_outline_um=_outline_grow(outline, HALO_WIDTH_UM),
        vacuoles_um=vacuoles,
        speed_um_s=float(speed),
        turn_rad_s=float(turn),
        circle_radius_um=float(radius),
        lateral_um=float(lateral),
        yaw_rad=float(yaw),
        beat_hz=float(beat),
        tail_amplitude_um=float(amplitude),
        wavelength_um=float(rng.uniform(20.0, 30.0)),
        midpiece_length_um=config.midpiece_length_um * float(rng.uniform(0.9, 1.1)),
        tail_length_um=config.tail_length_um * float(rng.uniform(0.9, 1.1)),
        tail_bend_rad=float(bend),
        contrast=float(rng.uniform(0.85, 1.1)),
        vacuole_value=float(config.vacuole_value),
        vacuole_softness_um=float(config.vacuole_softness_um),
    )


@dataclass(frozen=True, eq=False)
class CellTrack:
    """Where a cell is in each frame: head centre (F, 2) px, head axis angle (F,) rad (the
    direction the head points), flagellar beat phase (F,) rad."""

    centres: np.ndarray
    angles: np.ndarray
    phases: np.ndarray


@dataclass(frozen=True)
class Bounds:
    """A box the head centre stays in (reflected off its walls), px."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float


def _fold(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflect coordinates into [lo, hi] like a ball off walls, and the sign of the
    derivative of the folded coordinate (-1 on the way back)."""
    period = 2.0 * (hi - lo)
    r = np.mod(values - lo, period)
    back = r > hi - lo
    return np.where(back, lo + period - r, lo + r), np.where(back, -1.0, 1.0)


def cell_track_sample(
    cell: CellSpec,
    *,
    start: tuple[float, float],
    heading: float,
    n_frames: int,
    fps: float,
    px_per_um: float,
    bounds: Bounds,
    drift: np.ndarray,
    rng: np.random.Generator,
) -> CellTrack:
    """Simulate the head's path from ``start`` (frame 0) swimming towards ``heading`` (rad).

    ``drift`` (F, 2) px is the whole field's displacement, added to every cell. The head
    centre is reflected off the walls of ``bounds`` (its direction mirrored too).
    """
    t = np.arange(n_frames) / fps
    phase = 2 * np.pi * cell.beat_hz * t + rng.uniform(0, 2 * np.pi)
    if cell.motion_type == "non_progressive":
        radius = cell.circle_radius_um * px_per_um
        turning = rng.choice([-1.0, 1.0])
        alpha = (
            heading - turning * np.pi / 2 + turning * cell.speed_um_s / cell.circle_radius_um * t
        )
        path = radius * np.stack([np.cos(alpha), np.sin(alpha)], axis=1)
        direction = alpha + turning * np.pi / 2
    elif cell.motion_type == "immotile":
        direction = heading + np.cumsum(rng.normal(0, 0.01, size=n_frames))
        path = np.cumsum(rng.normal(0, _BROWNIAN_UM * px_per_um, size=(n_frames, 2)), axis=0)
    else:
        wander = np.cumsum(rng.normal(0, 0.04, size=n_frames))
        direction = heading + cell.turn_rad_s * t + wander
        step = cell.speed_um_s * px_per_um / fps
        velocity = step * np.stack([np.cos(direction), np.sin(direction)], axis=1)
        path = np.concatenate([np.zeros((1, 2)), np.cumsum(velocity[:-1], axis=0)])
    normal = np.stack([-np.sin(direction), np.cos(direction)], axis=1)
    centres = path + (cell.lateral_um * px_per_um * np.sin(phase))[:, None] * normal
    centres = centres - centres[0] + np.asarray(start) + drift - drift[0]
    angles = direction + cell.yaw_rad * np.cos(phase)

    x, sign_x = _fold(centres[:, 0], bounds.x_min, bounds.x_max)
    y, sign_y = _fold(centres[:, 1], bounds.y_min, bounds.y_max)
    angles = np.arctan2(sign_y * np.sin(angles), sign_x * np.cos(angles))
    return CellTrack(centres=np.stack([x, y], axis=1), angles=angles, phases=phase)


# --------------------------------------------------------------------------------------------
# Drawing


@dataclass(frozen=True, eq=False)
class Shape:
    """One thing to draw, in frame px: a filled polygon (``thickness`` 0) or an open polyline
    ``thickness`` px wide. ``value`` is the brightness offset from the background."""

    points: np.ndarray  # (K, 2)
    value: float
    thickness: float = 0.0


def _transform(
    points_um: np.ndarray, *, centre: np.ndarray, angle: float, scale: float
) -> np.ndarray:
    """Head frame (µm) -> frame px: scale, rotate by angle, move to centre."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, s], [-s, c]]) * scale  # row vectors: p @ rotation
    return points_um @ rotation + centre


_VACUOLE_CIRCLE = np.stack(
    [np.cos(np.arange(12) * np.pi / 6), np.sin(np.arange(12) * np.pi / 6)], axis=1
)
# The flagellum's pieces: (value, thickness µm, share of the samples); drawn back to front.
_FLAGELLUM_PIECES: tuple[tuple[float, float, int], ...] = (
    (END_PIECE_VALUE, 0.35, 5),
    (TAIL_VALUE, 0.5, 14),
    (MIDPIECE_VALUE, 1.0, 4),
)


def _flagellum_arc(cell: CellSpec) -> tuple[np.ndarray, list[int]]:
    """Arc lengths (µm from the neck) sampled along the flagellum, end piece first, and the
    sizes of the pieces of ``_FLAGELLUM_PIECES`` in that array (adjacent pieces share their
    joining sample so the line is unbroken)."""
    total = cell.midpiece_length_um + cell.tail_length_um
    breaks = (total, 0.8 * total, cell.midpiece_length_um, 0.0)
    arcs = [
        np.linspace(breaks[i + 1], breaks[i], n)[::-1]
        for i, (_, _, n) in enumerate(_FLAGELLUM_PIECES)
    ]
    return np.concatenate(arcs), [len(a) for a in arcs]


def cell_shapes(
    cell: CellSpec, *, centre: np.ndarray, angle: float, phase: float, px_per_um: float
) -> list[Shape]:
    """What to draw for a cell in one frame, back to front: halo, flagellum, head, its darker
    core, vacuoles."""
    arc, piece_sizes = cell.flagellum_arc
    total = arc[0]
    # A wave travelling from the neck to the tip, its amplitude growing away from the head;
    # plus the frozen bend of a still tail.
    lateral = (
        cell.tail_amplitude_um
        * (arc / total) ** 1.5
        * np.sin(2 * np.pi * arc / cell.wavelength_um - phase)
    )
    lateral += cell.tail_bend_rad * arc**2 / (2 * total)
    neck_x = cell.head_outline_um[:, 0].min() + 0.3  # a little inside the rim: no gap
    flagellum = np.stack([neck_x - arc, lateral], axis=1)
    vacuoles = [
        (_VACUOLE_CIRCLE * radius + (x, y), value)
        for x, y, r in cell.vacuoles_um
        for radius, value in _vacuole_discs(r, cell.vacuole_value, cell.vacuole_softness_um)
    ]
    outline = cell.head_outline_um
    local = np.concatenate(
        [
            cell.halo_outline_um,
            flagellum,
            outline,
            outline * HEAD_CORE_SCALE,
            *(disc for disc, _ in vacuoles),
        ]
    )
    points = _transform(local, centre=centre, angle=angle, scale=px_per_um)

    c = cell.contrast
    n_outline = len(outline)
    shapes = [Shape(points[:n_outline], HALO_VALUE * c)]
    start = n_outline
    for (value, thickness_um, _), size in zip(_FLAGELLUM_PIECES, piece_sizes, strict=True):
        thickness = max(thickness_um * px_per_um, 0.5)
        shapes.append(Shape(points[start : start + size], value * c, thickness))
        start += size
    for value in (HEAD_VALUE, HEAD_CORE_VALUE):
        shapes.append(Shape(points[start : start + n_outline], value * c))
        start += n_outline
    for _, value in vacuoles:
        shapes.append(Shape(points[start : start + len(_VACUOLE_CIRCLE)], value * c))
        start += len(_VACUOLE_CIRCLE)
    return shapes


def _vacuole_discs(radius_um: float, value: float, softness_um: float) -> list[tuple[float, float]]:
    """The discs (radius µm, value) that draw one vacuole, outermost first: one disc of its
    own value when sharp; else ``VACUOLE_EDGE_STEPS`` discs from ``radius + softness / 2``
    down to ``radius - softness / 2`` whose values step from the head core's to its own."""
    if softness_um <= 0:
        return [(radius_um, value)]
    n = VACUOLE_EDGE_STEPS
    return [
        (
            max(radius_um + softness_um * (0.5 - k / (n - 1)), 0.05),
            HEAD_CORE_VALUE + (value - HEAD_CORE_VALUE) * (k + 1) / n,
        )
        for k in range(n)
    ]


def shapes_stamp(
    frame: np.ndarray, shapes: Sequence[Shape], *, blur: float, supersample: int = SUPERSAMPLE
) -> None:
    """Add the shapes' brightness offsets to ``frame`` (int16, (H, W)) in place.

    The shapes are painted back to front on a neutral patch ``supersample`` times finer than
    the frame, area-averaged down (exact partial-pixel coverage) and blurred by the optics.
    """
    points = np.concatenate([shape.points for shape in shapes])
    reach = max(shape.thickness for shape in shapes) + 3 * blur + 2
    height, width = frame.shape
    x0 = max(math.floor(points[:, 0].min() - reach), 0)
    y0 = max(math.floor(points[:, 1].min() - reach), 0)
    x1 = min(math.ceil(points[:, 0].max() + reach) + 1, width)
    y1 = min(math.ceil(points[:, 1].max() + reach) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return  # entirely off the frame
    k = supersample
    canvas = np.full(((y1 - y0) * k, (x1 - x0) * k), _NEUTRAL, np.uint8)
    origin = np.array([x0, y0], dtype=float)
    for shape in shapes:
        # Centre of frame pixel i is supersampled coordinate (i + 0.5) * k - 0.5.
        fixed = np.round(((shape.points - origin + 0.5) * k - 0.5) * (1 << _SHIFT)).astype(np.int32)
        value = int(np.clip(round(_NEUTRAL + shape.value), 0, 255))
        if shape.thickness > 0:
            thickness = max(round(shape.thickness * k), 1)
            cv2.polylines(canvas, [fixed], False, value, thickness, cv2.LINE_AA, _SHIFT)
        else:
            cv2.fillPoly(canvas, [fixed], value, cv2.LINE_8, shift=_SHIFT)
    patch = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    if blur > 0:
        patch = cv2.GaussianBlur(patch, (0, 0), blur)
    frame[y0:y1, x0:x1] += patch.astype(np.int16) - _NEUTRAL


# --------------------------------------------------------------------------------------------
# Scenes: one video's cells, debris, background and noise


@dataclass(frozen=True, eq=False)
class Debris:
    """A blob of debris: outlines (K, 2) px around its centre, brightness offsets (a dark blob
    has a bright halo, a bright one none), centre per frame (F, 2) px."""

    outline: np.ndarray
    halo_outline: np.ndarray
    value: float
    halo_value: float
    centres: np.ndarray

    def shapes(self, frame: int) -> list[Shape]:
        centre = self.centres[frame]
        return [
            Shape(self.halo_outline + centre, self.halo_value),
            Shape(self.outline + centre, self.value),
        ]


def debris_sample(
    *,
    config: SyntheticConfig,
    drift: np.ndarray,
    avoid: Sequence[np.ndarray],
    rng: np.random.Generator,
) -> Debris:
    """A blob 1-6 µm across, away from the points ``avoid`` at frame 0; half of the blobs
    stick to the glass (they move with the field's drift only), half float."""
    px_per_um = config.px_per_um
    radius = rng.uniform(0.6, 3.0) * px_per_um
    phi = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    wobble = 1 + 0.15 * np.cos(2 * phi + rng.uniform(0, 2 * np.pi))
    wobble += 0.1 * np.cos(3 * phi + rng.uniform(0, 2 * np.pi))
    outline = radius * wobble[:, None] * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    clearance = config.min_separation_um * px_per_um + radius
    for _ in range(30):  # after that, the last draw stays, however close
        start = rng.uniform([0, 0], [config.width - 1, config.height - 1])
        if all(np.linalg.norm(start - point) >= clearance for point in avoid):
            break
    centres = start + drift
    if rng.random() < 0.5:  # floating: Brownian motion plus a slow flow
        flow = rng.normal(0, 3.0, size=2) * px_per_um / config.fps
        steps = rng.normal(0, 0.1 * px_per_um, size=(config.n_frames, 2)) + flow
        steps[0] = 0
        centres = centres + np.cumsum(steps, axis=0)
    dark = rng.random() < 0.6
    return Debris(
        outline=outline,
        halo_outline=_outline_grow(outline, HALO_WIDTH_UM * px_per_um),
        value=-rng.uniform(30, 70) if dark else rng.uniform(20, 50),
        halo_value=rng.uniform(15, 35) if dark else 0.0,
        centres=centres,
    )


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything that moves in one video. The first ``n_targets`` cells are the targets."""

    width: int
    height: int
    n_frames: int
    px_per_um: float
    cells: tuple[CellSpec, ...]
    tracks: tuple[CellTrack, ...]
    n_targets: int
    debris: tuple[Debris, ...]

    def frame_shapes(self, frame: int) -> Iterator[list[Shape]]:
        """The shapes of each cell and blob in one frame (one list per object)."""
        for cell, track in zip(self.cells, self.tracks, strict=True):
            yield cell_shapes(
                cell,
                centre=track.centres[frame],
                angle=float(track.angles[frame]),
                phase=float(track.phases[frame]),
                px_per_um=self.px_per_um,
            )
        for blob in self.debris:
            yield blob.shapes(frame)


def _frame0_clear(
    a_centre: np.ndarray,
    a_points: np.ndarray,
    b_centre: np.ndarray,
    b_points: np.ndarray,
    separation: float,
) -> bool:
    """Neither head centre lies within ``separation`` px of anything drawn for the other."""
    return bool(
        np.linalg.norm(b_points - a_centre, axis=1).min() >= separation
        and np.linalg.norm(a_points - b_centre, axis=1).min() >= separation
    )


Simulate = Callable[[CellSpec, np.ndarray, float, Bounds], tuple[CellTrack, np.ndarray]]
_UNBOUNDED = Bounds(-1e9, 1e9, -1e9, 1e9)


def _leaving_track(
    cell: CellSpec,
    *,
    config: SyntheticConfig,
    simulate: Simulate,
    rng: np.random.Generator,
    late: bool = False,
) -> tuple[CellTrack, np.ndarray]:
    """A path from near a border straight out of the frame: it crosses the border about
    half way through the clip (sooner or later by chance), or with ``late`` in the clip's
    last quarter; a slow cell starts at the margin and may not get out."""
    width, height, px_per_um = config.width, config.height, config.px_per_um
    margin = config.target_margin_um * px_per_um
    step = max(cell.speed_um_s, 1.0) * px_per_um / config.fps  # px per frame
    share = rng.uniform(0.75, 0.9) if late else rng.uniform(0.3, 0.6)
    depth = max(step * config.n_frames * share, margin)
    side = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
    outward = ((-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))[side]
    along = rng.uniform(0.3, 0.7)
    if side < 2:
        x = depth if side == 0 else width - 1 - depth
        start = np.array([min(max(x, margin), width - 1 - margin), along * (height - 1)])
    else:
        y = depth if side == 2 else height - 1 - depth
        start = np.array([along * (width - 1), min(max(y, margin), height - 1 - margin)])
    heading = math.atan2(outward[1], outward[0]) + rng.normal(0, 0.2)
    return simulate(cell, start, heading, _UNBOUNDED)


def _still(cell: CellSpec, *, contrast: float | None = None) -> CellSpec:
    """``cell`` made immotile (a still head, a still tail), with another ``contrast``."""
    return replace(
        cell,
        motion_type="immotile",
        speed_um_s=0.0,
        turn_rad_s=0.0,
        lateral_um=0.0,
        yaw_rad=0.0,
        beat_hz=0.0,
        tail_amplitude_um=0.0,
        contrast=cell.contrast if contrast is None else contrast,
    )


def _static_cluster(
    target: CellTrack,
    *,
    config: SyntheticConfig,
    drift: np.ndarray,
    simulate: Simulate,
    rng: np.random.Generator,
) -> tuple[list[CellSpec], list[CellTrack], list[Debris]]:
    """3-5 immotile cells and 2 blobs of debris clumped within about 1.5 head lengths of a
    point one head length beside where the target is half way through the clip."""
    px_per_um = config.px_per_um
    head_px = config.head_length_um * px_per_um
    middle = config.n_frames // 2
    path = target.centres
    heading = path[min(middle + 1, len(path) - 1)] - path[max(middle - 1, 0)]
    norm = float(np.linalg.norm(heading))
    side = np.array([-heading[1], heading[0]]) / norm if norm > 1e-6 else np.array([1.0, 0.0])
    centre = path[middle] + side * head_px * rng.choice([-1.0, 1.0])
    if np.linalg.norm(centre - path[0]) < 2 * head_px:  # a slow target: ahead of it instead
        centre = path[0] + 2.5 * head_px * side
    cells, tracks = [], []
    for _ in range(int(rng.integers(3, 6))):
        (_,), (h,) = latents_sample(n=1, config=config, rng=rng)
        cell = _still(cell_sample(motility=0.05, morphology=h, config=config, rng=rng))
        angle = rng.uniform(0, 2 * np.pi)
        start = centre + rng.uniform(0.3, 1.5) * head_px * np.array(
            [math.cos(angle), math.sin(angle)]
        )
        track, _ = simulate(cell, start, rng.uniform(0, 2 * np.pi), _UNBOUNDED)
        cells.append(cell)
        tracks.append(track)
    debris = []
    for _ in range(2):
        blob = debris_sample(config=config, drift=drift, avoid=[], rng=rng)
        offset = centre + rng.normal(0, 0.8 * head_px, size=2) - blob.centres[0]
        debris.append(replace(blob, centres=blob.centres[0] + offset + drift - drift[0]))
    return cells, tracks, debris


def _bright_neighbour(
    cell: CellSpec,
    target: CellTrack,
    *,
    px_per_um: float,
    simulate: Simulate,
    rng: np.random.Generator,
) -> tuple[CellSpec, CellTrack]:
    """A still copy of the target's head with 1.3-1.5 x its contrast, 1.6-2.4 head lengths
    beside or behind it at frame 0 (inside the tracker's search window)."""
    head_length = float(np.ptp(cell.head_outline_um[:, 0]))  # µm
    angle = float(target.angles[0]) + rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.85) * np.pi
    distance = rng.uniform(1.6, 2.4) * head_length * px_per_um
    start = target.centres[0] + distance * np.array([math.cos(angle), math.sin(angle)])
    neighbour = _still(cell, contrast=cell.contrast * float(rng.uniform(1.3, 1.5)))
    track, _ = simulate(neighbour, start, float(target.angles[0]), _UNBOUNDED)
    return neighbour, track


def scene_sample(
    *, targets: Sequence[CellSpec], config: SyntheticConfig, rng: np.random.Generator
) -> Scene:
    """Place the targets, distractor cells and debris in a video and simulate their motion.

    At frame 0 no other cell comes within ``min_separation_um`` of a target's head (and no
    target's body within that of another head); targets stay ``target_margin_um`` inside the
    frame for every frame, distractors may swim partly out. Raises ValueError when the frame
    is too small to place the targets apart.
    """
    px_per_um = config.px_per_um
    width, height, n_frames = config.width, config.height, config.n_frames
    separation = config.min_separation_um * px_per_um
    margin = config.target_margin_um * px_per_um
    inner = Bounds(margin, width - 1 - margin, margin, height - 1 - margin)
    outer_reach = 10.0 * px_per_um  # distractors may leave the frame by this much
    outer = Bounds(-outer_reach, width - 1 + outer_reach, -outer_reach, height - 1 + outer_reach)

    drift_speed = rng.uniform(0, config.drift_um_s) * px_per_um / config.fps
    drift_angle = rng.uniform(0, 2 * np.pi)
    drift = (
        np.arange(n_frames)[:, None]
        * drift_speed
        * np.array([math.cos(drift_angle), math.sin(drift_angle)])
    )

    cells: list[CellSpec] = []
    tracks: list[CellTrack] = []
    frame0: list[tuple[np.ndarray, np.ndarray]] = []  # targets' (head centre, drawn points)

    def simulate(
        cell: CellSpec, start: np.ndarray, heading: float, bounds: Bounds
    ) -> tuple[CellTrack, np.ndarray]:
        track = cell_track_sample(
            cell,
            start=(float(start[0]), float(start[1])),
            heading=heading,
            n_frames=n_frames,
            fps=config.fps,
            px_per_um=px_per_um,
            bounds=bounds,
            drift=drift,
            rng=rng,
        )
        shapes = cell_shapes(
            cell,
            centre=track.centres[0],
            angle=float(track.angles[0]),
            phase=float(track.phases[0]),
            px_per_um=px_per_um,
        )
        return track, np.concatenate([s.points for s in shapes])

    def clear_of_targets(centre: np.ndarray, points: np.ndarray) -> bool:
        return all(_frame0_clear(c, p, centre, points, separation) for c, p in frame0)

    for number, target in enumerate(targets):
        if number == 0 and config.failure_mode in ("leaves_frame", "leaves_frame_late"):
            late = config.failure_mode == "leaves_frame_late"
            track, points = _leaving_track(
                target, config=config, simulate=simulate, rng=rng, late=late
            )
            cells.append(target)
            tracks.append(track)
            frame0.append((track.centres[0], points))
            continue
        for _ in range(200):
            start = rng.uniform([inner.x_min, inner.y_min], [inner.x_max, inner.y_max])
            # Head towards a random point of the field, so a fast cell crosses it.
            aim = rng.uniform([0, 0], [width, height])
            heading = math.atan2(aim[1] - start[1], aim[0] - start[0])
            track, points = simulate(target, start, heading, inner)
            if clear_of_targets(track.centres[0], points):
                break
        else:
            raise ValueError(
                f"cannot place {len(targets)} targets apart in a {width} x {height} frame: "
                "use a larger frame or fewer targets_per_video"
            )
        cells.append(target)
        tracks.append(track)
        frame0.append((track.centres[0], points))

    for index in range(config.n_distractors):
        (m,), (h,) = latents_sample(n=1, config=config, rng=rng)
        cell = cell_sample(motility=m, morphology=h, config=config, rng=rng)
        near = index == 0 and rng.random() < config.near_distractor_prob
        for _ in range(30):
            if near:  # start close to the first target and swim at where it will be
                angle = rng.uniform(0, 2 * np.pi)
                start = frame0[0][0] + rng.uniform(1.3, 2.5) * separation * np.array(
                    [math.cos(angle), math.sin(angle)]
                )
                aim = tracks[0].centres[n_frames // 2]
                heading = math.atan2(aim[1] - start[1], aim[0] - start[0]) + rng.normal(0, 0.3)
            else:
                start = rng.uniform([0, 0], [width - 1, height - 1])
                heading = rng.uniform(0, 2 * np.pi)
            track, points = simulate(cell, start, heading, outer)
            if clear_of_targets(track.centres[0], points):
                cells.append(cell)
                tracks.append(track)
                break  # a distractor with no room is left out

    avoid = [centre for centre, _ in frame0]
    debris = [
        debris_sample(config=config, drift=drift, avoid=avoid, rng=rng)
        for _ in range(config.n_debris)
    ]
    if config.failure_mode == "static_cluster":
        extra_cells, extra_tracks, extra_debris = _static_cluster(
            tracks[0], config=config, drift=drift, simulate=simulate, rng=rng
        )
        cells += extra_cells
        tracks += extra_tracks
        debris += extra_debris
    elif config.failure_mode == "bright_neighbour":
        neighbour, track = _bright_neighbour(
            cells[0], tracks[0], px_per_um=px_per_um, simulate=simulate, rng=rng
        )
        cells.append(neighbour)
        tracks.append(track)

    return Scene(
        width=width,
        height=height,
        n_frames=n_frames,
        px_per_um=px_per_um,
        cells=tuple(cells),
        tracks=tuple(tracks),
        n_targets=len(targets),
        debris=tuple(debris),
    )


def background_sample(*, config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """The empty field, (H, W) int16: illumination gradient, vignetting and faint mottle."""
    height, width = config.height, config.width
    x = (np.arange(width, dtype=np.float32) / max(width - 1, 1) - 0.5)[None, :]
    y = (np.arange(height, dtype=np.float32) / max(height - 1, 1) - 0.5)[:, None]
    angle = rng.uniform(0, 2 * np.pi)
    gradient = config.illumination_gradient * (math.cos(angle) * x + math.sin(angle) * y)
    vignette = 0.12 * (x**2 + y**2)
    mottle_grid = rng.normal(0, 2.0, size=(6, 8)).astype(np.float32)
    mottle = cv2.resize(mottle_grid, (width, height), interpolation=cv2.INTER_CUBIC)
    field = config.background_level * (1 + gradient - vignette) + mottle
    return np.round(field).astype(np.int16)


@dataclass(frozen=True, eq=False)
class NoiseBank:
    """A few sensor-noise fields, larger than the frame; each frame cuts one at a random
    offset and flip, which is much cheaper than drawing fresh noise per frame."""

    fields: np.ndarray  # (n, H + pad, W + pad) int16
    height: int
    width: int

    @classmethod
    def sample(
        cls,
        *,
        height: int,
        width: int,
        sd: float,
        rng: np.random.Generator,
        n: int = 3,
        pad: int = 24,
    ) -> NoiseBank:
        noise = rng.standard_normal((n, height + pad, width + pad), dtype=np.float32) * sd
        return cls(np.round(noise).astype(np.int16), height, width)

    def frame(self, rng: np.random.Generator) -> np.ndarray:
        """One frame's noise, (H, W) int16: a view, not a copy."""
        n, padded_h, padded_w = self.fields.shape
        dy = int(rng.integers(0, padded_h - self.height + 1))
        dx = int(rng.integers(0, padded_w - self.width + 1))
        view = self.fields[int(rng.integers(n)), dy : dy + self.height, dx : dx + self.width]
        flip = int(rng.integers(4))
        return view[:: 1 - 2 * (flip & 1), :: 1 - 2 * (flip >> 1)]


def scene_render(
    scene: Scene,
    *,
    background: np.ndarray,
    noise: NoiseBank | None,
    blur: float,
    rng: np.random.Generator,
) -> Iterator[np.ndarray]:
    """The video's frames, (H, W) uint8 each, one at a time."""
    canvas = np.empty((scene.height, scene.width), np.int16)
    for frame in range(scene.n_frames):
        if noise is None:
            canvas[:] = background
        else:
            np.add(background, noise.frame(rng), out=canvas)
        for shapes in scene.frame_shapes(frame):
            shapes_stamp(canvas, shapes, blur=blur)
        np.maximum(canvas, 0, out=canvas)
        yield cv2.convertScaleAbs(canvas)  # saturating cast to uint8, much faster than numpy's


# --------------------------------------------------------------------------------------------
# Labels: latents, the panel and its votes


@dataclass(frozen=True, eq=False)
class SyntheticLabels:
    """Everything about the clips except the pixels."""

    cells: tuple[CellSpec, ...]  # one per clip, in clip order
    truth_clips: pd.DataFrame  # clip_id, quality, motility, ..., p_A..p_E
    clip_videos: np.ndarray  # (n_clips,) video index of each clip
    clip_patients: list[str]  # patient_id of each clip
    ratings: pd.DataFrame  # clip_id, rater_id, grade
    panel: Panel


def clip_ids(n_clips: int) -> list[str]:
    return [f"c{i + 1:04d}" for i in range(n_clips)]


def sample_labels(*, config: SyntheticConfig) -> SyntheticLabels:
    """Latents, cells, panel and votes of a dataset, without rendering anything (fast: the
    rater-model and retirement benchmarks need no pixels)."""
    panel = panel_sample(n_experts=config.n_experts, rng=_rng(config.seed, _STREAM_PANEL))
    cells_rng = _rng(config.seed, _STREAM_CELLS)
    motility, morphology = latents_sample(n=config.n_clips, config=config, rng=cells_rng)
    cells = tuple(
        cell_sample(motility=m, morphology=h, config=config, rng=cells_rng)
        for m, h in zip(motility, morphology, strict=True)
    )
    quality = config.quality(motility, morphology)
    expected = panel_expected_distribution(quality, panel)

    ids = clip_ids(config.n_clips)
    truth = pd.DataFrame(
        {
            "clip_id": ids,
            "quality": quality.round(4),
            "motility": motility.round(4),
            "morphology": morphology.round(4),
            "motion_type": [c.motion_type for c in cells],
            "head_shape": [c.head_shape for c in cells],
            "n_vacuoles": [c.n_vacuoles for c in cells],
        }
    )
    for column, p in zip(PROB_COLUMNS, expected.T, strict=True):
        truth[column] = p.round(6)

    votes_rng = _rng(config.seed, _STREAM_VOTES)
    votes = panel_votes(quality, panel, rng=votes_rng)  # (n_clips, n_experts) grade index
    rows: list[tuple[str, str, str]] = []
    for clip_index, clip_id in enumerate(ids):
        experts = np.arange(config.n_experts)
        if config.votes_per_clip is not None:
            experts = np.sort(
                votes_rng.choice(config.n_experts, config.votes_per_clip, replace=False)
            )
        rows.extend((clip_id, panel.rater_ids[j], GRADES[votes[clip_index, j]]) for j in experts)
    ratings = pd.DataFrame(rows, columns=["clip_id", "rater_id", "grade"])

    videos = np.arange(config.n_clips) // config.targets_per_video
    patients = [f"P{v // config.videos_per_patient + 1:04d}" for v in videos]
    return SyntheticLabels(cells, truth, videos, patients, ratings, panel)


# --------------------------------------------------------------------------------------------
# Files


@contextmanager
def _written_whole(path: Path) -> Iterator[Path]:
    """A temporary name to write ``path`` under, renamed to ``path`` only once the block
    succeeds: a reader never sees half a file. The name keeps the suffix, which FFmpeg picks
    the container by."""
    partial = path.with_name(f".partial-{path.name}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def video_write(
    path: Path, frames: Iterable[np.ndarray], *, fps: float, video_format: str = "mp4"
) -> None:
    """Write grey frames (H, W) uint8 to ``path``: mp4v in .mp4 or MJPG in .avi."""
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape
    fourcc = cv2.VideoWriter.fourcc(*VIDEO_FORMATS[video_format])
    with _written_whole(path) as partial:
        writer = cv2.VideoWriter(str(partial), fourcc, float(fps), (width, height), isColor=False)
        if not writer.isOpened():
            raise RuntimeError(
                f"OpenCV cannot write {video_format} videos here: try the other video_format"
            )
        try:
            writer.write(first)
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()


def _csv_write(table: pd.DataFrame, path: Path) -> None:
    with _written_whole(path) as partial:
        table.to_csv(partial, index=False)


@dataclass(frozen=True, eq=False)
class RenderedTarget:
    """One target rendered in memory: frames (F, H, W) uint8, true head centres (F, 2) px."""

    frames: np.ndarray
    track: np.ndarray
    cell: CellSpec
    scene: Scene


def render_target_frames(
    *, motility: float, morphology: float, config: SyntheticConfig | None = None, seed: int = 0
) -> RenderedTarget:
    """Render one video around a target of given latents, in memory (no files): for tests and
    for looking at what a motility or morphology value produces."""
    config = config or SyntheticConfig(width=320, height=240, n_frames=16)
    rng = _rng(seed, _STREAM_SCENE)
    cell = cell_sample(motility=motility, morphology=morphology, config=config, rng=rng)
    scene = scene_sample(targets=[cell], config=config, rng=rng)
    noise = (
        NoiseBank.sample(height=config.height, width=config.width, sd=config.noise_sd, rng=rng)
        if config.noise_sd > 0
        else None
    )
    background = background_sample(config=config, rng=rng)
    frames = np.stack(
        list(scene_render(scene, background=background, noise=noise, blur=config.blur, rng=rng))
    )
    return RenderedTarget(frames, scene.tracks[0].centres.copy(), cell, scene)


def generate_dataset(out_dir: Path, config: SyntheticConfig, *, progress: bool = False) -> Path:
    """Write a synthetic dataset (exchange format + truth files, see the module docstring) into
    ``out_dir`` and return it. Same config, same files: CSVs byte for byte, videos frame for
    frame. clips.csv and ratings.csv are written last, so their presence means complete."""
    out_dir = Path(out_dir)
    videos_dir = out_dir / exchange.VIDEOS_DIR
    videos_dir.mkdir(parents=True, exist_ok=True)
    labels = sample_labels(config=config)
    ids = clip_ids(config.n_clips)
    noise = None
    if config.noise_sd > 0:
        noise = NoiseBank.sample(
            height=config.height,
            width=config.width,
            sd=config.noise_sd,
            rng=_rng(config.seed, _STREAM_NOISE),
        )

    n_videos = int(labels.clip_videos.max()) + 1
    video_names: list[str] = []
    track_rows: list[pd.DataFrame] = []
    starts = np.zeros((config.n_clips, 2))
    videos: Iterable[int] = range(n_videos)
    if progress:
        from tqdm import tqdm

        videos = tqdm(videos, desc="synthetic videos", unit="video")
    for video in videos:
        members = np.flatnonzero(labels.clip_videos == video)
        scene, rng = _video_scene(config, labels, video)
        background = background_sample(config=config, rng=rng)
        name = f"v{video + 1:04d}.{config.video_format}"
        frames = scene_render(scene, background=background, noise=noise, blur=config.blur, rng=rng)
        video_write(videos_dir / name, frames, fps=config.fps, video_format=config.video_format)
        for clip_index, track in zip(members, scene.tracks[: scene.n_targets], strict=True):
            centres = track.centres.round(3)
            starts[clip_index] = centres[0]
            track_rows.append(
                pd.DataFrame(
                    {
                        "clip_id": ids[clip_index],
                        "frame": np.arange(config.n_frames),
                        "x": centres[:, 0],
                        "y": centres[:, 1],
                    }
                )
            )
        video_names.append(f"{exchange.VIDEOS_DIR}/{name}")

    experts = pd.DataFrame(
        {
            "rater_id": labels.panel.rater_ids,
            "severity": labels.panel.severity.round(6),
            "noise": labels.panel.noise.round(6),
        }
    )
    _csv_write(labels.truth_clips, out_dir / "truth_clips.csv")
    _csv_write(pd.concat(track_rows, ignore_index=True), out_dir / "truth_tracks.csv")
    _csv_write(experts, out_dir / "truth_experts.csv")
    panel_info = {
        "thresholds": labels.panel.thresholds.tolist(),
        "seed": config.seed,
        "config": _config_record(config),
    }
    with _written_whole(out_dir / "truth_panel.json") as partial:
        partial.write_text(json.dumps(panel_info, indent=2) + "\n")
    clips = pd.DataFrame(
        {
            "clip_id": ids,
            "patient_id": labels.clip_patients,
            "video": [video_names[v] for v in labels.clip_videos],
            "fps": config.fps,
            "x": starts[:, 0],
            "y": starts[:, 1],
            "pixel_size_um": config.pixel_size_um,
        }
    )
    # The exchange format's columns, in its order (a KeyError names a column not written).
    _csv_write(labels.ratings[list(exchange.RATING_NAMES)], out_dir / exchange.RATINGS_FILE)
    clip_columns = exchange.names(exchange.CLIP_REQUIRED + exchange.CLIP_OPTIONAL)
    _csv_write(clips[list(clip_columns)], out_dir / exchange.CLIPS_FILE)
    return out_dir


def _config_record(config: SyntheticConfig) -> dict[str, object]:
    """The config as truth_panel.json keeps it; knobs added later are left out while at their
    default, so the files of a default dataset stay what they always were."""
    record = asdict(config)
    if config.failure_mode == "none":
        del record["failure_mode"]
    defaults = SyntheticConfig()
    for name in _VACUOLE_KNOBS:
        if getattr(config, name) == getattr(defaults, name):
            del record[name]
    return record


# The vacuole look's knobs (added after the first datasets were written).
_VACUOLE_KNOBS = (
    "vacuole_radius_um",
    "vacuole_value",
    "vacuole_rate",
    "vacuole_max",
    "vacuole_softness_um",
)


def _video_scene(
    config: SyntheticConfig, labels: SyntheticLabels, video: int
) -> tuple[Scene, np.random.Generator]:
    """The scene of video ``video`` of a dataset, and its random stream (the background and
    the noise draw from it next)."""
    rng = _rng(config.seed, _STREAM_SCENE, video)
    members = np.flatnonzero(labels.clip_videos == video)
    scene = scene_sample(targets=[labels.cells[i] for i in members], config=config, rng=rng)
    return scene, rng


def scene_heads_frame0(scene: Scene) -> np.ndarray:
    """(N, 2) head centres (x, y) px at frame 0 of every cell of ``scene`` whose head lies
    inside the frame: targets first (in clip order), then the others (distractors, staged
    cells). Debris is not a head."""
    centres = np.array([track.centres[0] for track in scene.tracks]).reshape(-1, 2)
    inside = (
        (centres[:, 0] >= 0)
        & (centres[:, 0] <= scene.width - 1)
        & (centres[:, 1] >= 0)
        & (centres[:, 1] <= scene.height - 1)
    )
    return centres[inside]


def heads_frame0(config: SyntheticConfig) -> pd.DataFrame:
    """The truth of every sperm head in frame 0 of every video ``generate_dataset(config)``
    writes (recomputed, nothing rendered): video (its path in clips.csv), x, y (px), target
    (True for the tagged targets). For judging a head detector."""
    labels = sample_labels(config=config)
    rows = []
    for video in range(int(labels.clip_videos.max()) + 1):
        scene, _ = _video_scene(config, labels, video)
        name = f"{exchange.VIDEOS_DIR}/v{video + 1:04d}.{config.video_format}"
        for index, (x, y) in enumerate(scene_heads_frame0(scene)):
            rows.append((name, round(float(x), 3), round(float(y), 3), index < scene.n_targets))
    return pd.DataFrame(rows, columns=["video", "x", "y", "target"])


def load_truth(out_dir: Path) -> dict[str, pd.DataFrame]:
    """The tables of a generated dataset, by file stem: clips, ratings, truth_clips,
    truth_tracks, truth_experts."""
    out_dir = Path(out_dir)
    ids = {"clip_id": str, "patient_id": str, "rater_id": str, "video": str, "grade": str}
    tables = {}
    for stem in ("clips", "ratings", "truth_clips", "truth_tracks", "truth_experts"):
        path = out_dir / f"{stem}.csv"
        header = pd.read_csv(path, nrows=0).columns
        tables[stem] = pd.read_csv(path, dtype={k: v for k, v in ids.items() if k in header})
    return tables


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.synthetic",
        description="Write a synthetic MERSV-like dataset (exchange format + truth files).",
    )
    defaults = SyntheticConfig()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--clips", type=int, default=defaults.n_clips)
    parser.add_argument("--experts", type=int, default=defaults.n_experts)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--frames", type=int, default=defaults.n_frames)
    parser.add_argument("--fps", type=float, default=defaults.fps)
    parser.add_argument("--targets-per-video", type=int, default=defaults.targets_per_video)
    parser.add_argument("--videos-per-patient", type=int, default=defaults.videos_per_patient)
    parser.add_argument("--votes-per-clip", type=int, default=None)
    parser.add_argument("--format", choices=sorted(VIDEO_FORMATS), default=defaults.video_format)
    parser.add_argument("--pixel-size", type=float, default=defaults.pixel_size_um, help="µm/px")
    parser.add_argument("--failure-mode", choices=FAILURE_MODES, default=defaults.failure_mode)
    args = parser.parse_args(argv)
    try:
        config = SyntheticConfig(
            n_clips=args.clips,
            n_experts=args.experts,
            seed=args.seed,
            width=args.width,
            height=args.height,
            n_frames=args.frames,
            fps=args.fps,
            targets_per_video=args.targets_per_video,
            videos_per_patient=args.videos_per_patient,
            votes_per_clip=args.votes_per_clip,
            video_format=args.format,
            pixel_size_um=args.pixel_size,
            failure_mode=args.failure_mode,
        )
    except ValueError as error:
        parser.error(str(error))
    out = generate_dataset(args.out_dir, config, progress=True)
    print(f"wrote {config.n_clips} clips to {out}")


if __name__ == "__main__":
    main()
