"""synthloop studio: a local web app over the library (spec designer, learn from a table, refine, runs).

`create_app(root)` in app.py builds it; `synthloop studio` serves it. No logic of its own: every
figure comes from the library, every asset from static/ in this package."""
