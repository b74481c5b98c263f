"""Fixtures of the page tests: the clip factories of the grading tests and the practice sets
(graded, frozen clips with a training run's predictions) of the trainee tests."""

from tests.annotation.grading.conftest import cast_votes, make_clip  # noqa: F401  (fixtures)
from tests.datasets.practice.conftest import practice_clips  # noqa: F401  (a fixture)
