"""Unit tests: no root, no network."""
