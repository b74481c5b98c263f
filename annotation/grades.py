"""The five grades and the numbers every part of the platform derives from them.

Plain Python, no Django: `modeling.ml` and exported-data tools may import it.
"""

from __future__ import annotations

GRADES: tuple[str, ...] = ("A", "B", "C", "D", "E")
N_GRADES = len(GRADES)
# Grade scores for statistics, as in the paper: A=1 (good) ... E=5 (bad).
GRADE_SCORE: dict[str, int] = {g: i + 1 for i, g in enumerate(GRADES)}
GRADE_INDEX: dict[str, int] = {g: i for i, g in enumerate(GRADES)}

GRADE_DESCRIPTIONS: dict[str, str] = {
    "A": "Good: fast, straight progressive motion and a normal, smooth oval head.",
    "B": "Better: progressive motion and a near-normal head with minor irregularities.",
    "C": "Middle: slow or weakly progressive, or a head with a clear defect.",
    "D": "Worse: mostly non-progressive motion or a misshapen / vacuolated head.",
    "E": "Bad: immotile or twitching in place, or a grossly abnormal head.",
}

# Columns of every distribution or prediction table (ARCHITECTURE.md, "Contracts").
PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{g}" for g in GRADES)

# The Clip columns that count its votes per grade (votes_a .. votes_e), in grade order.
VOTE_FIELDS: tuple[str, ...] = tuple(f"votes_{g.lower()}" for g in GRADES)
