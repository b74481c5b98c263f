"""Tests of the annotation app, one folder per subpackage."""
