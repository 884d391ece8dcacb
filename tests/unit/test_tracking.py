"""Link and pixel tracking in HTML: only what must change does."""

from domain.tracking import add_pixel, redirect_location, track_links


def redirect(url: str) -> str:
    return "https://t.example/c/" + url.replace("https://", "")


def test_links_go_through_the_redirect_and_the_rest_stays_as_written() -> None:
    document = (
        "<html><body>\n<p>Hi &amp; welcome</p>\n"
        '<a class="b" href="https://shop.example/a?x=1&amp;y=2">Shop</a>\n'
        "<A HREF='http://old.example/'>old</A> <a href=https://bare.example/>bare</a>\n"
        '<a data-mt-no-track href="https://keep.example/">keep</a>\n'
        '<a href="mailto:x@example.org">mail</a> <a href="#top">top</a>\n'
        '<a href="__unsubscribe_url__">unsubscribe</a>\n'
        "</body></html>"
    )
    tracked = track_links(document, redirect)
    assert tracked == (
        "<html><body>\n<p>Hi &amp; welcome</p>\n"
        '<a class="b" href="https://t.example/c/shop.example/a?x=1&amp;y=2">Shop</a>\n'
        '<A HREF="https://t.example/c/http://old.example/">old</A>'
        ' <a href="https://t.example/c/bare.example/">bare</a>\n'
        '<a data-mt-no-track href="https://keep.example/">keep</a>\n'
        '<a href="mailto:x@example.org">mail</a> <a href="#top">top</a>\n'
        '<a href="__unsubscribe_url__">unsubscribe</a>\n'
        "</body></html>"
    )


def test_a_document_without_links_is_returned_unchanged() -> None:
    assert track_links("<p>no links</p>", redirect) == "<p>no links</p>"


def test_the_pixel_goes_before_the_last_closing_body_tag_or_at_the_end() -> None:
    with_body = add_pixel("<html><body><p>x</p></BODY></html>", "https://t.example/o/1")
    assert with_body.startswith('<html><body><p>x</p><img src="https://t.example/o/1"')
    assert with_body.endswith("/></BODY></html>")
    fragment = add_pixel("<p>x</p>", "https://t.example/o/&1")
    assert fragment.startswith('<p>x</p><img src="https://t.example/o/&amp;1"')


def test_only_the_href_attribute_itself_changes() -> None:
    tricky = '<a title="see href=x" data-href="https://d.example/" href="https://a.example/">a</a>'
    assert track_links(tricky, redirect) == (
        '<a title="see href=x" data-href="https://d.example/" '
        'href="https://t.example/c/a.example/">a</a>'
    )


def test_redirect_targets_become_header_safe() -> None:
    assert redirect_location(" https://bücher.example/ページ?q=ü \n") == (
        "https://xn--bcher-kva.example/%E3%83%9A%E3%83%BC%E3%82%B8?q=%C3%BC"
    )
    assert (
        redirect_location("https://shop.example/o?id=1&x=%20")
        == "https://shop.example/o?id=1&x=%20"
    )
