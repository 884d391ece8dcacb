"""Sending limits, as data. Values follow the Mailtrap sending API contract."""

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SendLimits:
    """Limits enforced when a message is accepted."""

    max_recipients_per_list: int = 1000
    max_category_length: int = 255
    max_custom_variables_bytes: int = 1000
    max_message_bytes: int = 10 * MB
    max_batch_requests: int = 500
    max_batch_bytes: int = 50 * MB
    max_header_value_length: int = 998 * 8


DEFAULT_LIMITS = SendLimits()
