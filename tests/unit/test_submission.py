import base64

import msgspec
import pytest

from domain.limits import SendLimits
from domain.submission import (
    BatchDraft,
    Draft,
    InvalidSubmission,
    merge,
    overrides_content,
    validate,
)


def draft(**fields: object) -> Draft:
    base = {
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": [{"email": "user@example.com"}],
        "subject": "Hello",
        "text": "Hi there",
    }
    base.update(fields)
    return msgspec.convert({k: v for k, v in base.items() if v is not None}, Draft)


def errors_of(d: Draft, limits: SendLimits | None = None) -> list[str]:
    with pytest.raises(InvalidSubmission) as caught:
        validate(d, limits or SendLimits())
    return caught.value.errors


def test_valid_request_gives_one_recipient_per_address_in_order() -> None:
    sub = validate(draft(cc=[{"email": "c@example.com"}], bcc=[{"email": "b@example.com"}]))
    assert [(r.email, r.kind) for r in sub.recipients] == [
        ("user@example.com", "to"),
        ("c@example.com", "cc"),
        ("b@example.com", "bcc"),
    ]
    assert sub.sender == "hello@example.com"
    assert sub.head.to[0].email == "user@example.com"
    assert sub.body.text == "Hi there"


def test_mailtrap_error_strings_for_an_empty_request() -> None:
    assert errors_of(Draft()) == [
        "'from' is required",
        "'to', 'cc' or 'bcc' address is required",
        "'subject' is required",
        "must specify either text or html body",
    ]


def test_invalid_from_address() -> None:
    assert errors_of(draft(**{"from": {"email": "not-an-address"}})) == [
        "'from' address is invalid"
    ]


def test_invalid_recipient_names_the_address() -> None:
    assert errors_of(draft(to=[{"email": "bad@"}])) == ["'to' address 'bad@' is invalid"]


def test_recipient_without_email() -> None:
    assert errors_of(draft(to=[{"name": "Nobody"}])) == ["'to' address must have an 'email'"]


def test_html_alone_is_enough() -> None:
    assert validate(draft(text=None, html="<p>x</p>")).body.html == "<p>x</p>"


def test_recipient_list_limit() -> None:
    many = [{"email": f"u{i}@example.com"} for i in range(1001)]
    assert errors_of(draft(to=many)) == ["'to' must not contain more than 1000 addresses"]
    assert len(validate(draft(to=many[:1000])).recipients) == 1000


def test_category_limit() -> None:
    assert errors_of(draft(category="c" * 256)) == [
        "'category' must not be longer than 255 characters"
    ]
    assert validate(draft(category="c" * 255)).category == "c" * 255


def test_custom_variables_limit() -> None:
    assert errors_of(draft(custom_variables={"k": "v" * 1000})) == [
        "'custom_variables' must not exceed 1000 bytes as JSON"
    ]
    assert validate(draft(custom_variables={"user_id": 7, "vip": True})).custom_variables == {
        "user_id": 7,
        "vip": True,
    }


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "'subject' must not contain CR or LF"),
        ({"headers": {"X-Ok": "a\nb"}}, "header 'X-Ok' value must not contain CR or LF"),
        (
            {"headers": {"X-Bad\r\nBcc": "v"}},
            "header name 'X-Bad\r\nBcc' must not contain CR or LF",
        ),
        (
            {"to": [{"email": "u@example.com", "name": "A\nB"}]},
            "'to' name must not contain CR or LF",
        ),
        ({"headers": {"X Space": "v"}}, "header name 'X Space' is invalid"),
        (
            {"headers": {"Content-Type": "text/plain"}},
            "header 'Content-Type' cannot be set in 'headers'",
        ),
        ({"headers": {"bcc": "x@example.com"}}, "header 'bcc' cannot be set in 'headers'"),
    ],
)
def test_header_injection_and_reserved_headers(fields: dict, error: str) -> None:
    assert error in errors_of(draft(**fields))


def test_custom_headers_keep_their_order_and_may_set_message_id() -> None:
    sub = validate(draft(headers={"X-B": "2", "X-A": "1", "Message-ID": "<id@example.com>"}))
    assert sub.head.headers == [("X-B", "2"), ("X-A", "1"), ("Message-ID", "<id@example.com>")]


def test_reply_to_field_and_header_conflict() -> None:
    assert errors_of(
        draft(reply_to={"email": "r@example.com"}, headers={"Reply-To": "x@y.com"})
    ) == ["'reply_to' and the 'Reply-To' header cannot both be set"]


def test_attachments_are_checked() -> None:
    good = base64.b64encode(b"%PDF-1.4").decode()
    errors = errors_of(
        draft(
            attachments=[
                {"filename": "a.pdf"},
                {"content": good},
                {"content": "not base64!!", "filename": "b.bin"},
                {"content": good, "filename": "c.pdf", "disposition": "sideways"},
                {"content": good, "filename": "d.pdf", "type": "pdf"},
            ]
        )
    )
    assert errors == [
        "attachment 1: 'content' is required",
        "attachment 2: 'filename' is required",
        "attachment 3: 'content' is not valid base64",
        "attachment 4: 'disposition' must be 'attachment' or 'inline'",
        "attachment 5: 'type' must be a MIME type such as 'image/png'",
    ]


def test_attachment_type_is_guessed_and_wrapped_base64_accepted() -> None:
    wrapped = base64.encodebytes(b"x" * 200).decode()  # 76-column lines
    sub = validate(
        draft(attachments=[{"content": wrapped, "filename": "r.pdf"}]),
        guess_type=lambda name: "application/pdf" if name.endswith(".pdf") else None,
    )
    part = sub.body.parts[0]
    assert (part.content_type, part.disposition) == ("application/pdf", "attachment")
    assert "\n" not in part.content


def test_message_size_limit_answers_413() -> None:
    content = base64.b64encode(b"x" * 2048).decode()
    with pytest.raises(InvalidSubmission) as caught:
        validate(
            draft(attachments=[{"content": content, "filename": "big.bin"}]),
            SendLimits(max_message_bytes=2048),
        )
    assert caught.value.status == 413
    assert caught.value.errors == ["message size exceeds the limit of 2048 bytes"]


def test_templates_are_refused_clearly() -> None:
    assert errors_of(draft(template_uuid="b81aabcd-1a1e-41cf-91b6-eca0254b3d96")) == [
        "templates are not available yet"
    ]


def test_batch_item_replaces_base_fields_wholesale() -> None:
    base = draft(custom_variables={"a": "1"}, headers={"X-Base": "1"})
    item = msgspec.convert(
        {"to": [{"email": "z@example.com"}], "custom_variables": {"b": "2"}}, Draft
    )
    merged = merge(base, item)
    assert merged.custom_variables == {"b": "2"}
    assert merged.headers == {"X-Base": "1"}
    assert merged.to == [msgspec.convert({"email": "z@example.com"}, type(merged.to[0]))]
    assert not overrides_content(item)
    assert overrides_content(msgspec.convert({"html": "<b>x</b>"}, Draft))


def test_batch_draft_decodes_the_wire_format() -> None:
    batch = msgspec.json.decode(
        b'{"base": {"from": {"email": "a@example.com"}}, "requests": [{"to": []}]}',
        type=BatchDraft,
    )
    assert batch.base.sender.email == "a@example.com"
    assert batch.requests[0].to == []
