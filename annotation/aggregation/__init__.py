"""Aggregation of the votes: grade distributions, agreement, the rater model and retirement.

Kept empty of imports: the vote write path imports `retirement_service` alone, without the
pandas, scipy and krippendorff that the panel statistics load.
"""
