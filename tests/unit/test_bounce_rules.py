"""Bounce classification over a corpus of replies seen from real mailbox providers and MTAs."""

from pathlib import Path

import pytest

from domain.bounces import CATEGORIES, BounceRules, InvalidRules, parse_reply
from engine.policy import bounce_rules, shipped

RULES = bounce_rules()

CORPUS = [
    # Gmail
    (
        550,
        "5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "5.1.1 double-checking the recipient's email address for typos or\n"
        "5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser - gsmtp",
        "badrecipient",
    ),
    (
        452,
        "4.2.2 The email account that you tried to reach is over quota. Please direct\n"
        "4.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
        "overquota",
    ),
    (
        550,
        "5.7.26 This mail is unauthenticated, which poses a security risk to the\n"
        "5.7.26 sender and Gmail users, and has been blocked. - gsmtp",
        "spam_gmail",
    ),
    (
        421,
        "4.7.28 Our system has detected an unusual rate of unsolicited mail originating\n"
        "4.7.28 from your IP address. To protect our users from spam, mail sent from your\n"
        "4.7.28 IP address has been temporarily rate limited. - gsmtp",
        "spam_gmail",
    ),
    (
        550,
        "5.7.1 [192.0.2.1] Our system has detected that this message is likely\n"
        "5.7.1 unsolicited mail. To reduce the amount of spam sent to Gmail, this\n"
        "5.7.1 message has been blocked. - gsmtp",
        "spam",
    ),
    (
        552,
        "5.2.2 The email account that you tried to reach is over quota and inactive. - gsmtp",
        "overquota",
    ),
    (
        550,
        "5.2.1 The email account that you tried to reach is disabled. - gsmtp",
        "badrecipient",
    ),
    # Microsoft
    (
        550,
        "5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
        "[DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
        "badrecipient",
    ),
    (
        550,
        "5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3150).",
        "block",
    ),
    (
        550,
        "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
        "[AM0PR01MB1234.eurprd01.prod.exchangelabs.com]",
        "badrecipient",
    ),
    (
        451,
        "4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719)",
        "serverpolicy",
    ),
    # Yahoo / AOL
    (
        421,
        "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume "
        "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "block",
    ),
    (554, "5.7.9 Message not accepted for policy reasons.", "serverpolicy"),
    (554, "delivery error: dd This user doesn't have a yahoo.com account", "badrecipient"),
    (552, "1 Requested mail action aborted, mailbox not found", "badrecipient"),
    # Apple
    (550, "5.1.1 <x@icloud.com>: user does not exist", "badrecipient"),
    # Postfix-style
    (
        550,
        "5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual "
        "mailbox table",
        "badrecipient",
    ),
    (554, "5.7.1 <x@example.net>: Relay access denied", "relayfail"),
    (
        450,
        "4.2.0 <x@example.com>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.com.html",
        "greylisting",
    ),
    (451, "4.7.1 Greylisting in action, please come back later", "greylisting"),
    (451, "4.7.1 Temporary error, please retry", "greylisting"),
    (
        554,
        "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
        "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1",
        "block",
    ),
    (
        553,
        "5.1.8 <bounce@nonexistent.invalid>: Sender address rejected: Domain not found",
        "badsender",
    ),
    (
        450,
        "4.1.8 <bounce@example.com>: Sender address rejected: Domain not found",
        "badsender",
    ),
    (552, "5.3.4 Message size exceeds fixed limit", "content"),
    (452, "4.3.1 Insufficient system storage", "overquota"),
    (421, "4.3.2 Service not available, closing transmission channel", "serverfail"),
    (451, "4.3.0 Error: queue file write error", "serverfail"),
    (
        550,
        "5.7.25 [192.0.2.1] The IP address sending this message does not have a PTR record "
        "setup, or the corresponding forward DNS entry does not point to the sending IP.",
        "verifyfail",
    ),
    (550, "5.7.1 Email rejected per DMARC policy for example.com", "verifyfail"),
    (550, "5.7.1 Sender verify failed", "verifyfail"),
    (550, "5.7.1 Message rejected due to content restrictions (virus found)", "content"),
    (554, "5.6.0 Message contains invalid header", "content"),
    # Mailtrap's own examples
    (555, "[CS01] Message rejected due to local policy", "spam"),
    # Exim, other MTAs
    (550, "Unrouteable address", "badrecipient"),
    (550, "No such user here", "badrecipient"),
    (550, "5.1.10 RESOLVER.ADR.RecipientDomainNotFound; Recipient domain not found", "dnsFail"),
    (556, "5.1.10 Recipient address has null MX", "dnsFail"),
    (550, "Administrative prohibition", "serverpolicy"),
    (421, "Too many concurrent SMTP connections; please try again later.", "block"),
    (450, "4.4.2 Timeout waiting for data from client", "timeout"),
    (451, "4.4.1 Connection timed out", "timeout"),
    (503, "5.5.1 Error: need RCPT command", "generalfail"),
    (451, "Requested action aborted: local error in processing", "serverfail"),
    (450, "Requested mail action not taken: mailbox busy, try later", "transientfail"),
    (None, "No reply at all", "other"),
    # Replies Postline writes itself for network failures
    (None, "Connection refused by mx.example.com[192.0.2.25]:25", "transientfail"),
    (None, "Connection to mx.example.com timed out", "timeout"),
    (None, "Host or domain name not found: example.invalid (NXDOMAIN)", "dnsFail"),
]


@pytest.mark.parametrize(("code", "message", "category"), CORPUS)
def test_corpus(code: int | None, message: str, category: str) -> None:
    reply = parse_reply(code, message)
    assert RULES.category(reply) == category, reply.normalised()


def test_every_category_is_reachable_and_the_corpus_covers_most() -> None:
    shipped_categories = {rule["category"] for rule in shipped("bounce_rules")["rule"]}
    assert shipped_categories == set(CATEGORIES) - {"other"}
    covered = {category for _, _, category in CORPUS}
    assert len(covered) >= 15


def test_multi_line_replies_keep_one_enhanced_code() -> None:
    reply = parse_reply(550, "5.1.1 first line\n5.1.1 second line")
    assert (reply.enhanced, reply.text) == ("5.1.1", "first line second line")
    assert reply.normalised() == "550 5.1.1 first line second line"
    assert reply.permanent
    assert not parse_reply(451, "4.7.1 later").permanent
    assert not parse_reply(None, "refused").permanent


def test_operator_rules_come_first(tmp_path: Path) -> None:
    override = tmp_path / "rules.toml"
    override.write_text('[[rule]]\ncategory = "block"\npatterns = ["does not exist"]\n')
    rules = bounce_rules(override)
    assert rules.category(parse_reply(550, "5.1.1 user does not exist")) == "block"
    assert RULES.category(parse_reply(550, "5.1.1 user does not exist")) == "badrecipient"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[rule]]\ncategory = "nope"\npatterns = ["x"]\n', "unknown category 'nope'"),
        ('[[rule]]\ncategory = "block"\npatterns = "x"\n', "'patterns' must be a list"),
        ('[[rule]]\ncategory = "block"\npatterns = ["("]\n', "rule file 1, rule 1: missing )"),
        ("[[rule]\n", "rules.toml"),
    ],
)
def test_bad_rule_files_say_what_is_wrong(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(InvalidRules, match=problem.replace("(", r"\(").replace(")", r"\)")):
        bounce_rules(path)


def test_classification_is_cached() -> None:
    rules = BounceRules.from_data(shipped("bounce_rules"))
    reply = parse_reply(550, "5.1.1 unknown user")
    assert rules.category(reply) == rules.category(reply) == "badrecipient"
    assert rules.classify.cache_info().hits == 1
