"""Judging synthetic data: quality (SDMetrics definitions), privacy, and reports."""
from synthloop.evaluate.privacy import dcr_share, exact_copy_rate
from synthloop.evaluate.quality import QualityResult, quality_score

__all__ = ["QualityResult", "dcr_share", "exact_copy_rate", "quality_score"]
