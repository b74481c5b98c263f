"""Tests of the front end's pages in a real browser."""
