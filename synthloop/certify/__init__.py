"""Certificates: a policy checked on real, synthetic and holdout files, written as JSON + HTML and signed
with Ed25519 (`cryptography`); verification needs only the certificate, the files and the public key."""
from synthloop.certify.policy import CRITERIA, Policy, PolicyError, default_policy, load_policy

__all__ = ["CRITERIA", "Policy", "PolicyError", "default_policy", "load_policy"]
