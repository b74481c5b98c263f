"""WHO (6th edition) CASA kinematics of one tracked sperm head.

Plain numpy, no Django. Input is the head centre per frame in pixels, ``track_px`` of shape
(T, 2) as (x, y); ``pixel_size_um`` converts pixels to micrometres and ``fps`` frames to
seconds. The observation time is ``(T - 1) / fps``: T positions span T - 1 frame intervals.

Definitions (velocities in µm/s, ALH in µm, BCF in Hz):

- **VCL** (curvilinear velocity): the summed length of the straight segments joining
  consecutive positions, divided by the time.
- **VSL** (straight-line velocity): the distance between the first and the last position,
  divided by the time.
- **Average path**: a centred moving average of the positions. With ``h = (w - 1) // 2`` for
  the odd ``smoothing_window`` w, the average-path point of frame i is the mean of the
  positions ``i - k .. i + k`` where ``k = min(h, i, T - 1 - i)``: the window shrinks
  symmetrically at the ends, so the average path starts and ends at the real first and last
  positions and a straight track at constant speed is its own average path.
- **VAP** (average-path velocity): the length of the average path divided by the time.
- **LIN** = VSL / VCL, **STR** = VSL / VAP, **WOB** = VAP / VCL; each is 0 when its
  denominator is 0 (a head that does not move).
- **ALH** (amplitude of lateral head displacement): the peak-to-peak amplitude, i.e. 2 x the
  largest distance between a position and the average-path point of the same frame.
- **BCF** (beat-cross frequency): the number of times the curvilinear path crosses the average
  path, per second. For each frame the side of the position is the sign of the cross product
  ``d_i x (p_i - a_i)``, where ``a_i`` is the average-path point and ``d_i`` the average
  path's local direction (central difference ``a_{i+1} - a_{i-1}``, one-sided at the ends). A
  crossing is a change of side between consecutive frames that have a side; frames whose
  position lies on the average path (perpendicular offset below ``ON_PATH_TOLERANCE_PX``, which
  absorbs floating-point noise) have no side and are skipped, so touching the path without
  going across is not a crossing.
- **speed** = VCL. It is the paper's scalar ``v`` that the model head takes next to the video
  features: the distance the head actually covers per second. (The whole vector the model
  takes is its *kinematics*; ``speed`` is one member.)

``KINEMATICS_KEYS`` is the one list of these measures, in their order: the keys of
``Kinematics.as_dict``, the kinematics columns of the export's clips.csv, the clip's database
columns and API fields, and the names the model's kinematics input is chosen from. Plain
constants and numpy only, no Django: ``modeling.ml`` imports it.

A track of fewer than two positions (or ``fps`` time zero) has no motion: everything is 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Offsets from the average path smaller than this (in pixels) count as "on the path" for BCF.
ON_PATH_TOLERANCE_PX = 1e-6


@dataclass(frozen=True)
class Kinematics:
    """WHO CASA measures of one track; see the module docstring for the definitions."""

    vcl: float  # µm/s
    vsl: float  # µm/s
    vap: float  # µm/s
    lin: float  # VSL / VCL
    straightness: float  # VSL / VAP (``str`` in ``as_dict``)
    wob: float  # VAP / VCL
    alh: float  # µm
    bcf: float  # Hz
    speed: float  # µm/s, = VCL

    def as_dict(self) -> dict[str, float]:
        """The measures keyed by their short WHO names (``str``, not ``straightness``)."""
        values = asdict(self)
        return {key: values[kinematics_attribute(key)] for key in KINEMATICS_KEYS}


# The measures by their short WHO names, in their canonical order, each with a typical
# magnitude in its unit (a progressive human sperm has VCL ~ 100 µm/s), e.g. to divide by.
KINEMATICS_TYPICAL: dict[str, float] = {
    "vcl": 100.0,  # µm/s
    "vsl": 100.0,  # µm/s
    "vap": 100.0,  # µm/s
    "lin": 1.0,  # VSL / VCL
    "str": 1.0,  # VSL / VAP
    "wob": 1.0,  # VAP / VCL
    "alh": 10.0,  # µm
    "bcf": 10.0,  # Hz
    "speed": 100.0,  # µm/s, = VCL: the paper's v
}
KINEMATICS_KEYS: tuple[str, ...] = tuple(KINEMATICS_TYPICAL)
# ``str`` is a Python builtin: the dataclass and the Clip model call that field straightness.
_ATTRIBUTES = {"str": "straightness"}
# The unit of each measure by its length dimension: "length/s" velocities, "length" ALH, Hz,
# and "" for the ratios. Lengths are µm when the pixel size is known, else pixels.
_DIMENSIONS: dict[str, str] = {
    "vcl": "length/s",
    "vsl": "length/s",
    "vap": "length/s",
    "lin": "",
    "str": "",
    "wob": "",
    "alh": "length",
    "bcf": "Hz",
    "speed": "length/s",
}


def kinematics_units(*, pixel_size_known: bool) -> dict[str, str]:
    """The unit of each measure of ``KINEMATICS_KEYS`` as a page shows it: µm/s, µm and Hz
    when the pixel size is known, px/s and px when it is not ("" for the ratios)."""
    length = "µm" if pixel_size_known else "px"
    return {key: _DIMENSIONS[key].replace("length", length) for key in KINEMATICS_KEYS}


def kinematics_attribute(key: str) -> str:
    """The attribute (and Django field) name of the measure ``key``: ``straightness`` for
    ``str``, the key itself for the others."""
    if key not in KINEMATICS_TYPICAL:
        raise KeyError(f"{key!r} is not a kinematics measure ({', '.join(KINEMATICS_KEYS)})")
    return _ATTRIBUTES.get(key, key)


def average_path(track: np.ndarray, *, smoothing_window: int) -> np.ndarray:
    """Centred moving average of ``track`` (T, 2), shrinking symmetrically at the ends."""
    if smoothing_window < 1 or smoothing_window % 2 == 0:
        raise ValueError(f"smoothing_window must be a positive odd number, not {smoothing_window}")
    n = len(track)
    half = (smoothing_window - 1) // 2
    # Cumulative sums give every window mean in O(T).
    cumsum = np.vstack([np.zeros((1, 2)), np.cumsum(track, axis=0)])
    index = np.arange(n)
    k = np.minimum(half, np.minimum(index, n - 1 - index))
    return (cumsum[index + k + 1] - cumsum[index - k]) / (2 * k + 1)[:, None]


def _path_length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _crossings(track: np.ndarray, average: np.ndarray) -> int:
    """How many times ``track`` changes side of ``average`` (see BCF in the module docstring)."""
    direction = np.gradient(average, axis=0)  # central differences, one-sided at the ends
    offset = track - average
    cross = direction[:, 0] * offset[:, 1] - direction[:, 1] * offset[:, 0]
    norm = np.linalg.norm(direction, axis=1)
    perpendicular = np.divide(np.abs(cross), norm, out=np.zeros_like(cross), where=norm > 0)
    sides = np.sign(cross[perpendicular > ON_PATH_TOLERANCE_PX])
    return int(np.count_nonzero(sides[1:] != sides[:-1]))


def kinematics(
    track_px: np.ndarray,
    *,
    fps: float,
    pixel_size_um: float,
    smoothing_window: int = 5,
) -> Kinematics:
    """WHO CASA kinematics of ``track_px`` (T, 2) head centres in pixels, (x, y) per frame."""
    track = np.asarray(track_px, dtype=np.float64)
    if track.ndim != 2 or track.shape[1] != 2 or len(track) == 0:
        raise ValueError(f"track_px must have shape (T, 2) with T >= 1, not {track.shape}")
    if fps <= 0 or pixel_size_um <= 0:
        raise ValueError("fps and pixel_size_um must be positive")
    average = average_path(track, smoothing_window=smoothing_window)
    seconds = (len(track) - 1) / fps
    if seconds == 0:
        return Kinematics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    um_per_s = pixel_size_um / seconds
    vcl = _path_length(track) * um_per_s
    vsl = float(np.linalg.norm(track[-1] - track[0])) * um_per_s
    vap = _path_length(average) * um_per_s
    alh = 2.0 * float(np.linalg.norm(track - average, axis=1).max()) * pixel_size_um
    return Kinematics(
        vcl=vcl,
        vsl=vsl,
        vap=vap,
        lin=_ratio(vsl, vcl),
        straightness=_ratio(vsl, vap),
        wob=_ratio(vap, vcl),
        alh=alh,
        bcf=_crossings(track, average) / seconds,
        speed=vcl,
    )
