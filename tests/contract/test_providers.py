"""One contract suite for every registered enrichment provider, over real sockets to the emulators.

Each provider in connector.registry.PROVIDERS (after load_all()) must have a row in ADAPTERS: the
identity that matches, the one that does not, the emulator and path it calls, what a match
looks like and what it costs. Every provider then gets the same tests: the answer's shape, a
no-match, every documented error code (injected with the emulator's FaultQueue), a rate-limit
reply, and credit counting against the emulator's own counters, directly and through the
Enricher and its ledger. Vendor-specific behaviour follows at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.enrichment import Enricher
from connector.errors import (
    ConfigError,
    ConnectorError,
    NoMatch,
    QuotaExhausted,
    RateLimited,
    RejectedRequest,
    TransientError,
)
from connector.ledger import open_ledger
from connector.limiter import MemoryLimiter
from connector.models import LeadIdentity
from connector.registry import PROVIDER_SETTINGS, PROVIDERS, load_all
from connector.sandbox import Sandbox, deep_merge
from connector.sandbox.server import Fault
from connector.settings import Settings, bundled_path, load_settings
from connector.sources.base import VendorContext

load_all()

SIXSENSE_PERSON = LeadIdentity(email="judy@6sense.com", country="US", first_name="Judy", company="6sense")
UNKNOWN = LeadIdentity(email="walter@unknown-startup.example", country="US")


def six(box: Sandbox, pool: str = "enrichment") -> int:
    return box["sixsense"].credits_spent[pool]


@dataclass(frozen=True)
class Adapter:
    emulator: str
    path: str  # the path prefix the provider calls (faults are injected there)
    match: LeadIdentity
    no_match: LeadIdentity
    check: Callable[[dict[str, Any]], bool]  # the parsed payload of `match`
    credits: Callable[[Sandbox], int]  # the emulator's own counter of this provider's credits
    first_cost: int  # vendor credits of the first fetch of `match`
    repeat_cost: int  # vendor credits of fetching it again right away
    ledger_cost: int | None = None  # what the ledger counts for the first fetch (None: first_cost)
    pool: str | None = None


ADAPTERS: dict[str, Adapter] = {
    "sixsense": Adapter(
        "sixsense", "/v2/people/full", SIXSENSE_PERSON, UNKNOWN,
        lambda p: p["company"]["domain"] == "6sense.com" and p["scores"][0]["product"] == "6sense"
        and len(p["segments"]["names"]) == 4,
        six, 1, 0, pool="sixsense:enrichment"),
    "sixsense_score": Adapter(
        "sixsense", "/v2/people/score", LeadIdentity(email="ann@acme-robotics.com"), UNKNOWN,
        lambda p: set(p) == {"scores"} and 0 <= p["scores"][0]["company_intent_score"] <= 100,
        six, 0, 0, pool=None),
    "sixsense_company": Adapter(
        "sixsense", "/v1/enrichment/company", LeadIdentity(email="someone@initech.example"), UNKNOWN,
        lambda p: p["company"]["name"] == "Initech" and p["company"]["employeeCount"] == "5200"
        and "companyId" not in p["company"],
        six, 1, 0, pool="sixsense:enrichment"),
    "sixsense_company_v2": Adapter(
        "sixsense", "/v2/people/enrichment", LeadIdentity(email="hank@globex.example"), UNKNOWN,
        lambda p: p["company"]["name"] == "Globex Corporation" and p["segments"]["names"] == ["Mid-Market"],
        six, 1, 0, pool="sixsense:enrichment"),
    "sixsense_people": Adapter(
        "sixsense", "/v1/enrichment/people", SIXSENSE_PERSON, UNKNOWN,
        lambda p: p["person"]["email"] == "judy@6sense.com" and p["company"]["domain"] == "6sense.com",
        six, 1, 0, pool="sixsense:enrichment"),
    "sixsense_ip": Adapter(
        "sixsense", "/v3/company/details", LeadIdentity(email="a@b.example", ip_address="203.0.113.3"),
        LeadIdentity(email="a@b.example", ip_address="198.51.100.7"),
        lambda p: p["company"]["company_match"] == "Match" and p["company"]["domain"] == "globex.example",
        lambda box: six(box, "company_identification"), 1, 0, pool="sixsense:company_identification"),
    "slintel": Adapter(
        "slintel", "/v2.0/lead/enrich", LeadIdentity(email="deepak@slintel.com"), UNKNOWN,
        lambda p: p["name"] == "Deepak Anchala" and p["division"] == "General" and p["matched_by"] == "email",
        lambda box: box["slintel"].credits_spent, 1, 1, pool="slintel:credits"),
    "slintel_company": Adapter(
        "slintel", "/v2.0/company/enrich", LeadIdentity(email="x@gmail.com", website="https://www.initech.example/"),
        UNKNOWN, lambda p: p["company_name"] == "Initech" and p["company_website"] == "initech.example",
        lambda box: box["slintel"].credits_spent, 1, 1, pool="slintel:credits"),
    "contacts_company": Adapter(
        "contacts_api", "/v1/companies/search", LeadIdentity(email="ann@acme-robotics.com"), UNKNOWN,
        lambda p: p["company"]["domain"] == "acme-robotics.com" and p["company"]["employee_count"] == 2400,
        lambda box: box["contacts_api"].credits_spent, 0, 0, pool=None),
    "contacts_people": Adapter(
        "contacts_api", "/v1/contacts/search", LeadIdentity(email="ann@acme-robotics.com"), UNKNOWN,
        lambda p: len(p["contacts"]) == 3 and all(c["is_decision_maker"] for c in p["contacts"])
        and p["credits_charged"] == 3,
        # The vendor charges per contact (3), and so does the ledger (the answer's credits_charged).
        lambda box: box["contacts_api"].credits_spent, 3, 3, pool="contacts_api:credits"),
}
PROVIDER_NAMES = sorted(ADAPTERS)


def _six_error(message: str) -> dict[str, str]:
    return {"status": "error", "message": message}


def _envelope(error_id: str, status: int, details: str) -> dict[str, Any]:
    return {"data": None, "meta": {}, "errors": [{"id": error_id, "code": status, "details": details}]}


@dataclass(frozen=True)
class ErrorCase:
    status: int
    body: Any
    error: type[ConnectorError]
    reason: str | None = None
    says: tuple[str, ...] = ()  # the raised message must contain each
    calls: int = 1  # requests the provider makes before giving up
    label: str = ""


ERRORS: dict[str, list[ErrorCase]] = {
    "sixsense": [
        ErrorCase(400, _six_error("Email ID is mandatory and can’t be blank"), RejectedRequest, "rejected_request",
                  ("400",), label="400"),
        ErrorCase(401, _six_error("Invalid API token."), ConfigError, "config_error",
                  ("providers.sixsense.api_token",), label="401"),
        ErrorCase(402, _six_error("Quota Exhausted. Your allocated Quota is exhausted"), QuotaExhausted,
                  "credits_exhausted", label="402"),
        ErrorCase(403, _six_error("Forbidden. You do not have the appropriate user rights"), ConfigError,
                  "config_error", ("providers.sixsense.api_token",), label="403"),
        ErrorCase(404, _six_error("No data found. Please contact 6sense support"), NoMatch, "no_match",
                  ("No data found",), label="404"),
        ErrorCase(422, _six_error("Validation error. pageSize"), RejectedRequest, "rejected_request", ("422",),
                  label="422"),
        ErrorCase(500, _six_error("boom"), TransientError, "vendor_unavailable", ("500",), calls=2, label="500"),
        ErrorCase(503, "<html>gateway</html>", TransientError, "vendor_unavailable", ("503",), calls=2, label="503"),
    ],
    "slintel": [
        ErrorCase(400, {"message": "Bad Request: one of email, ... is required"}, RejectedRequest,
                  "rejected_request", ("400",), label="400"),
        ErrorCase(400, {"message": "Bad Request: The action could not be processed, no API credits available"},
                  QuotaExhausted, "credits_exhausted", label="400-no-credits"),
        ErrorCase(403, {"message": "Forbidden"}, ConfigError, "config_error", ("providers.slintel.api_key",),
                  label="403"),
        ErrorCase(429, {"message": "Limit Exceeded"}, QuotaExhausted, "quota", ("midnight GMT",),
                  label="429-limit-exceeded"),
        ErrorCase(500, {"message": "Internal server error"}, TransientError, "vendor_unavailable", calls=3,
                  label="500"),
    ],
    "contacts_api": [
        ErrorCase(400, _envelope("invalid_input", 400, "'per_page' must be an integer from 1 to 100; got '101'."),
                  RejectedRequest, "rejected_request", ("invalid_input", "per_page"), label="400"),
        ErrorCase(401, _envelope("unauthorized", 401, "Missing or invalid API key."), ConfigError, "config_error",
                  ("providers.contacts_api.api_token", "unauthorized"), label="401"),
        ErrorCase(402, _envelope("insufficient_credits", 402, "This page needs 3 credits but 0 remain."),
                  QuotaExhausted, "credits_exhausted", ("insufficient_credits", "3 credits"), label="402"),
        ErrorCase(404, _envelope("not_found", 404, "No route."), ConfigError, "config_error", ("not_found",),
                  label="404"),
        ErrorCase(500, _envelope("internal", 500, "boom"), TransientError, "vendor_unavailable", ("internal",),
                  calls=3, label="500"),
    ],
}
RATE_LIMITED: dict[str, Any] = {
    "sixsense": _six_error("Too Many Requests"),
    "slintel": {"message": "Too Many Requests Exception"},
    "contacts_api": _envelope("rate_limited", 429, "Too many requests: 60 per 60 seconds."),
}
ERROR_PARAMS = [pytest.param(name, case, id=f"{name}-{case.label}")
                for name in PROVIDER_NAMES for case in ERRORS[ADAPTERS[name].emulator]]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The three enrichment emulators, their own limits opened wide: limits are tested by faults."""
    extra = {
        "sixsense": {"rate_limit": [1_000_000, 60]},
        "slintel": {"burst": [1_000_000, 1], "max_in_flight": 100},
        "contacts_api": {"rate_limit": [1_000_000, 60]},
    }
    with Sandbox(state_dir=None, vendors=["sixsense", "slintel", "contacts_api"], extra=extra,
                 tls_dir=tmp_path_factory.mktemp("tls")) as sandbox:
        yield sandbox


@pytest.fixture
def emulators(box: Sandbox) -> Iterator[Sandbox]:
    for emulator in box.emulators.values():
        emulator.faults.clear()
        emulator.log.clear()
    yield box
    for emulator in box.emulators.values():
        emulator.faults.clear()


def settings_for(box: Sandbox, tmp: Path, **overrides: Any) -> Settings:
    base = {
        "data_dir": str(tmp / "data"), "sandbox": {"enabled": False},
        "providers": {
            # One-second windows: a 429 without Retry-After pauses for one second.
            "sixsense": {"rate_limit": {"requests": 1000, "per_seconds": 1}, "retries_on_server_error": 1,
                         "custom_id": "acmepartner-acme-0123456789"},
            "contacts_api": {"rate_limit": {"requests": 1000, "per_seconds": 1}},
        },
    }
    return load_settings(bundled_path("settings.example.yaml"),
                         **deep_merge(deep_merge(base, box.overrides()), overrides))


@pytest.fixture
def settings(emulators: Sandbox, tmp_path: Path) -> Settings:
    return settings_for(emulators, tmp_path)


@pytest.fixture
def make_provider(settings: Settings) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(name: str, *, with_settings: Settings | None = None, limiter: MemoryLimiter | None = None) -> Any:
        provider = PROVIDERS[name](VendorContext(with_settings or settings, limiter or MemoryLimiter()))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def logged(box: Sandbox, name: str) -> list[Any]:
    adapter = ADAPTERS[name]
    return box[adapter.emulator].log.entries(path_prefix=adapter.path)


# --- the contract --------------------------------------------------------------------------------


def test_every_registered_provider_has_an_adapter_and_a_settings_section():
    assert set(PROVIDERS) == set(ADAPTERS)
    assert {PROVIDER_SETTINGS[n] for n in PROVIDERS} == {"sixsense", "slintel", "contacts_api"}
    for name in PROVIDERS:
        assert PROVIDER_SETTINGS[name] == ADAPTERS[name].emulator


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_a_match_is_parsed_into_the_documented_shape(name, emulators, make_provider):
    adapter = ADAPTERS[name]
    provider = make_provider(name)
    assert provider.credit_pool == adapter.pool
    assert provider.endpoint.split(":")[0] in ("sixsense", "slintel", "contacts_api")
    assert provider.lookup_key(adapter.match)
    payload = provider.fetch(adapter.match, deadline=time.time() + 30)
    assert isinstance(payload, dict)
    assert adapter.check(payload), payload
    assert [e.status for e in logged(emulators, name)] == [200]


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_a_no_match_raises_no_match_and_costs_nothing(name, emulators, make_provider):
    adapter = ADAPTERS[name]
    provider = make_provider(name)
    before = adapter.credits(emulators)
    with pytest.raises(NoMatch) as info:
        provider.fetch(adapter.no_match, deadline=time.time() + 30)
    assert info.value.message
    assert adapter.credits(emulators) == before


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_a_lead_with_nothing_to_look_up_has_no_lookup_key(name, make_provider):
    assert make_provider(name).lookup_key(LeadIdentity()) is None


@pytest.mark.parametrize("name, case", ERROR_PARAMS)
def test_every_documented_error_code_becomes_its_error(name, case, emulators, make_provider):
    adapter = ADAPTERS[name]
    emulator = emulators[adapter.emulator]
    emulator.faults.add(Fault(path_prefix=adapter.path, status=case.status, body=case.body, count=case.calls))
    provider = make_provider(name)
    before = adapter.credits(emulators)
    started = time.time()
    with pytest.raises(ConnectorError) as info:
        provider.fetch(adapter.match, deadline=started + 30)
    error = info.value
    assert type(error) is case.error, error
    if case.reason:
        assert error.reason == case.reason
    for text in case.says:
        assert text in error.message, error.message
    # Client errors are never retried; transient ones are, as often as the policy allows.
    assert len(logged(emulators, name)) == case.calls
    assert adapter.credits(emulators) == before
    if isinstance(error, QuotaExhausted) and error.reason == "quota":
        tomorrow = datetime.fromtimestamp(started, UTC).date() + timedelta(days=1)
        midnight = datetime.combine(tomorrow, datetime.min.time(), UTC).timestamp()
        assert error.reset_at == pytest.approx(midnight, abs=1)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_a_rate_limit_reply_pauses_the_key_then_the_call_succeeds(name, emulators, make_provider):
    adapter = ADAPTERS[name]
    emulator = emulators[adapter.emulator]
    emulator.faults.add(Fault(path_prefix=adapter.path, status=429, body=RATE_LIMITED[adapter.emulator]))
    provider = make_provider(name)
    payload = provider.fetch(adapter.match, deadline=time.time() + 30)
    assert adapter.check(payload)
    entries = logged(emulators, name)
    assert [e.status for e in entries] == [429, 200]
    # No Retry-After is documented by any of them: the key pauses for the vendor's window (1 s
    # here: 6sense and the contacts API are configured with 1 s windows; Slintel's burst is 1 s).
    assert entries[1].at - entries[0].at >= 0.9


def test_a_rate_limit_is_classified_before_any_retry(emulators, make_provider):
    for name in ("sixsense_company", "slintel_company", "contacts_company"):
        adapter = ADAPTERS[name]
        provider = make_provider(name)
        response = _fake_response(429, RATE_LIMITED[adapter.emulator])
        error = provider.classify(response)
        assert isinstance(error, RateLimited)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_credits_are_counted_as_the_vendor_counts_them(name, make_sandbox, make_provider, tmp_path):
    adapter = ADAPTERS[name]
    # A fresh emulator: the shared one remembers what it charged (6sense's 30-day window).
    emulators = make_sandbox(vendors=[adapter.emulator])
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", auto_migrate=True)
    provider = make_provider(name, with_settings=settings_for(emulators, tmp_path))
    start = adapter.credits(emulators)
    assert start == 0

    enricher = Enricher(ledger=ledger, providers={name: provider})
    [answer] = enricher.answer_many(name, [adapter.match], deadline=time.time() + 30)
    assert answer.matched and not answer.cached
    assert adapter.credits(emulators) - start == adapter.first_cost
    ledger_cost = adapter.ledger_cost if adapter.ledger_cost is not None else adapter.first_cost
    assert answer.credits == ledger_cost
    assert enricher.credits[name] == ledger_cost
    assert ledger.credits_spent().get(name, 0) == ledger_cost

    # Asked again inside the freshness period: the ledger answers, the vendor is not called.
    calls = len(logged(emulators, name))
    again = Enricher(ledger=ledger, providers={name: provider})
    [cached] = again.answer_many(name, [adapter.match], deadline=time.time() + 30)
    assert cached.cached and cached.payload == answer.payload and cached.credits == 0
    assert len(logged(emulators, name)) == calls
    assert adapter.credits(emulators) - start == adapter.first_cost

    # Asked again at the vendor: 6sense's 30-day / contract-year windows make it free, Slintel
    # and the contacts API charge every answer.
    provider.fetch(adapter.match, deadline=time.time() + 30)
    assert adapter.credits(emulators) - start == adapter.first_cost + adapter.repeat_cost


# --- 6sense --------------------------------------------------------------------------------------


def test_every_6sense_provider_shares_one_limit_per_token(make_provider):
    specs = {make_provider(n).http.spec for n in PROVIDER_NAMES if ADAPTERS[n].emulator == "sixsense"}
    assert len(specs) == 1
    [spec] = specs
    assert spec.key.startswith("sixsense:") and spec.requests == 1000 and spec.per_seconds == 1


def test_6sense_enrichment_credits_are_per_record_across_endpoints(emulators, make_provider):
    """6sense charges a record once per 30 days whichever Enrichment API asks: people/full, v2
    and people enrichment by the same email cost one credit; every provider's credit_key is that email."""
    lead = LeadIdentity(email="Mallory@Sprockets.example ", country="GB")
    start = six(emulators)
    for name in ("sixsense", "sixsense_company_v2", "sixsense_people"):
        provider = make_provider(name)
        assert provider.credit_key(lead) == provider.lookup_key(lead) == "mallory@sprockets.example"
        try:
            provider.fetch(lead, deadline=time.time() + 30)
        except NoMatch:
            assert name == "sixsense_people"
    assert six(emulators) - start == 1
    company = make_provider("sixsense_company")
    assert company.lookup_key(lead) == "sprockets.example"
    assert company.credit_key(lead) == "domain:sprockets.example"


def test_6sense_company_identification_sends_the_ip_and_custom_id(emulators, make_provider):
    provider = make_provider("sixsense_ip")
    emulator = emulators["sixsense"]
    payload = provider.fetch(LeadIdentity(email="a@b.example", ip_address=" 203.0.113.5 "), deadline=None)
    assert payload["company"]["domain"] == "sprockets.example"
    assert "203.0.113.5" in emulator.identified_ips
    assert emulator.custom_ids[-1] == "acmepartner-acme-0123456789"
    assert provider.lookup_key(LeadIdentity(ip_address="2001:db8::1")) is None
    assert provider.lookup_key(LeadIdentity(ip_address="not an ip")) is None
    assert provider.charge_window == timedelta(days=365)
    with pytest.raises(NoMatch, match="No Match"):
        provider.fetch(LeadIdentity(ip_address="192.0.2.44"), deadline=None)


def test_6sense_people_search_and_dictionary_are_helpers(emulators, make_provider):
    people = make_provider("sixsense_people")
    before = six(emulators)
    records = people.search_people("https://www.initech.example/")
    assert len(records) == 55  # two pages of at most 50
    assert len(emulators["sixsense"].log.entries(path_prefix="/v1/search/people")) == 2
    assert all("*" in r["lastName"] for r in records)  # names come masked: nothing to map
    assert people.search_people("initech.example", titles=["no such title"]) == []
    dictionary = people.people_dictionary("6sense.com")
    assert {"Bangalore", "Pune"} <= set(dictionary["city"])
    assert dictionary["industry"] == ["Software and Technology"]
    assert people.people_dictionary("unknown-startup.example") == {}
    assert six(emulators) == before  # free


def test_a_6sense_token_without_the_api_is_a_config_error(box, tmp_path):
    """A real 403 from the emulator: the token is not entitled to Company Identification."""
    with Sandbox(state_dir=None, vendors=["sixsense"], extra={"sixsense": {"apis": ["lead_scoring"]}},
                 tls_dir=tmp_path / "tls") as limited:
        settings = settings_for(limited, tmp_path)
        provider = PROVIDERS["sixsense_ip"](VendorContext(settings, MemoryLimiter()))
        with pytest.raises(ConfigError) as info:
            provider.fetch(ADAPTERS["sixsense_ip"].match, deadline=None)
        provider.close()
    assert "providers.sixsense.api_token" in info.value.message
    assert "Company Identification" in (info.value.fix or "")


# --- Slintel -------------------------------------------------------------------------------------


def test_slintel_limits_are_the_published_ones(make_provider):
    spec = make_provider("slintel").http.spec
    assert (spec.requests, spec.per_seconds, spec.max_in_flight) == (10, 1, 10)
    assert (spec.daily_quota, spec.quota_timezone, spec.day_seconds) == (10_000, "UTC", 86400)
    assert make_provider("slintel_company").http.spec == spec
    assert make_provider("slintel").charge_window == timedelta(0)  # every fetch is charged
    assert make_provider("slintel").cache_ttl == timedelta(days=90)


def test_slintel_sample_quirks_are_normalised(emulators, make_provider):
    lead = make_provider("slintel").fetch(LeadIdentity(email="deepak@slintel.com"), deadline=None)
    assert lead["divison"] == lead["division"] == "General"
    assert lead["last_funded_on"] == 1576108800 and lead["last_funded_on_date"] == "2019-12-12"
    company = make_provider("slintel_company").fetch(LeadIdentity(email="x@yahoo.com", website="slintel.com"),
                                                      deadline=None)
    assert company["last_funded_on"] == "Last 6 months" and company["last_funded_on_date"] is None
    assert company["company_twitter_url"] == ""  # the sample's Twitter field holds a Facebook URL
    assert company["company_facebook_url"].startswith("https://www.facebook.com/")


def test_slintel_lead_falls_back_to_linkedin_then_name_and_company(emulators, make_provider, tmp_path):
    provider = make_provider("slintel")
    by_linkedin = LeadIdentity(email="deepak.old@unknown-startup.example",
                               linkedin_url="https://www.linkedin.com/in/deepak-anchala-0043707/")
    assert provider.lookup_key(by_linkedin) == "deepak.old@unknown-startup.example"
    payload = provider.fetch(by_linkedin, deadline=None)
    assert payload["matched_by"] == "linkedin_url" and payload["id"] == "5dc164616d4235090c39736b"
    by_name = LeadIdentity(first_name="Deepak", last_name="Anchala", company="6sense")
    assert provider.lookup_key(by_name) == "name:deepak anchala|6sense"
    assert provider.fetch(by_name, deadline=None)["matched_by"] == "name_company"
    queries = [e.query for e in logged(emulators, "slintel")]
    assert queries[0].startswith("email=") and queries[1].startswith("linkedin_url=")
    assert queries[2].startswith("name=")

    email_only = make_provider("slintel", with_settings=settings_for(
        emulators, tmp_path, providers={"slintel": {"lead_fallbacks": []}}))
    with pytest.raises(NoMatch, match="by email$"):
        email_only.fetch(by_linkedin, deadline=None)


def test_slintel_search_never_returns_a_masked_email(emulators, make_provider):
    records, total = make_provider("slintel").search_leads(titles=["cxo", "vp"], company_websites=["amazon.com"],
                                                           location=["california", "united states"])
    assert total == 442 and records[0]["name"] == "Steve Sarner"
    assert all(r["email"] == "" for r in records)


def test_slintel_remaining_credits_reads_api_credits(emulators, settings, make_provider):
    from connector.providers.slintel import parse_json

    emulator = emulators["slintel"]
    limiter = MemoryLimiter()
    assert make_provider("slintel", limiter=limiter).remaining_credits(deadline=None) == emulator.available_credits
    make_provider("slintel_company").fetch(ADAPTERS["slintel_company"].match, deadline=None)
    assert make_provider("slintel_company").api_credits(deadline=None) == {
        "available_credits": emulator.available_credits, "consumed_credits": emulator.consumed_credits}
    assert limiter.used_today(make_provider("slintel").http.spec) == 1  # it counts toward the day
    assert parse_json('{"available_credits": 10, "consumed_credits": 90,\n}') == {
        "available_credits": 10, "consumed_credits": 90}  # the doc's own sample
    emulator.faults.add(Fault(path_prefix="/v2.0/api-credits", status=403, body={"message": "Forbidden"}))
    with pytest.raises(ConfigError, match="providers.slintel.api_key"):
        make_provider("slintel").remaining_credits(deadline=None)


def test_slintel_daily_quota_is_kept_by_the_limiter(emulators, tmp_path, make_provider):
    # No share kept for the webhook here: the point is the vendor's own 2 calls a day.
    settings = settings_for(emulators, tmp_path, providers={"slintel": {"daily_limit": 2}}, limiter={"realtime_reserve": 0})
    provider = make_provider("slintel_company", with_settings=settings)
    provider.fetch(ADAPTERS["slintel_company"].match, deadline=None)
    provider.fetch(ADAPTERS["slintel_company"].match, deadline=None)
    with pytest.raises(QuotaExhausted) as info:
        provider.fetch(ADAPTERS["slintel_company"].match, deadline=None)
    assert info.value.reason == "quota" and info.value.reset_at is not None
    assert len(logged(emulators, "slintel_company")) == 2


# --- contacts API --------------------------------------------------------------------------------


def test_contacts_people_asks_for_decision_makers_of_the_company(emulators, tmp_path, make_provider):
    settings = settings_for(emulators, tmp_path, providers={"contacts_api": {
        "decision_makers_per_company": 2, "decision_maker_departments": ["executive", "finance"]}})
    provider = make_provider("contacts_people", with_settings=settings)
    lead = LeadIdentity(email="someone@gmail.com", website="http://initech.example")
    assert provider.lookup_key(lead) == "initech.example"
    payload = provider.fetch(lead, deadline=None)
    assert 1 <= len(payload["contacts"]) <= 2
    assert {c["department"] for c in payload["contacts"]} <= {"executive", "finance"}
    assert all(c["company"]["domain"] == "initech.example" for c in payload["contacts"])
    [entry] = logged(emulators, "contacts_people")
    assert "is_decision_maker=true" in entry.query and "per_page=2" in entry.query
    assert "departments=executive" in entry.query and "tlds=initech.example" in entry.query


def test_contacts_errors_reach_the_ledger_with_their_id_and_details(emulators, make_provider, tmp_path):
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", auto_migrate=True)
    emulators["contacts_api"].faults.add(Fault(path_prefix="/v1/companies/search", status=400, body=_envelope(
        "invalid_input", 400, "Unknown parameter 'tld'. Accepted: tlds.")))
    provider = make_provider("contacts_company")
    enricher = Enricher(ledger=ledger, providers={"contacts_company": provider})
    lead = ADAPTERS["contacts_company"].match
    [outcome] = enricher.answer_many("contacts_company", [lead], deadline=None)
    assert isinstance(outcome, RejectedRequest)
    row = ledger.answers_for(endpoint=provider.endpoint, keys=[provider.lookup_key(lead)])[provider.lookup_key(lead)]
    assert row.status == "failed"
    assert "invalid_input (400): Unknown parameter 'tld'" in row.detail


def _fake_response(status: int, body: Any) -> Any:
    import httpx

    return httpx.Response(status, json=body, request=httpx.Request("GET", "http://x/"))
