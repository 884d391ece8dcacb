"""Delivery policy as data: the shipped tables in `domain/policy/`, operator files first."""

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from adapters.dkim_signing import Signer
from domain.bounces import BounceRules, InvalidRules
from domain.retry import RetrySchedule
from domain.shaping import Shaping

BOUNCE_RULES_ENV = "POSTLINE_BOUNCE_RULES"
SHAPING_ENV = "POSTLINE_SHAPING"
RETRY_ENV = "POSTLINE_RETRY"
WEBHOOK_RETRY_ENV = "POSTLINE_WEBHOOK_RETRY"


def shipped(name: str) -> dict[str, Any]:
    """A policy table shipped with Postline (`domain/policy/<name>.toml`)."""
    text = resources.files("domain").joinpath("policy", f"{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def operator_file(path: str | Path) -> dict[str, Any]:
    """An operator's policy file; InvalidRules says what is wrong with it."""
    try:
        return tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as error:
        raise InvalidRules(f"{path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidRules(f"{path}: {error}") from None


def bounce_rules(override: str | Path | None = None) -> BounceRules:
    """The bounce rules: the operator's file (`POSTLINE_BOUNCE_RULES`) first, then ours."""
    path = override or os.environ.get(BOUNCE_RULES_ENV)
    tables = [operator_file(path)] if path else []
    return BounceRules.from_data(*tables, shipped("bounce_rules"))


def shaping(override: str | Path | None = None) -> Shaping:
    """Traffic shaping: the operator's file (`POSTLINE_SHAPING`) merged over ours."""
    path = override or os.environ.get(SHAPING_ENV)
    tables = [operator_file(path)] if path else []
    return Shaping(*tables, shipped("shaping"))


def retry_schedule(override: str | Path | None = None) -> RetrySchedule:
    """The soft-bounce retry schedule: the operator's file (`POSTLINE_RETRY`) over ours."""
    path = override or os.environ.get(RETRY_ENV)
    values = {**shipped("retry"), **(operator_file(path) if path else {})}
    try:
        return RetrySchedule.from_data(values)
    except ValueError as error:
        raise InvalidRules(f"{path or 'retry.toml'}: {error}") from None


def webhook_retry_schedule(override: str | Path | None = None) -> RetrySchedule:
    """When failed webhook batches are sent again: the operator's file
    (`POSTLINE_WEBHOOK_RETRY`) over ours."""
    path = override or os.environ.get(WEBHOOK_RETRY_ENV)
    values = {**shipped("webhook_retry"), **(operator_file(path) if path else {})}
    try:
        return RetrySchedule.from_data(values)
    except ValueError as error:
        raise InvalidRules(f"{path or 'webhook_retry.toml'}: {error}") from None


def dkim_signer(path: str | Path | None = None) -> Signer:
    """The DKIM keys listed in `path` or `$POSTLINE_DKIM_KEYS` (none when neither is set)."""
    return Signer.from_file(path)
