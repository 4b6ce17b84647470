"""Tests of bricks."""
