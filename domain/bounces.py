"""Bounce classification: which of Mailtrap's 17 categories a failed delivery falls into.

The rules are data (`domain/policy/bounce_rules.toml`, operator overrides first): an ordered
list of regular expressions over the normalised reply `"<code> <enhanced> <text>"`. Whether a
failure is retried is the reply code's business (4xx soft, 5xx hard), not the category's.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

CATEGORIES = (
    "transientfail",
    "greylisting",
    "badsender",
    "block",
    "content",
    "dnsFail",
    "generalfail",
    "other",
    "relayfail",
    "serverfail",
    "spam",
    "verifyfail",
    "timeout",
    "badrecipient",
    "overquota",
    "serverpolicy",
    "spam_gmail",
)

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_SPACE = re.compile(r"\s+")


class InvalidRules(ValueError):
    """A bounce rule file that cannot be used; the message says where."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply, split into its parts."""

    code: int | None
    enhanced: str | None
    text: str

    @property
    def permanent(self) -> bool:
        """5xx: give up. Anything else (4xx, no reply at all) is worth another try."""
        return self.code is not None and 500 <= self.code < 600

    def normalised(self) -> str:
        parts = [str(self.code) if self.code else "000", self.enhanced or "0.0.0", self.text]
        return _SPACE.sub(" ", " ".join(parts)).strip().lower()

    def __str__(self) -> str:
        return " ".join(p for p in (str(self.code or ""), self.enhanced or "", self.text) if p)


def parse_reply(code: int | None, message: str) -> Reply:
    """A reply from its code and text; the enhanced code is taken from the first line.

    Multi-line replies repeat the enhanced code on every line (`5.1.1 The email ...\\n5.1.1
    Please try ...`): the repeats are dropped and the lines joined.
    """
    enhanced = None
    lines = []
    for line in message.splitlines() or [""]:
        line = line.strip()
        match = _ENHANCED.match(line)
        if match is not None:
            enhanced = enhanced or match.group(0)
            line = line[match.end() :].strip()
        lines.append(line)
    return Reply(code=code, enhanced=enhanced, text=" ".join(filter(None, lines)))


@dataclass(frozen=True, slots=True)
class BounceRule:
    category: str
    pattern: re.Pattern[str]


class BounceRules:
    """An ordered rule table; the first matching rule gives the category."""

    def __init__(self, rules: Iterable[BounceRule]) -> None:
        self.rules = tuple(rules)
        self.classify = lru_cache(maxsize=4096)(self._classify)

    @classmethod
    def from_data(cls, *tables: Mapping[str, Any]) -> "BounceRules":
        """Rules from parsed rule files (`{"rule": [{"category", "patterns"}]}`), in order."""
        rules = []
        for number, table in enumerate(tables, 1):
            for index, rule in enumerate(table.get("rule", []), 1):
                where = f"rule file {number}, rule {index}"
                category = rule.get("category")
                if category not in CATEGORIES:
                    raise InvalidRules(f"{where}: unknown category {category!r}")
                patterns = rule.get("patterns")
                if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                    raise InvalidRules(f"{where}: 'patterns' must be a list of strings")
                try:
                    compiled = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
                except re.error as error:
                    raise InvalidRules(f"{where}: {error}") from None
                rules.append(BounceRule(category, compiled))
        return cls(rules)

    def _classify(self, normalised: str) -> str:
        for rule in self.rules:
            if rule.pattern.search(normalised):
                return rule.category
        return "other"

    def category(self, reply: Reply) -> str:
        return self.classify(reply.normalised())
