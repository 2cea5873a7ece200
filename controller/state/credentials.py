"""Re-checks the caller's credential inside apply, so a revocation is effective for every later write."""

from __future__ import annotations

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import unauthorized


def verify(data: StateData, ctx: CommandContext) -> None:
    cred = ctx.get("credential")
    if cred is None or cred.get("kind") not in ("key", "jwt"):
        return  # system duties, anonymous requests (audited logins) and password logins carry no token
    user = data.users.get(cred.get("user_id", ""))
    if user is None or user["disabled"]:
        raise unauthorized("the calling user no longer exists or is disabled")
    if cred.get("kind") == "key":
        key = data.keys.get(cred.get("key_id", ""))
        if key is None or key["revoked"]:
            raise unauthorized("the API key was revoked")
        if key.get("expires_at") is not None and key["expires_at"] <= ctx["time"]:
            raise unauthorized("the API key has expired")
    role = ctx.get("role")
    if role is not None and user["role"] != role:
        raise unauthorized("the caller's role changed while the request was in flight; retry")
