"""The sandbox's seeded world: companies the enrichment emulators know, and the CRM's leads.

Deterministic: the same `now` gives the same data. Times are relative to `now` so that the
default first-night watermark (24 h before the run) finds the "new" leads and not the old ones.
The mess is deliberate, it is what real CRMs hold: blank and malformed emails, personal-domain
emails, upper-case and padded emails, unicode and apostrophes, names longer than a CRM field,
several leads at one company domain, duplicate emails, and leads created before the watermark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

LONG_COMPANY_NAME = (
    "The International Consolidated Amalgamated Widgets, Gears and Precision Sprockets "
    "Manufacturing Company of Greater Northwestern Europe Limited"
)

# The 6sense reference's sample firmographics, numbers as strings exactly as the docs show them.
SIXSENSE_SAMPLE_COMPANY: dict[str, Any] = {
    "domain": "6sense.com",
    "name": "6sense",
    "region": "Northern America",
    "country": "United States",
    "countryISOCode": "US",
    "state": "California",
    "city": "San Francisco",
    "streetAddress": "450 Mission St,",
    "postalCode": "94105",
    "companyPhone": "415-212-9225",
    "industry": "Software and Technology",
    "employeeRange": "1,000 - 4,999",
    "revenueRange": "$100M - $250M",
    "employeeCount": "1192",
    "annualRevenue": "104000000",
    "titleLevel": "staff",
    "titleFunction": "engineering",
    "sicdescription": "Prepackaged Software",
    "siccode": "7372",
    "naicscode": "511210",
    "naicsdescription": "Software Publishers",
}

SIXSENSE_SAMPLE_SEGMENTS: list[tuple[int, str]] = [
    (4713, "Net New Logo Website Engagement Last 30 Days"),
    (28237, "6s for 6s: Keyword_Sales Intelligence"),
    (218915, "Cvent: Researching Virtual Events"),
    (53685, "EY - Enterprise Accounts (DemandGen)"),
]


@dataclass(frozen=True)
class SeedCompany:
    domain: str
    firmographics: dict[str, Any]
    segments: list[tuple[int, str]] = field(default_factory=list)
    # A known domain whose answer is a 200 with every field blank (6sense's documented no-match).
    blank_answer: bool = False


def _company(
    domain: str,
    name: str,
    industry: str,
    employees: int,
    revenue: int,
    country: tuple[str, str] = ("United States", "US"),
    city: str = "Austin",
    state: str = "Texas",
    segments: list[tuple[int, str]] | None = None,
) -> SeedCompany:
    firmographics = {
        "domain": domain,
        "name": name,
        "region": "Northern America" if country[1] in ("US", "CA") else "Western Europe",
        "country": country[0],
        "countryISOCode": country[1],
        "state": state,
        "city": city,
        "streetAddress": "1 Main St",
        "postalCode": "73301",
        "companyPhone": "512-555-0100",
        "industry": industry,
        "employeeRange": "1,000 - 4,999" if employees >= 1000 else "100 - 249",
        "revenueRange": "$100M - $250M" if revenue >= 100_000_000 else "$10M - $25M",
        # Typed as the OpenAPI file says; only the reference's own sample sends numbers as strings.
        "employeeCount": employees,
        "annualRevenue": revenue,
        "titleLevel": "staff",
        "titleFunction": "engineering",
        "sicdescription": "Prepackaged Software",
        "siccode": "7372",
        "naicscode": "511210",
        "naicsdescription": "Software Publishers",
    }
    return SeedCompany(domain, firmographics, segments or [])


def seed_companies() -> dict[str, SeedCompany]:
    companies = [
        SeedCompany("6sense.com", dict(SIXSENSE_SAMPLE_COMPANY), list(SIXSENSE_SAMPLE_SEGMENTS)),
        _company("acme-robotics.com", "Acme Robotics", "Manufacturing", 2400, 310_000_000,
                 segments=[(9001, "Robotics ICP"), (9002, "Tier 1 Accounts")]),
        _company("globex.example", "Globex Corporation", "Software and Technology", 180, 14_000_000,
                 segments=[(9003, "Mid-Market")]),
        _company("initech.example", "Initech", "Financial Services", 5200, 900_000_000,
                 city="New York", state="New York"),
        _company("sprockets.example", LONG_COMPANY_NAME, "Manufacturing", 12000, 2_100_000_000,
                 country=("United Kingdom", "GB"), city="Manchester", state="England"),
        _company("electronique.example", "Société Générale d'Électronique", "Electronics", 800,
                 45_000_000, country=("France", "FR"), city="Lyon", state="Auvergne-Rhône-Alpes"),
        _company("umbrella.example", "Umbrella Health", "Healthcare", 950, 88_000_000,
                 segments=[(9004, "Healthcare Vertical")]),
        SeedCompany("blankco.example", {}, [], blank_answer=True),
    ]
    # Personal mail providers: 6sense answers 200 with blank company data.
    for personal in ("gmail.com", "yahoo.com", "hotmail.com"):
        companies.append(SeedCompany(personal, {}, [], blank_answer=True))
    return {c.domain: c for c in companies}


@dataclass(frozen=True)
class SeedLead:
    first_name: str
    last_name: str
    email: str
    company: str
    country: str = "US"
    title: str = ""
    website: str = ""
    hours_ago: float = 1.0
    # Field values a person already typed into the CRM before we ever enriched it.
    prefilled: dict[str, Any] = field(default_factory=dict)


NEW_LEADS: list[SeedLead] = [
    SeedLead("Alice", "Smith", "  Alice.Smith@ACME-ROBOTICS.COM  ", "Acme Robotics", title="VP Operations"),
    SeedLead("Bob", "Jones", "bob.jones@acme-robotics.com", "Acme Robotics", title="Engineer"),
    SeedLead("Carla", "Díaz", "carla.diaz@acme-robotics.com", "Acme Robotics", country="ES"),
    SeedLead("Dmitri", "Ivanov", "dmitri@acme-robotics.com", "Acme Robotics"),
    SeedLead("Eve", "Adams", "eve@acme-robotics.com", "Acme",
             prefilled={"Industry": "Aerospace"}),  # a person's own value: ours_only leaves it
    SeedLead("Frank", "O'Brien", "frank.o'brien@globex.example", "Globex", title="CTO"),
    SeedLead("Grace", "Hopper", "grace@globex.example", "Globex"),
    SeedLead("Heidi", "Klum", "heidi@initech.example", "Initech", country="DE"),
    SeedLead("Ivan", "Petrov", "ivan@initech.example", "Initech"),
    SeedLead("Judy", "Chen", "judy@6sense.com", "6sense", title="Procurement Manager"),
    SeedLead("Mallory", "Ng", "mallory@sprockets.example", "Sprockets Intl", country="GB"),
    SeedLead("Zoë", "Ångström", "zoe@electronique.example", "Électronique", country="FR"),
    SeedLead("José", "Núñez", "jose.nunez@electronique.example", "Électronique", country="FR"),
    SeedLead("Oscar", "Wilde", "oscar@umbrella.example", "Umbrella"),
    SeedLead("Peggy", "Olson", "peggy@umbrella.example", "Umbrella"),
    SeedLead("Quinn", "Fabray", "quinn@umbrella.example", "Umbrella", prefilled={"NumberOfEmployees": 5}),
    SeedLead("Rupert", "Giles", "", "Sunnydale Library"),  # blank email
    SeedLead("Sybil", "Fawlty", "sybil.fawlty", "Fawlty Towers"),  # malformed: no domain
    SeedLead("Trent", "Reznor", "trent@@nin.example", "NIN"),  # malformed: two @
    SeedLead("Uma", "Thurman", "uma.thurman@gmail.com", "Self"),  # personal domain
    SeedLead("Victor", "Hugo", "victor@yahoo.com", "Les Mis"),
    SeedLead("Walter", "White", "walter@unknown-startup.example", "Gray Matter"),  # unknown to 6sense
    SeedLead("Xena", "Warrior", "xena@blankco.example", "BlankCo"),  # 200 with blank fields
    SeedLead("Yusuf", "Islam", "bob.jones@acme-robotics.com", "Acme Robotics"),  # duplicate email
    SeedLead("Zed", "Shaw", "zed@globex.example", "Globex", title="Author"),
    SeedLead("Amélie", "Poulain", "amelie@electronique.example", "Électronique", country="FR"),
    SeedLead("Bartholomew", "Cubbins", "bart@6sense.com", "6sense"),
    SeedLead("Cosmo", "Kramer", "cosmo@initech.example", "Initech"),
]

OLD_LEADS: list[SeedLead] = [
    SeedLead("Olde", "Timer", "olde@acme-robotics.com", "Acme Robotics", hours_ago=24 * 5),
    SeedLead("Ancient", "Mariner", "mariner@globex.example", "Globex", hours_ago=24 * 3),
    SeedLead("Early", "Bird", "early@initech.example", "Initech", hours_ago=30),
]


def lead_created_times(now: datetime) -> list[tuple[SeedLead, datetime]]:
    """Every lead with its creation time; two new leads share a timestamp on purpose."""
    out: list[tuple[SeedLead, datetime]] = []
    base = now.astimezone(timezone.utc).replace(microsecond=0)
    for i, lead in enumerate(OLD_LEADS):
        out.append((lead, base - timedelta(hours=lead.hours_ago, minutes=i)))
    count = len(NEW_LEADS)
    for i, lead in enumerate(NEW_LEADS):
        # Spread over the last 20 hours, oldest first; leads 2 and 3 share one timestamp.
        minutes_ago = int((count - i) * (20 * 60 / count))
        if i == 3:
            minutes_ago = int((count - 2) * (20 * 60 / count))
        out.append((lead, base - timedelta(minutes=minutes_ago)))
    return out


def stable_int(text: str, low: int, high: int) -> int:
    """A deterministic number in [low, high] derived from `text` (scores, ids)."""
    digest = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return low + digest % (high - low + 1)
