"""Ingestion: an uploaded video becomes clips (decode sandbox, tracking, crops, kinematics)."""
