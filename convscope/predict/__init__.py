"""Trained models put to work on new images: the `predict` target.

images.py  the folder listing and decoding, with prepare's policy (imageio)
apply.py   one model over a folder: top-k CSV, Grad-CAM overlays, per-image cache
page.py    the HTML page, in the report's style
"""
