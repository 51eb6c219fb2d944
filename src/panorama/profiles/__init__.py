"""Profiles: the golden record per person, its identifiers and source records."""
