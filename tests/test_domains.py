"""connector/domains.py: only a registrable, non-free-mail domain is ever a company lookup key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domains import (
    company_domain,
    email_domain,
    is_free_mail,
    registrable_domain,
    same_registrable_domain,
)

REGISTRABLE = [
    ("https://www.Acme-Robotics.com/about", "acme-robotics.com"),
    ("acme-robotics.com", "acme-robotics.com"),
    ("HTTPS://WWW.ACME-ROBOTICS.COM.", "acme-robotics.com"),
    ("  http://shop.eu.acme-robotics.com:8443/cart?x=1#top  ", "acme-robotics.com"),
    ("//acme-robotics.com", "acme-robotics.com"),
    ("user:secret@acme-robotics.com/x", "acme-robotics.com"),
    ("acme.co.uk", "acme.co.uk"),
    ("www.acme.co.uk/contact", "acme.co.uk"),
    ("acme.com.au", "acme.com.au"),
    ("acme.github.io", "acme.github.io"),  # the PSL's private section: a site of its own
    ("https://bücher.de/", "xn--bcher-kva.de"),
    ("BÜCHER.DE", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("ａｃｍｅ．ｃｏｍ", "acme.com"),  # full-width letters and dot
    ("shop.例え.jp", "xn--r8jz45g.jp"),
    ("sub.globex.example", "globex.example"),  # RFC 2606 testing names, used by the sandbox
    ("acme.test", "acme.test"),
]

REFUSED = [
    ".com", "com", "COM", "..com", ".co.uk", "co.uk", "github.io", "https://github.io/",
    "localhost", "http://localhost:8080/", "printer.local", "intranet.internal", "acme.con",
    "192.168.1.1", "http://10.0.0.1:80/x", "[::1]", "http://[2001:db8::1]/", "1.2.3.4.5",
    "", "   ", "\t\n", "http://", "https://", "https://www.", "www", "www.com", "www.co.uk",
    "N/A", "n/a", "-", "none", "acme", "a..com", "-acme.com", "acme .com", "acme_corp.com",
    "%61cme.com", "example", "x" * 64 + ".com", ".".join(["a" * 60] * 5) + ".com",
]


@pytest.mark.parametrize("text, expected", REGISTRABLE)
def test_a_website_is_normalised_to_its_registrable_domain(text, expected):
    assert registrable_domain(text) == expected


@pytest.mark.parametrize("text", REFUSED)
def test_a_suffix_an_address_or_junk_is_refused(text):
    assert registrable_domain(text) is None


def test_no_string_is_refused_with_an_exception():
    assert registrable_domain(None) is None
    assert registrable_domain(42) is None  # type: ignore[arg-type]
    assert company_domain(None, None) is None


@pytest.mark.parametrize("email, expected", [
    ("ann@acme-robotics.com", "acme-robotics.com"),
    ("  Ann.Lee@EU.Acme-Robotics.COM ", "acme-robotics.com"),
    ("ann@acme.co.uk", "acme.co.uk"),
    ("ann@gmail.com", "gmail.com"),  # a domain all the same: company_domain refuses free mail
    ("ann@com", None), ("ann@.com", None), ("ann@localhost", None), ("ann@[192.168.1.1]", None),
    ("ann@192.168.1.1", None), ("trent@@nin.example", None), ("@acme.com", None), ("sybil.fawlty", None),
    ("", None), ("ann@acme.com/x", None), ("ann@acme.com:25", None),
])
def test_an_emails_domain_is_its_registrable_domain(email, expected):
    assert email_domain(email) == expected


@pytest.mark.parametrize("domain", [
    "gmail.com", "GMail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.com.br", "outlook.com",
    "hotmail.com", "hotmail.fr", "live.com", "icloud.com", "me.com", "aol.com", "gmx.de", "gmx.net", "gmx.fr",
    "web.de", "proton.me", "protonmail.com", "mail.ru", "yandex.ru", "yandex.kz", "qq.com", "vip.qq.com",
    "163.com", "126.com", "naver.com", "tutanota.com", "https://www.GMail.com/inbox",
])
def test_free_mail_domains_are_recognised(domain):
    assert is_free_mail(domain)


@pytest.mark.parametrize("domain", ["acme-robotics.com", "google.com", "microsoft.com", "globex.example", "",
                                    ".com"])
def test_company_domains_are_not_free_mail(domain):
    assert not is_free_mail(domain)


@pytest.mark.parametrize("website, email, expected", [
    (".com", "pat@gmail.com", None),  # issue #12: never "com"
    ("com", "pat@gmail.com", None),
    ("", "pat@gmail.com", None),
    ("localhost", "pat@yahoo.com", None),
    ("https://www.acme-robotics.com/x", "rob@gmail.com", "acme-robotics.com"),
    ("https://www.acme-robotics.com/x", "rob@acme-robotics.com", "acme-robotics.com"),
    ("acme-robotics.de", "rob@acme-robotics.com", "acme-robotics.com"),  # a work email first
    ("", "rob@eu.acme-robotics.com", "acme-robotics.com"),
    (".com", "rob@acme-robotics.com", "acme-robotics.com"),  # a refused website: the email's
    ("gmail.com", "rob@acme-robotics.com", "acme-robotics.com"),  # a free-mail website is no company's
    ("https://www.linkedin.com/company/acme", "rob@gmail.com", None),  # a platform page
    ("https://sites.google.com/view/acme", "rob@acme-robotics.com", "acme-robotics.com"),
    ("", "ann@linkedin.com", "linkedin.com"),  # someone who works there
    ("acme.github.io", "", "acme.github.io"),
    ("", "x@yahoo.com.br", None),
    ("", "trent@@nin.example", None),
    ("192.168.1.1", "", None),
])
def test_company_domain_prefers_a_work_email_and_never_returns_a_suffix_or_free_mail(website, email, expected):
    assert company_domain(website, email) == expected


def test_answers_are_compared_by_registrable_domain():
    assert same_registrable_domain("acme-robotics.com", "https://www.acme-robotics.com/")
    assert same_registrable_domain("acme-robotics.com", "eu.acme-robotics.com")
    assert not same_registrable_domain("acme-robotics.com", "6sense.com")
    assert not same_registrable_domain("aliaxis.com", "slintel.com")
    assert not same_registrable_domain("acme-robotics.com", "")
    assert not same_registrable_domain("com", "com")  # a suffix matches nothing, itself included
    assert not same_registrable_domain("", "")


def test_the_public_suffix_list_is_read_without_any_network():
    script = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from connector.domains import company_domain, registrable_domain\n"
        "assert registrable_domain('https://www.acme.co.uk/x') == 'acme.co.uk'\n"
        "assert company_domain('.com', 'pat@gmail.com') is None\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.ÄäßéЖ例%@:/ ", min_size=0, max_size=20)
_URLISH = st.builds(
    lambda scheme, labels, tld, tail: scheme + ".".join(labels + [tld]) + tail,
    st.sampled_from(["", "http://", "https://", "HTTPS://www.", "//", "ftp://user@", "www."]),
    st.lists(_LABEL, max_size=4),
    st.sampled_from(["com", "co.uk", "example", "local", "io", "", "1", "рф", "COM."]),
    st.sampled_from(["", "/", "/about?x=1", ":8080", "#top", "@x"]),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), _URLISH))
def test_any_text_gives_none_or_a_lower_case_registrable_domain(text):
    domain = registrable_domain(text)
    if domain is not None:
        assert domain == domain.lower() and domain.isascii()
        assert "." in domain and not domain.startswith(".") and not domain.endswith(".")
        assert registrable_domain(domain) == domain  # a fixed point: no public suffix, no sub-domain
    for email in (text, f"someone@{text}"):
        found = company_domain(text, email)
        assert found is None or (registrable_domain(found) == found and not is_free_mail(found))
