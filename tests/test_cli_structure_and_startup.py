"""The command line is thin and starts fast: one module per verb, no verb imports another, and
`import synthloop.cli` / `synthloop --help` load no pandas, NumPy, scipy, scikit-learn or torch."""
import ast
import subprocess
import sys
from pathlib import Path

import synthloop

HEAVY = ("pandas", "numpy", "scipy", "sklearn", "torch", "rich.progress", "pyarrow")
COMMANDS = Path(synthloop.__file__).parent / "commands"


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint('\\nMODULES:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES:")][-1]
    return [m for m in line.removeprefix("MODULES:").split(",") if m]


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded_after("import synthloop.cli") == []


def test_help_loads_no_heavy_library():
    code = ("import sys\nsys.argv = ['synthloop', '--help']\nfrom synthloop.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.argv = ['synthloop', 'fit', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass")
    assert _loaded_after(code) == []


def test_package_exports_stay_reachable_while_lazy():
    assert _loaded_after("import synthloop, synthloop.errors") == []
    code = ("from synthloop import GaussianCopulaSynthesizer, TableSchema, ColumnKind, infer_schema, load_synthesizer, "
            "BaseSynthesizer\nimport synthloop\nassert callable(synthloop.evaluate)\n"
            "assert synthloop.GaussianCopulaSynthesizer is GaussianCopulaSynthesizer\n"
            "from synthloop.cli import make_synthesizer, resolve_model, evaluate_tables\n"
            "assert resolve_model('copula') == 'copula'")
    assert "pandas" in _loaded_after(code)


def test_every_verb_is_its_own_module_and_imports_no_other_verb():
    verbs = sorted(p.stem for p in COMMANDS.glob("*.py") if not p.stem.startswith("_"))
    assert {"fit", "sample", "evaluate", "schema", "demo", "generate", "prompt", "report", "refine"} <= set(verbs)
    for verb in verbs:
        tree = ast.parse((COMMANDS / f"{verb}.py").read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [f"{n.module}.{a.name}" if n.module == "synthloop.commands" else n.module
                  for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module for a in n.names]
        for name in names:
            assert not name.startswith("synthloop.cli"), f"{verb}.py imports {name}"
            if name.startswith("synthloop.commands."):
                assert name.split(".")[2] == "_common", f"{verb}.py imports another verb: {name}"
        assert any(isinstance(n, ast.FunctionDef) and n.name == "register" for n in tree.body), verb
