"""Realistic synthetic multi-source demo data with ground truth (see docs/demo-data.md)."""
