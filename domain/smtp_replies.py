"""SMTP replies, as data: the relay's own answers, and how stock replies are worded.

Every 2xx/4xx/5xx reply carries an RFC 3463 enhanced status code (we advertise
ENHANCEDSTATUSCODES, RFC 2034), except the greeting and the HELO/EHLO answers. Replies the
protocol engine words itself get a code from `REWORDED` or, failing that, `DEFAULT_CODES`.
"""

import re

# The relay's answers (Mailtrap's wording where the contract gives one).
AUTH_REQUIRED = "530 5.7.1 Authentication required"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_BAD_USERNAME = (
    "535 5.7.8 Authentication credentials invalid: the username is 'api' and the password "
    "an API token"
)
AUTH_OK = "235 2.7.0 Authentication successful"
TOO_MANY_CONNECTIONS = "535 5.7.8 Too many connections per account"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_MANY_MESSAGES = "421 4.7.0 Too many messages for this connection; reconnect to send more"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors; closing the connection"
TIMEOUT = "421 4.4.2 {hostname} Error: timeout exceeded"
SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed limit"
BAD_SENDER = "553 5.1.7 Bad sender address syntax"
NULL_SENDER = "550 5.7.1 The null sender <> is not accepted: send from an address of your domain"
BAD_RECIPIENT = "553 5.1.3 Bad recipient address syntax"
BARE_NEWLINE = "550 5.5.2 Message contains a bare <LF> or <CR>: lines must end with <CR><LF>"
STORE_UNAVAILABLE = "451 4.3.0 Temporary failure: message store unavailable, try again later"
SENDER_OK = "250 2.1.0 Ok"
SENDER_NOT_ALLOWED = "550 5.7.1 Sending from domain is not allowed"
HEADER_FROM_MISMATCH = "550 5.7.1 From: Header does not match the sender's domain"
RECIPIENT_OK = "250 2.1.5 Ok"
QUEUED = "250 2.0.0 Ok: queued as {message_id}"

# Stock replies of the protocol engine (aiosmtpd), reworded with enhanced codes.
REWORDED = {
    "552 Error: Too much mail data": SIZE_EXCEEDED,
    "552 Error: message size exceeds fixed maximum message size": SIZE_EXCEEDED,
    "500 Line too long (see RFC5321 4.5.3.1.6)": (
        "500 5.5.2 Line too long: at most 998 characters (RFC 5321 4.5.3.1.6)"
    ),
    "500 Command line too long": "500 5.5.2 Command line too long",
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
    "530 5.7.0 Authentication required": AUTH_REQUIRED,
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "220 Ready to start TLS": "220 2.0.0 Ready to start TLS",
    "221 Bye": "221 2.0.0 Bye",
    "250 OK": "250 2.0.0 Ok",
}

DEFAULT_CODES = {
    "220": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.0.0",
    "421": "4.3.0",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")


# Stock replies that mean something else when they answer MAIL FROM.
REWORDED_FOR_SENDER = {"553 5.1.3 Error: malformed address": BAD_SENDER}


def worded(reply: str, *, sender: bool = False) -> str:
    """`reply` in the relay's words, with an enhanced status code where one belongs.

    `sender`: the reply answers MAIL FROM.
    """
    reworded = (REWORDED_FOR_SENDER if sender else REWORDED).get(reply) or REWORDED.get(reply)
    if reworded is not None:
        return reworded
    code, sep, text = reply[:3], reply[3:4], reply[4:]
    if sep not in (" ", "") or code[:1] not in "245" or _ENHANCED.match(text):
        return reply
    enhanced = DEFAULT_CODES.get(code, f"{code[0]}.0.0")
    return f"{code} {enhanced} {text}".rstrip()


def closes_connection(reply: str) -> bool:
    """421: the server closes the transmission channel after saying so (RFC 5321 §3.8)."""
    return reply.startswith("421")


def is_error(reply: str) -> bool:
    return reply[:1] in ("4", "5")
