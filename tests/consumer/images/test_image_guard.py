"""SSRF guard (consumer/images/guard.py): address classes and URL checks.

Nothing here may leave the machine: the `dialled` fixture, which every test uses, fails any
test that dials a non-loopback address.
"""

from __future__ import annotations

import ipaddress

import pytest
from yarl import URL

from consumer.images import ImageError
from consumer.images.guard import (
    check_url,
    is_public_address,
    parse_ip_literal,
)
from schemas import ErrorCode

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        # public unicast
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("1.1.1.1", True),
        ("100.63.255.255", True),  # just below the carrier-grade NAT range
        ("100.128.0.0", True),  # just above it
        ("2606:4700:4700::1111", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),  # IPv4-mapped public address
        ("2002:5db8:d822::1", True),  # 6to4 of 93.184.216.34
        # loopback, private, link-local
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT 100.64/10
        ("100.127.255.255", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd00::2", False),
        # unspecified, broadcast, multicast, reserved, documentation, benchmarking
        ("0.0.0.0", False),
        ("::", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("224.0.1.1", False),  # globally scoped multicast is still not unicast
        ("239.255.255.250", False),
        ("ff02::1", False),
        ("ff0e::1", False),  # global-scope IPv6 multicast
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("2001:db8::1", False),
        ("100::1", False),  # discard-only
        # IPv4 hidden inside IPv6
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::127.0.0.1", False),  # deprecated IPv4-compatible form
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2001::1", False),  # Teredo
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("93.184.216.34", "93.184.216.34"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1"),  # zone id dropped
        ("[fe80::1%25eth0]", "fe80::1"),
        ("2002:7f00:1::", "2002:7f00:1::"),
        # legacy IPv4 spellings that the C library still dials
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("8.8", "8.0.0.8"),
        # not addresses
        ("example.com", None),
        ("localhost", None),
        ("", None),
        ("[]", None),
        ("999.1.1.1", None),
        ("1.2.3.4.5", None),
        ("0x", None),
        ("::ffff:zz", None),
        ("1e3", None),
        ("bird-pictures.example", None),
    ],
)
def test_parse_ip_literal(host: str, expected: str | None) -> None:
    parsed = parse_ip_literal(host)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/bird.jpg",
        "http://93.184.216.34/bird.jpg",
        "http://[2606:4700:4700::1111]:8080/bird.jpg",
        "HTTP://Images.Example.COM/bird.jpg",
        "http://8.8/",
    ],
)
def test_check_url_allows_public_http(url: str) -> None:
    check_url(URL(url), allow_private=False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://images.example.com/bird.jpg", "scheme"),
        ("gopher://images.example.com:70/_GET", "scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("ws://images.example.com/", "scheme"),
        ("//images.example.com/bird.jpg", "scheme"),
        ("/bird.jpg", "scheme"),
        ("http:///bird.jpg", "no host"),
        ("http://user:secret@images.example.com/bird.jpg", "credentials"),
        ("http://user@images.example.com/bird.jpg", "credentials"),
        ("http://:secret@images.example.com/bird.jpg", "credentials"),
        ("http://images.example.com@127.0.0.1/", "credentials"),
        ("http://xn--a/bird.jpg", "not valid"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_check_url_refuses_whatever_the_network_policy(
    url: str, reason: str, allow_private: bool
) -> None:
    with pytest.raises(ImageError) as info:
        check_url(URL(url), allow_private)
    assert info.value.code is ErrorCode.BLOCKED_URL
    assert reason in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://127.0.0.1./",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[fe80::1%25eth0]/",
        "http://[zz::1]/",  # not an address, yet aiohttp would dial it as one
        "http://[a:b.example.com]/",
    ],
)
def test_check_url_refuses_non_public_literals_only_when_guarded(url: str) -> None:
    with pytest.raises(ImageError) as info:
        check_url(URL(url), allow_private=False)
    assert info.value.code is ErrorCode.BLOCKED_URL
    check_url(URL(url), allow_private=True)


def test_each_redirect_hop_is_checked_on_its_own() -> None:
    first = URL("https://images.example.com/bird.jpg")
    check_url(first, allow_private=False)
    for location in ("http://169.254.169.254/", "http://[::1]:8080/x", "file:///etc/passwd"):
        with pytest.raises(ImageError) as info:
            check_url(first.join(URL(location)), allow_private=False)
        assert info.value.code is ErrorCode.BLOCKED_URL
    check_url(first.join(URL("/other/bird.jpg")), allow_private=False)
