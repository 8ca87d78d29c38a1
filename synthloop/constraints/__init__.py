"""Row rules (range, inequality, fixed combinations, regex, uniqueness, safe expressions), their
enforcement (repair, then report what is still invalid) and the constraint-adherence metric."""
from synthloop.constraints.expression import Expression
from synthloop.constraints.metrics import apply_repairs, constraint_adherence, valid_mask
from synthloop.constraints.rules import (
    Constraint, ExpressionConstraint, FixedCombinations, Inequality, Range, Regex, Unique, check_columns,
    constraint_from_dict, parse_constraints,
)

__all__ = [
    "Constraint", "Expression", "ExpressionConstraint", "FixedCombinations", "Inequality", "Range", "Regex",
    "Unique", "apply_repairs", "check_columns", "constraint_adherence", "constraint_from_dict",
    "parse_constraints", "valid_mask",
]
