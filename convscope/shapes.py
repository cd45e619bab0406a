"""The synthetic source's shape names: one place, read by config validation (a class's
`shape`) and by the drawing stage (convscope/data/synthetic.py), which draws each."""

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "ellipse")
