"""Plans: frozen, reviewable values describing what an apply would do.

A plan is computed once, saved with an id and a content hash, shown to whoever
reviews it, and later applied exactly as saved. It records the environment's state
serial it was computed against, so an apply after the live state moved is refused.
Pure data; built by :mod:`railguard.engine.planner`, saved by the state store,
checked by :mod:`railguard.engine.apply`.

Formats: a format-1 plan lists every field of a create in its diff (each repeating a value of the
desired config the plan also carries: 21 of them per service, most of a 10,000-service plan). From
format 2 a create carries no diff: it is implied by the resource in ``desired``, which the hash covers,
and :meth:`Plan.diffs` gives it back for whoever shows or checks a change's fields. Stored format-1
plans keep their diffs, their hash and their meaning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from railguard.model.canonical import canonical_json
from railguard.model.diagnostics import Diagnostic, error, has_errors
from railguard.model.resources import Resource, ResourceKind, canonical_resource
from railguard.model.sensitivity import REDACTED, looks_secret

PLAN_FORMAT = 2  # 2: a create's diff is implied by its desired resource (see the module docstring)
IMPLIED_CREATES = 2  # the first format whose creates carry no diff
_UNHASHED = {"id", "created_at", "hash"}  # the plan's identity, not its content


class Action(StrEnum):
    create = "create"
    update = "update"
    replace = "replace"  # type: ignore[assignment]  # shadows str.replace; never called on members
    delete = "delete"
    noop = "no-op"
    command = "command"  # a one-off command in a release's context (`railguard exec` in a protected environment)
    restore = "restore"  # a database written back from a snapshot (railguard restore)
    canary_step = "canary-step"  # more of the requests to a canary (`railguard promote-step` where it needs approval)


class Risk(StrEnum):
    """How much a change can hurt: ordered from least to most."""

    safe = "safe"
    disruptive = "disruptive"
    destructive = "destructive"


RISK_ORDER = {Risk.safe: 0, Risk.disruptive: 1, Risk.destructive: 2}


class FieldDiff(BaseModel):
    """One changed config key. Sensitive values are already redacted."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str
    before: Any = None
    after: Any = None


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys; lists stay values (diffed as a whole)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


# Every field of every diff goes through here: the list is validated in one call into pydantic-core, much
# cheaper than one model_construct per field.
_DIFFS: TypeAdapter[list[FieldDiff]] = TypeAdapter(list[FieldDiff])


@lru_cache(maxsize=4096)
def _secret_path(path: str) -> bool:
    return path.startswith("env.") and looks_secret(path[4:])


def diff_configs(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldDiff]:
    """The changed fields from ``before`` to ``after``, sorted by path; values of secret-looking variables are
    redacted."""
    old, new = flatten(before or {}), flatten(after or {})
    out = []
    for path in sorted(old.keys() | new.keys()):
        was, now = old.get(path), new.get(path)
        if was != now:
            if _secret_path(path):
                was, now = (REDACTED if was is not None else None), (REDACTED if now is not None else None)
            out.append({"path": path, "before": was, "after": now})
    return _DIFFS.validate_python(out) if out else []


class Change(BaseModel):
    """One step of a plan for one resource."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    address: str
    kind: ResourceKind
    action: Action
    reason: str = Field(description="Why this action, in one sentence.")
    risk: Risk
    diff: list[FieldDiff] = Field(default_factory=list)
    before_fingerprint: str | None = None
    after_fingerprint: str | None = None


class Effect(StrEnum):
    """What policy says about a change, ordered from least to most restrictive."""

    allow = "allow"
    warn = "warn"
    require_approval = "require_approval"
    deny = "deny"


EFFECT_ORDER = {Effect.allow: 0, Effect.warn: 1, Effect.require_approval: 2, Effect.deny: 3}


class Verdict(BaseModel):
    """One policy finding on a plan: which rule, about which change, and what it takes."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    rule: str = Field(description="Built-in guardrail code (guard.*) or 'policy:<name>' for a spec rule.")
    effect: Effect
    address: str | None = Field(default=None, description="The change it is about; None for the whole plan.")
    message: str
    approvers: list[str] = Field(default_factory=list, description="Roles that may approve (require_approval).")
    confirm: str | None = Field(default=None, description="Text the approver must type back (deletes).")
    remediation: str = ""


def denial(plan_id: str, verdicts: Iterable[Verdict]) -> Diagnostic | None:
    """The error a plan with a ``deny`` verdict is: what the apply refuses it with (engine/guard.py), and what
    ``plan``/``promote`` report, so an agent reading ``ok`` never takes a denied plan for one it may apply."""
    denied = [v for v in verdicts if v.effect is Effect.deny]
    if not denied:
        return None
    frozen = any(v.rule == "guard.freeze" for v in denied)
    return error(
        "policy.frozen" if frozen else "policy.denied", f"Plan {plan_id} is denied by policy",
        "; ".join(f"{v.rule}: {v.message}" for v in denied) + ".",
        denied[0].remediation or "Change the spec so the rule no longer applies, then plan again.",
        address=plan_id, extra={"verdicts": [v.model_dump(mode="json") for v in denied]})


class PlanSource(BaseModel):
    """The source a plan deploys: a snapshot stored when the plan was made, and the spec text it was read from.

    Apply builds from this snapshot, never from the working tree, so edits after the plan neither change
    nor invalidate it. Both digests are covered by the plan's hash.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    digest: str = Field(description="Digest of the app source snapshot (paths, contents, executable bits).")
    files: int = Field(description="Number of files in the snapshot.")
    bytes: int = Field(description="Total size of the snapshot's files.")
    spec_digest: str = Field(description="SHA-256 of the spec text the plan was computed from.")
    root: str = Field(default="", description="The source folder the snapshot was taken from (information).")
    proposed: bool = Field(default=False, description="The spec was a proposed text, not the file on disk: "
                                                      "apply waits until the file says the same.")
    git_commit: str | None = None
    git_dirty: bool | None = None


class Plan(BaseModel):
    """A saved plan. ``hash`` covers everything but ``id``, ``created_at`` and itself."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    format: int = PLAN_FORMAT
    id: str = ""
    created_at: str = ""
    env: str
    base_serial: int = Field(description="The environment's state serial the plan was computed against.")
    desired_digest: str = Field(description="Digest of the desired resources the plan was computed for.")
    changes: list[Change]
    desired: list[Resource] = Field(description="The frozen desired resources apply will use.")
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    requested_by: str = Field(default="", description="The principal that asked for the plan.")
    verdicts: list[Verdict] = Field(default_factory=list, description="Policy verdicts, per change.")
    source: PlanSource | None = Field(default=None, description="The stored source snapshot and spec text.")
    allow_data_loss: list[str] = Field(default_factory=list, description="Tables whose loss a rehearsed release "
                                                                         "command may cause (acknowledged).")
    hash: str = ""

    @property
    def errored(self) -> bool:
        return has_errors(self.diagnostics)

    @property
    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.noop]

    @property
    def applyable(self) -> bool:
        return not self.errored and bool(self.actionable)

    @property
    def max_risk(self) -> Risk:
        risks = [c.risk for c in self.actionable] or [Risk.safe]
        return max(risks, key=lambda r: RISK_ORDER[r])

    @property
    def decision(self) -> Effect:
        """The most restrictive verdict: deny > require_approval > warn > allow."""
        effects = [v.effect for v in self.verdicts] or [Effect.allow]
        return max(effects, key=lambda e: EFFECT_ORDER[e])

    def diffs(self) -> Callable[[Change], list[FieldDiff]]:
        """A change's field diffs: as stored, or for a create of format 2 on, implied by its desired config."""
        return change_diffs(self.format, self.desired)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action if a not in (Action.restore, Action.canary_step)}
        for change in self.changes:
            out.setdefault(change.action.value, 0)
            out[change.action.value] += 1
        return out

    def content_hash(self) -> str:
        """``digest`` of the plan without id, created_at and hash, fed to sha256 one field and one list item at a
        time: the same canonical text (sorted keys, compact) without a whole copy of a large plan as a dict."""
        return self._digest(self._field_parts)

    def _digest(self, parts: Callable[[str], Iterable[str]]) -> str:
        """sha256 of the hashed fields' canonical text, each field written from ``parts(name)``."""
        sha = hashlib.sha256(b"{")
        for i, name in enumerate(self._hashed_fields()):
            sha.update(f'{"," if i else ""}{canonical_json(name)}:'.encode())
            for part in parts(name):
                sha.update(part.encode())
        sha.update(b"}")
        return "sha256:" + sha.hexdigest()

    def _hashed_fields(self) -> list[str]:
        # A plan saved before plans carried their source hashes as it always did.
        skipped = _UNHASHED | ({"source"} if self.source is None else set())
        if not self.allow_data_loss:  # so plans saved before the field existed keep their hash
            skipped = skipped | {"allow_data_loss"}
        return sorted(set(type(self).model_fields) - skipped)

    def _field_parts(self, name: str) -> Iterator[str]:
        """The canonical text of a field as the pieces it is written from (a list: its items' texts and commas),
        one at a time: the hash of a stored plan never holds a whole field's text."""
        value = getattr(self, name)
        if not isinstance(value, list):
            yield canonical_json(self.model_dump(mode="json", include={name})[name])
            return
        yield "["
        for j, item in enumerate(value):
            if j:
                yield ","
            yield _item_text(item)
        yield "]"

    def sealed(self, plan_id: str, created_at: str) -> Plan:
        """The plan with its id, time and content hash filled in."""
        return self.model_copy(update={"id": plan_id, "created_at": created_at, "hash": self.content_hash()})

    def sealed_with_body(self, plan_id: str, created_at: str) -> tuple[Plan, str]:
        """:meth:`sealed`, and the sealed plan's canonical JSON (``canonical_json(model_dump(mode="json"))``): the
        body a plan is stored and streamed as. Every field and list item is encoded once for both the hash and
        the body (a 10,000-service plan encoded its ~12 MB a second time for the body, ``model_dump_json``), and
        the pieces are joined once, into the body: no field is copied whole on the way."""
        parts = {name: list(self._field_parts(name)) for name in type(self).model_fields if name not in _UNHASHED}
        sealed = self.model_copy(update={"id": plan_id, "created_at": created_at,
                                         "hash": self._digest(parts.__getitem__)})
        parts |= {name: [canonical_json(getattr(sealed, name))] for name in _UNHASHED}
        body = ["{"]
        for i, name in enumerate(sorted(parts)):
            body.append(f'{"," if i else ""}{canonical_json(name)}:')
            body += parts[name]
        body.append("}")
        return sealed, "".join(body)

    def summary(self) -> dict[str, Any]:
        """The flags and counts shown at the top of every rendering (Terraform-style)."""
        return {
            "id": self.id, "env": self.env, "hash": self.hash, "base_serial": self.base_serial,
            "errored": self.errored, "applyable": self.applyable, "max_risk": self.max_risk.value,
            "counts": self.counts(), "decision": self.decision.value, "requested_by": self.requested_by,
        }


def _item_text(item: Any) -> str:
    """The canonical text of one item of a plan's list field (a resource or change: spliced, not dumped)."""
    if isinstance(item, Resource):
        return canonical_resource(item)  # the same text, without encoding its config again
    if isinstance(item, Change):
        return canonical_change(item)
    return canonical_json(item.model_dump(mode="json") if isinstance(item, BaseModel) else item)


def change_diffs(plan_format: int, desired: Iterable[Resource]) -> Callable[[Change], list[FieldDiff]]:
    """What :meth:`Plan.diffs` answers, for any plan-shaped value (a :class:`Plan`, the daemon's answer of one).

    The index of ``desired`` is built once, so looking up every change of a large plan stays linear.
    """
    if plan_format < IMPLIED_CREATES:
        return _stored
    by_address = {r.address: r for r in desired}

    def diff(change: Change) -> list[FieldDiff]:
        if change.action is not Action.create or change.diff:
            return change.diff
        resource = by_address.get(change.address)
        return diff_configs(None, resource.config) if resource is not None else []

    return diff


def _stored(change: Change) -> list[FieldDiff]:
    return change.diff


# The fields canonical_change writes, in canonical (sorted) order; checked at import like resources._SPLICED.
_CHANGE_FIELDS = ("action", "address", "after_fingerprint", "before_fingerprint", "diff", "kind", "reason", "risk")
if tuple(sorted(Change.model_fields)) != _CHANGE_FIELDS:
    raise RuntimeError("Change's fields changed: update plans._CHANGE_FIELDS and canonical_change")


def canonical_change(change: Change) -> str:
    """``canonical_json(change.model_dump(mode="json"))``, written field by field (a 10k-service plan has ~10k
    changes, most without a diff): strings as canonical_json writes them, the diff through canonical_json."""
    text = encode_basestring
    values = (change.action, change.address, change.after_fingerprint, change.before_fingerprint, change.kind,
              change.reason, change.risk)
    if not all(type(v) is str or isinstance(v, StrEnum) or v is None for v in values):
        return canonical_json(change.model_dump(mode="json"))
    diff = canonical_json([d.model_dump(mode="json") for d in change.diff]) if change.diff else "[]"
    after = "null" if change.after_fingerprint is None else text(change.after_fingerprint)
    before = "null" if change.before_fingerprint is None else text(change.before_fingerprint)
    return (f'{{"action":{text(str(change.action))},"address":{text(change.address)},"after_fingerprint":{after},'
            f'"before_fingerprint":{before},"diff":{diff},"kind":{text(change.kind)},'
            f'"reason":{text(change.reason)},"risk":{text(str(change.risk))}}}')
