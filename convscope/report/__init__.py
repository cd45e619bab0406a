"""The HTML report: collect.py reads the results tree, render.py writes the page
(templates/ and static/ hold its Jinja2 templates, CSS and JS)."""
