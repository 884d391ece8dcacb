"""DKIM: keys generated, messages signed, signatures checked by dkimpy's verifier."""

from pathlib import Path

import dkim
import pytest

from adapters.dkim_signing import InvalidKeys, Signer, generate, load_key

MESSAGE = (
    b"From: Shop <shop@mail.example.com>\r\nTo: ann@example.net\r\nSubject: Hi\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@mail.example.com>\r\n\r\n"
    b"Hello,\r\n\r\nyour order has shipped.\r\n"
)


def verifier(records: dict[str, str]):
    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value else None

    return txt


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_signatures_verify_against_the_published_record(algorithm: str) -> None:
    pem, record = generate(algorithm)
    key = load_key("example.com", "pl1", pem)
    signed = Signer([key]).sign(MESSAGE, "mail.example.com")  # a subdomain signs as its parent
    assert signed.startswith(b"DKIM-Signature: v=1; a=" + key.algorithm.encode())
    assert signed.endswith(MESSAGE)
    assert dkim.verify(signed, dnsfunc=verifier({"pl1._domainkey.example.com": record}))
    tampered = signed.replace(b"has shipped", b"is lost")
    assert not dkim.verify(tampered, dnsfunc=verifier({"pl1._domainkey.example.com": record}))


def test_dual_signatures_and_domains_without_keys() -> None:
    rsa_pem, rsa_record = generate("rsa")
    ed_pem, ed_record = generate("ed25519")
    signer = Signer([load_key("example.com", "r1", rsa_pem), load_key("example.com", "e1", ed_pem)])
    signed = signer.sign(MESSAGE, "example.com")
    assert signed.count(b"DKIM-Signature:") == 2
    records = {"r1._domainkey.example.com": rsa_record, "e1._domainkey.example.com": ed_record}
    assert dkim.verify(signed, dnsfunc=verifier(records))  # the last signature added
    assert signer.sign(MESSAGE, "other.example") == MESSAGE
    assert not Signer()


def test_key_files(tmp_path: Path) -> None:
    pem, _ = generate("rsa")
    (tmp_path / "k.pem").write_bytes(pem)
    listing = tmp_path / "keys.toml"
    listing.write_text(
        f'[[key]]\ndomain = "Example.COM"\nselector = "pl1"\nprivate_key = "{tmp_path}/k.pem"\n'
    )
    signer = Signer.from_file(listing)
    assert [k.selector for k in signer.keys_for("example.com")] == ["pl1"]
    listing.write_text('[[key]]\ndomain = "example.com"\nprivate_key = "x"\n')
    with pytest.raises(InvalidKeys, match="'selector' is missing"):
        Signer.from_file(listing)
    with pytest.raises(InvalidKeys, match="not a usable private key"):
        load_key("example.com", "s", b"not a key")
    with pytest.raises(InvalidKeys, match="1024 bits"):
        generate("rsa", bits=512)
