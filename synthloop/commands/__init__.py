"""The command line, one module per verb. Each module exposes `register(app)` and calls the library;
heavy imports (pandas, NumPy, torch) happen inside the command body so `synthloop --help` stays fast."""
