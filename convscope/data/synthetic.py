"""Procedurally drawn shape images for the offline demo and tests."""

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "ellipse")
