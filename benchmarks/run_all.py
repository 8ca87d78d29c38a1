"""Run every benchmark in this folder, one after another (timed runs must not overlap).

`python benchmarks/run_all.py fuzz copula` runs only bench_fuzz.py and bench_copula.py (bench_fuzz is the
issue-13 fuzzing run; on its own, `python benchmarks/bench_fuzz.py --quick` runs a tenth of its cases).
`python benchmarks/run_all.py cli` runs bench_cli.py: the CLI's start-up time and a copula fit + sample
of Adult through two CLI processes vs SDV's in-process GaussianCopula (issue 13, item 7).
bench_privacy is issue 12's attack benchmark (about 35 min; `python benchmarks/bench_privacy.py --rows 3000
--quick` is a 3-minute smoke run)."""
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
only = sys.argv[1:]
failed = []
for script in sorted(here.glob("bench_*.py")):
    if only and script.stem.removeprefix("bench_") not in only:
        continue
    print(f"# {script.name}", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode != 0:
        failed.append(script.name)
if failed:
    print(f"# failed: {', '.join(failed)}", flush=True)
sys.exit(1 if failed else 0)
