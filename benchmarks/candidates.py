"""Precision and recall of the candidate-head detector (`annotation.ingest.candidates`) in
frame 0, on the generator's truth and on the real semen field.

- Generated: frames of `simulator.synthetic.render_target_frames` with a crowded field (25
  other sperm and 15 pieces of debris beside the target, 640 x 480 px, 0.5 um/px); the truth
  is every cell's head centre at frame 0 inside the frame (`Scene.tracks`), debris is not a
  head. Several seeds.
- Real: frame 0 of ../shared/data/real-field/S_0001.mp4 (MERSV_SHARED_DATA overrides where the
  shared data lie). `REAL_FIELD_HEADS` below are the heads counted by eye: frame 0 written as
  PNG, cut into four overlapping quarters upscaled 3x with a 25 px grid and looked at one by
  one. Counted as a head: a dark blob of head size (its core at least about 6 px across; most
  are 12 x 8 px) with a bright halo, with or without a visible tail, including heads blurred
  into stripes by their motion, heads cut by the frame's edge, and each head of a touching
  pair or clump. Not counted: dots under about 5 px, rings and round cells, clusters of pale
  specks, faint out-of-focus smudges. The eye count is one person's reading of a small,
  compressed frame: some of the round dark blobs may be debris rather than heads.

A detection matches a true head within half a head length (one match per head, nearest first).
The detector's constants (`MIN_SCORE`, `AREA_RANGE`, `MAX_ELONGATION`) were chosen before these
figures were computed; the real field's head length (12 px, a pixel size of 0.375 um for a
4.5 um head) was measured by eye on the same frame.

Run: .venv/bin/python -m benchmarks.candidates
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotation.ingest.candidates import Candidate, detect_heads, head_length_px_for
from annotation.ingest.video_io import read_frames_gray
from simulator.synthetic import SyntheticConfig, render_target_frames

SEEDS = (0, 1, 2, 3, 4)
REAL_FIELD_HEAD_PX = 12.0
# (x, y) px of frame 0 of S_0001.mp4, counted by eye (see the module docstring): 47 heads.
REAL_FIELD_HEADS = [
    (165, 3), (313, 5), (12, 52), (115, 153), (200, 151), (23, 170), (208, 225), (140, 254),
    (2, 235), (243, 239), (253, 244), (375, 30), (602, 42), (373, 118), (428, 132), (455, 143),
    (647, 120), (379, 193), (593, 193), (682, 258), (427, 3), (37, 292), (165, 302), (131, 328),
    (17, 367), (42, 378), (126, 370), (136, 422), (29, 492), (157, 492), (138, 522), (241, 273),
    (338, 318), (338, 368), (315, 425), (248, 464), (237, 467), (3, 292), (568, 312),
    (560, 320), (585, 307), (472, 455), (595, 443), (562, 480), (683, 518), (359, 343),
    (581, 388),
]  # fmt: skip


@dataclass(frozen=True)
class Score:
    found: int
    truth: int
    matched: int

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    def __add__(self, other: Score) -> Score:
        return Score(
            self.found + other.found, self.truth + other.truth, self.matched + other.matched
        )


def match(found: list[Candidate], truth: np.ndarray, radius: float) -> Score:
    """One-to-one matches within ``radius``, closest pairs first."""
    if not found or not len(truth):
        return Score(len(found), len(truth), 0)
    points = np.array([(c.x, c.y) for c in found])
    distances = np.linalg.norm(points[:, None, :] - truth[None, :, :], axis=2)
    used_found, used_truth, matched = set(), set(), 0
    for flat in np.argsort(distances, axis=None):
        i, j = np.unravel_index(flat, distances.shape)
        if distances[i, j] > radius:
            break
        if i in used_found or j in used_truth:
            continue
        used_found.add(i)
        used_truth.add(j)
        matched += 1
    return Score(len(found), len(truth), matched)


def generated_score() -> Score:
    config = SyntheticConfig(width=640, height=480, n_frames=2, n_distractors=25, n_debris=15)
    head_px = head_length_px_for(config.pixel_size_um)
    total = Score(0, 0, 0)
    for seed in SEEDS:
        rendered = render_target_frames(motility=0.6, morphology=0.6, config=config, seed=seed)
        heads = np.array([track.centres[0] for track in rendered.scene.tracks])
        inside = (heads[:, 0] >= 0) & (heads[:, 0] < config.width)
        inside &= (heads[:, 1] >= 0) & (heads[:, 1] < config.height)
        found = detect_heads(rendered.frames[0], head_length_px=head_px)
        total = total + match(found, heads[inside], radius=head_px / 2)
    return total


def real_field_path() -> Path:
    shared = Path(
        os.environ.get("MERSV_SHARED_DATA")
        or Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    path = shared / "real-field" / "S_0001.mp4"
    if not path.is_file():
        raise SystemExit(f"the real field video is missing at {path} (set MERSV_SHARED_DATA)")
    return path


def real_field_score() -> Score:
    frame = read_frames_gray(real_field_path(), 1)[0]
    found = detect_heads(frame, head_length_px=REAL_FIELD_HEAD_PX)
    return match(found, np.array(REAL_FIELD_HEADS, dtype=float), radius=REAL_FIELD_HEAD_PX / 2)


def main() -> None:
    for name, score in (
        (f"generated ({len(SEEDS)} crowded 640x480 frames)", generated_score()),
        ("real field S_0001.mp4 frame 0 (eye count)", real_field_score()),
    ):
        print(
            f"{name}: {score.truth} heads, {score.found} candidates, {score.matched} matched; "
            f"precision {score.precision:.2f}, recall {score.recall:.2f}"
        )


if __name__ == "__main__":
    main()
