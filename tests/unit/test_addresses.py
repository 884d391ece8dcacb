import pytest

from domain.addresses import ascii_domain, comparable_domain, is_valid_address


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.org",
        "x@xn--bcher-kva.example",
        "jöhn@bücher.de",
        "a_b-c=d@example-host.io",
    ],
)
def test_accepts_deliverable_addresses(address: str) -> None:
    assert is_valid_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "plainaddress",
        "@example.com",
        "user@",
        "user@localhost",
        "user@.example.com",
        "user@example..com",
        "user@-example.com",
        "user@example.com.",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "user name@example.com",
        "user@exa mple.com",
        '"quoted"@example.com',
        "user@[127.0.0.1]",
        "user@example.123",
        "user\r\n@example.com",
        "us\u3000er@example.com",  # ideographic space
        "us\u00a0er@example.com",  # no-break space
        "us\u0085er@example.com",  # next line (a C1 control)
        "a" * 65 + "@example.com",
        "user@" + "a" * 250 + ".com",
    ],
)
def test_refuses_malformed_addresses(address: str) -> None:
    assert not is_valid_address(address)


def test_ascii_domain_is_the_idna_form() -> None:
    assert ascii_domain("Bücher.DE") == "xn--bcher-kva.de"
    assert ascii_domain("bad_label.com") is None


def test_domains_compare_in_one_form() -> None:
    assert comparable_domain("Bücher.DE") == comparable_domain("xn--bcher-kva.de")
    assert comparable_domain("Example.ORG") == "example.org"
