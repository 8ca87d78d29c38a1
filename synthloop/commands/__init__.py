"""The command line, one module per verb. Each module exposes `register(app)` and calls the library.

Rules that keep `synthloop --help` fast and the verbs independent: a verb module imports only
typer, the standard library and `synthloop.commands._common` at module level (pandas, NumPy,
scipy, scikit-learn and torch load inside the command body), and no verb imports another verb.
`synthloop.cli` builds the app and registers the verbs in help order.
"""
