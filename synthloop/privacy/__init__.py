"""Differential privacy in one place: where the noise comes from (mechanisms), what the domain may be
(domain), how the budget is split and stated (accounting). Every DP model calls these."""
from synthloop.privacy.accounting import Budget, cdp_delta, cdp_eps, cdp_rho, exponential_epsilon, gaussian_sigma
from synthloop.privacy.domain import DomainRelease, release_domain, refuse_undeclared, undeclared
from synthloop.privacy.mechanisms import gaussian_counts, noise_source, noisy_argmax, thresholded_counts

__all__ = ["Budget", "DomainRelease", "cdp_delta", "cdp_eps", "cdp_rho", "exponential_epsilon", "gaussian_counts",
           "gaussian_sigma", "noise_source", "noisy_argmax", "refuse_undeclared", "release_domain", "thresholded_counts",
           "undeclared"]
