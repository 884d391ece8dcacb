"""Accept flow for the sending API: validate, store the composition, one `Message` per recipient.

authenticate (caller) -> validate -> blobs (head per request, body shared) -> Message aggregates
-> group commit -> message ids. Nothing is acknowledged before the commit that holds it.
"""

import hashlib
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from uuid import UUID

import msgspec
import uuid_utils.compat as uuid_compat

from domain.addresses import ascii_domain, comparable_domain, domain_of
from domain.limits import DEFAULT_LIMITS, SendLimits
from domain.message import FORMAT_COMPOSITION, FORMAT_RFC5322, Message, accepted
from domain.rfc5322 import inspect, received_header
from domain.submission import (
    BatchDraft,
    Body,
    Draft,
    Head,
    InvalidSubmission,
    Submission,
    merge,
    overrides_content,
    validate,
    validate_body,
)
from engine.accounts import Principal
from engine.committer import GroupCommitter
from engine.sender_policy import HeaderFromMismatch, SenderDomains, SenderNotAllowed

_ENCODER = msgspec.json.Encoder()


_last_date: tuple[int, str] = (0, "")


def _date_header(now: datetime) -> str:
    """RFC 5322 Date; formatted once per second (formatting costs ~10 us)."""
    global _last_date
    second = int(now.timestamp())
    if _last_date[0] != second:
        _last_date = (second, format_datetime(now.replace(microsecond=0)))
    return _last_date[1]


def guess_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename, strict=False)[0]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a submission comes from."""

    principal: Principal
    stream: str  # transactional | bulk
    source: str  # api | smtp | system (Postline's own mail: not subject to the sender policy)
    client_ip: str | None


@dataclass(frozen=True, slots=True)
class RawSubmission:
    """A message received over SMTP: the envelope and the bytes, as the client sent them."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    helo: str | None
    hostname: str  # ours, for the Received header
    esmtp: bool
    tls: bool
    authenticated: bool


@dataclass(slots=True)
class BatchItemResult:
    message_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.errors


@dataclass(slots=True)
class _Staged:
    """Events and blobs of one request or batch, ready for one commit."""

    now: datetime
    events: list[Message.Accepted] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    date: str = ""

    def __post_init__(self) -> None:
        self.date = _date_header(self.now)

    def blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha, data)
        return sha

    def messages(
        self,
        origin: Origin,
        ids: list[UUID],
        recipients: list[tuple[str, str]],
        **shared: Any,
    ) -> list[str]:
        """Stage one `Accepted` per `(address, kind)` recipient; `shared` is what they share."""
        principal = origin.principal
        for message_id, (address, kind) in zip(ids, recipients, strict=True):
            self.events.append(
                accepted(
                    message_id,
                    self.now,
                    account_id=principal.account_id,
                    token_id=principal.token_id,
                    stream=origin.stream,
                    source=origin.source,
                    client_ip=origin.client_ip,
                    recipient=address,
                    recipient_kind=kind,
                    **shared,
                )
            )
        return [str(message_id) for message_id in ids]


class Acceptor:
    """Turns validated submissions into committed `Message` aggregates."""

    def __init__(
        self,
        committer: GroupCommitter,
        limits: SendLimits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        senders: SenderDomains | None = None,
    ) -> None:
        self._committer = committer
        self._limits = limits
        self._clock = clock
        self._senders = senders

    async def send(self, origin: Origin, draft: Draft) -> list[str]:
        """Accept one request; returns one message id per recipient (to, cc, bcc order)."""
        submission = validate(draft, self._limits, guess_type=guess_type)
        if self._senders is not None and origin.source != "system":
            await self._senders.check(origin.principal, submission.sender)
        staged = _Staged(self._clock())
        ids = self._stage(staged, origin, submission, body_sha=None)
        await self._commit(staged)
        return ids

    async def batch(self, origin: Origin, batch: BatchDraft) -> list[BatchItemResult]:
        """Accept the valid requests of a batch in one transaction; invalid ones report errors."""
        requests = batch.requests
        if requests is None:
            raise InvalidSubmission(["'requests' is required"])
        if not requests:
            raise InvalidSubmission(["'requests' must contain at least one request"])
        if len(requests) > self._limits.max_batch_requests:
            raise InvalidSubmission(
                [f"'requests' must not contain more than {self._limits.max_batch_requests} items"]
            )
        base = batch.base or Draft()
        shared: tuple[Body, str] | InvalidSubmission | None = None
        staged = _Staged(self._clock())
        results = []
        for item in requests:
            result = BatchItemResult()
            results.append(result)
            draft = merge(base, item)
            body_sha = None
            body = None
            try:
                if not overrides_content(item) and draft.template_uuid is None:
                    if shared is None:
                        shared = self._shared_body(staged, base)
                    if isinstance(shared, InvalidSubmission):
                        raise shared
                    body, body_sha = shared
                submission = validate(draft, self._limits, body=body, guess_type=guess_type)
                if self._senders is not None:
                    await self._senders.check(origin.principal, submission.sender)
            except InvalidSubmission as error:
                result.errors = error.errors
                continue
            except SenderNotAllowed as refusal:
                result.errors = ["Unauthorized", str(refusal)]
                continue
            result.message_ids = self._stage(staged, origin, submission, body_sha)
        if staged.events:
            await self._commit(staged)
        return results

    async def relay(self, origin: Origin, raw: RawSubmission) -> list[str]:
        """Accept a relayed message: one `Message` per envelope recipient, bytes kept as sent.

        The message's head is the `Received:` header we prepend; its body is the raw message,
        shared by every recipient. Subject, `X-MT-Category` and `X-MT-Custom-Variables` are
        read from the header for the logs; nothing else is parsed.
        """
        facts = inspect(raw.data, self._limits)
        if self._senders is not None and self._senders.policy == "verified":
            envelope = comparable_domain(domain_of(raw.sender))
            authors = {comparable_domain(domain) for domain in facts.from_domains}
            if authors != {envelope}:  # none, or one of another domain
                raise HeaderFromMismatch(", ".join(sorted(authors)) or None, envelope)
        staged = _Staged(self._clock())
        ids = [uuid_compat.uuid7() for _ in raw.recipients]
        prefix = received_header(
            helo=raw.helo,
            client_ip=origin.client_ip,
            hostname=raw.hostname,
            tls=raw.tls,
            authenticated=raw.authenticated,
            esmtp=raw.esmtp,
            queue_id=ids[0].hex,
            date=staged.date,
        )
        message_ids = staged.messages(
            origin,
            ids,
            [(recipient, "rcpt") for recipient in raw.recipients],
            sender=raw.sender,
            subject=facts.subject,
            category=facts.category,
            custom_variables=facts.custom_variables,
            format=FORMAT_RFC5322,
            head=staged.blob(prefix),
            body=staged.blob(raw.data),
            size=len(prefix) + len(raw.data),
        )
        await self._commit(staged)
        return message_ids

    def _shared_body(self, staged: _Staged, base: Draft) -> tuple[Body, str] | InvalidSubmission:
        try:
            body = validate_body(base, self._limits, guess_type)
        except InvalidSubmission as error:
            return error
        return body, staged.blob(_ENCODER.encode(body))

    def _stage(
        self, staged: _Staged, origin: Origin, submission: Submission, body_sha: str | None
    ) -> list[str]:
        ids = [uuid_compat.uuid7() for _ in submission.recipients]
        domain = ascii_domain(domain_of(submission.sender)) or "localhost"
        # The RFC 5322 Message-ID is the first recipient's message id, so a bounce or a reply
        # that quotes it leads straight back to the message.
        head: Head = msgspec.structs.replace(
            submission.head, message_id=f"<{ids[0].hex}@{domain}>", date=staged.date
        )
        if body_sha is None:
            body_sha = staged.blob(_ENCODER.encode(submission.body))
        return staged.messages(
            origin,
            ids,
            [(recipient.email, recipient.kind) for recipient in submission.recipients],
            sender=submission.sender,
            subject=head.subject,
            category=submission.category,
            custom_variables=submission.custom_variables,
            format=FORMAT_COMPOSITION,
            head=staged.blob(_ENCODER.encode(head)),
            body=body_sha,
            size=submission.size,
        )

    async def _commit(self, staged: _Staged) -> None:
        await self._committer.commit(staged.events, list(staged.blobs.items()))
