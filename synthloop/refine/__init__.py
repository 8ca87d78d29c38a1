"""The refinement loop: targets in, measured gaps out, sampling and prompts changed until targets hold.

`refine(source, targets)` runs it on a real table (learned synthesizer) or a prompted spec and
returns a `RefineResult` (best iteration's rows, history, stop reason). See targets.py for the
targets YAML, diagnose.py for the typed diagnoses and actions.py for the typed actions.
"""
from synthloop.refine.actions import (AddConstraint, AddFewShot, AddNegativeConstraint, AdjustQuota, FillBins, RaiseEpochs,
                                      RaiseTemperature, ReplaceTooClose, Resample, RewritePrompt, SwitchModel, TightenRange)
from synthloop.refine.diagnose import (ConstraintViolations, DetectableColumns, InstructionMissed, LowDiversity, OverRepresented,
                                       ShareMissed, TargetMissed, TooClose, UnderCovered)
from synthloop.refine.loop import RefineResult, make_engine, refine, run_loop
from synthloop.refine.targets import Targets, TargetsError, load_targets, parse_targets

__all__ = [
    "AddConstraint", "AddFewShot", "AddNegativeConstraint", "AdjustQuota", "ConstraintViolations", "DetectableColumns",
    "FillBins", "InstructionMissed", "LowDiversity", "OverRepresented", "RaiseEpochs", "RaiseTemperature", "RefineResult",
    "ReplaceTooClose", "Resample", "RewritePrompt", "ShareMissed", "SwitchModel", "TargetMissed", "Targets", "TargetsError",
    "TightenRange", "TooClose", "UnderCovered", "load_targets", "make_engine", "parse_targets", "refine", "run_loop",
]
