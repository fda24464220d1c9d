"""Tokens and roles: who may score, label, promote, approve and manage tokens (docs/auth.md)."""

from driftloop.auth.guard import Gate, RateLimiter, TokenVerifier, gate_for
from driftloop.auth.identity import (
    acting_identity,
    os_user,
    run_origin,
    run_user,
    token_manager,
    token_principal,
)
from driftloop.auth.tokens import ROLES, Principal, TokenInfo, TokenStore, new_token, token_digest

__all__ = [
    "ROLES",
    "Gate",
    "Principal",
    "RateLimiter",
    "TokenInfo",
    "TokenStore",
    "TokenVerifier",
    "acting_identity",
    "gate_for",
    "new_token",
    "os_user",
    "run_origin",
    "run_user",
    "token_digest",
    "token_manager",
    "token_principal",
]
