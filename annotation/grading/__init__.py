"""Expert grading: the checks, the queue, answers, hidden repeats, the field guide and the API.

Kept empty of imports: the vote write path (`annotation.grading.answers`) loads only what it needs.
"""
