"""The release guard shared by the models without a formal privacy guarantee (copula, autoregressive,
GAN, VAE): what their model file may hold is set by `synthloop.transforms.release` (no category held
by fewer than `privacy_k` rows, no exact number held by fewer than `privacy_k` rows, outliers
clipped). DP fits (`epsilon` set) are left to the DP code, which owns their domain."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthloop.transforms.release import DEFAULT_LABEL, clip_encoded, release_domain


class ReleaseGuardMixin:
    """`_release` (called by `BaseSynthesizer.fit` once the schema is known) and `_clip_released`
    (called by `_fit` on the encoded arrays). Reads the `privacy_k` and `rare_label` parameters."""

    def _release_k(self) -> int:
        if getattr(self, "epsilon", None) is not None:
            return 0
        return int(getattr(self, "privacy_k", 0) or 0)

    def _release(self, schema: Any, data: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
        k = self._release_k()
        if k <= 0:
            return schema, data
        return release_domain(schema, data, k, getattr(self, "rare_label", DEFAULT_LABEL))

    def _clip_released(self, encoded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._release_k() <= 0:
            return encoded
        return clip_encoded(encoded, self.codec_.learned)  # type: ignore[attr-defined]
