"""Learned synthesizers behind one interface (see base.BaseSynthesizer)."""
from synthloop.synthesizers.base import BaseSynthesizer, load_synthesizer
from synthloop.synthesizers.copula import GaussianCopulaSynthesizer

__all__ = ["BaseSynthesizer", "GaussianCopulaSynthesizer", "load_synthesizer"]
from synthloop.synthesizers.dp_marginals import DPMarginalSynthesizer
