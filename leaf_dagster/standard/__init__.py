"""Mapping source records onto Leaf's standard schema."""
