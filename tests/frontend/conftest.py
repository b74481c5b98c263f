"""Fixtures the chart tests share with the aggregation and practice tests (re-exported)."""

from __future__ import annotations

from tests.annotation.aggregation.conftest import add_votes, make_clips, make_experts  # noqa: F401
from tests.datasets.practice.conftest import cast_votes, make_clip, practice_clips  # noqa: F401
