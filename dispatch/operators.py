"""The desk's named users (``[desk.operators."<name>"]``): who may act on an order, and who is a supervisor.

Approvals and closures name a configured user, never free text; an unknown name is a clear error. Tokens
are for intake that authenticates (HTTP): compared in constant time, read from ``token_file`` when given,
and never printed (``repr`` shows the name and role only).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from heatwatch.core.config import Config, OperatorSettings

SYSTEM_PREFIX = "system:"  # actors that are not people: system:sensors, system:desk (escalation)


class UnknownOperator(ValueError):
    """A name that is not a configured desk user, or one without the role an action needs."""


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: str = "operator"
    display_name: str = ""
    token: str = field(default="", repr=False)

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    @property
    def shown(self) -> str:
        return f"{self.display_name} ({self.name})" if self.display_name and self.display_name != self.name else self.name


def _token(name: str, s: OperatorSettings) -> str:
    if s.token is not None:
        return s.token.get_secret_value().strip()
    if s.token_file is not None:
        from heatwatch.core.errors import ConfigError

        try:
            return s.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"desk.operators.{name}.token_file: cannot read {s.token_file}: {exc.strerror}") from None
    return ""


class Operators:
    def __init__(self, users: Mapping[str, Operator]) -> None:
        self.users = dict(users)

    @classmethod
    def from_config(cls, cfg: Config) -> Operators:
        return cls({name: Operator(name, s.role, s.display_name, _token(name, s)) for name, s in cfg.desk.operators.items()})

    def require(self, name: str, supervisor: bool = False) -> Operator:
        """The configured user called ``name``; UnknownOperator naming the problem otherwise."""
        if not self.users:
            raise UnknownOperator("no desk users configured: add [desk.operators.\"<name>\"] to the config")
        op = self.users.get(name)
        if op is None:
            raise UnknownOperator(
                f"unknown operator {name!r}: not one of the configured desk users ({', '.join(sorted(self.users))})")
        if supervisor and not op.is_supervisor:
            raise UnknownOperator(f"operator {name!r} is not a supervisor (desk.operators.{name}.role)")
        return op

    def by_token(self, token: str) -> Operator | None:
        """The user whose token this is (constant-time comparison), or None; users without a token never match."""
        found = None
        given = token.strip().encode("utf-8")
        for op in self.users.values():
            if op.token and hmac.compare_digest(op.token.encode("utf-8"), given):
                found = op
        return found

    def supervisors(self) -> list[Operator]:
        return [op for op in self.users.values() if op.is_supervisor]
