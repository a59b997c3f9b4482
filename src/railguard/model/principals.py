"""Principals and roles: who is asking, and what each role may do where.

Every request to the daemon carries a principal: a token's (its name, role and the
environments it is scoped to) or, in same-user mode, the local OS user's (admin).
Roles are a closed set ordered by power; :func:`allows` is the one table of what a
role may do. Enforced by the daemon on every request; policy (approvals) comes on top.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    viewer = "viewer"
    agent = "agent"
    deployer = "deployer"
    approver = "approver"
    admin = "admin"


class Permission(StrEnum):
    read = "read"          # status, releases, logs, events, plans, operations, audit
    plan = "plan"          # compute and save plans, request approval
    apply = "apply"        # apply plans, deploy, roll back, promote
    approve = "approve"    # approve or reject plans (never one's own)
    secret = "secret"      # set secrets (values never come back)
    admin = "admin"        # tokens, daemon settings


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.viewer: frozenset({Permission.read}),
    Role.agent: frozenset({Permission.read, Permission.plan, Permission.apply}),
    Role.deployer: frozenset({Permission.read, Permission.plan, Permission.apply, Permission.secret}),
    Role.approver: frozenset({Permission.read, Permission.approve}),
    Role.admin: frozenset(Permission),
}
# Roles above agent widen power: creating such a token needs a confirmation on a terminal.
WIDENING_ROLES = {Role.deployer, Role.approver, Role.admin}


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable identity: 'token:<name>' or 'user:<os user>'.")
    role: Role
    envs: list[str] | None = Field(default=None, description="Environments a token is limited to; None: all.")
    kind: str = Field(default="user", description="'token' or 'user'.")
    tty: bool = Field(default=False, description="Whether the calling process has a controlling terminal.")

    def allows(self, permission: Permission, env: str | None = None) -> bool:
        if permission not in ROLE_PERMISSIONS[self.role]:
            return False
        return env is None or self.envs is None or env in self.envs
