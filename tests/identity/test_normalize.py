"""Identifier and attribute normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panorama.config import ConfigError, IdentityConfig, parse_config
from panorama.identity.normalize import (
    BLOCKED,
    INVALID,
    OK,
    Normalizer,
    canonical_first_name,
    dates_compatible,
    first_names_compatible,
    kind_of,
    normalize_date,
    normalize_postcode,
    phone_key,
    plain_email,
    split_full_name,
)
from panorama.identity.rules import Rules

GB = Normalizer(IdentityConfig(default_region="GB"))
GMAIL = Normalizer(
    IdentityConfig(
        default_region="GB",
        email={
            "ignore_dots": ["gmail.com", "googlemail.com"],
            "domain_aliases": {"googlemail.com": "gmail.com"},
        },
    )
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" John.Smith@Gmail.com ", "john.smith@gmail.com"),
        ("JOHN.SMITH@GMAIL.COM", "john.smith@gmail.com"),
        ("john.smith+shop@googlemail.com", "john.smith@googlemail.com"),
        ("jane.doe+news@outlook.com", "jane.doe@outlook.com"),
        ("j.smith@gmial.com", "j.smith@gmail.com"),  # one-letter domain typo
        ("a.b@hotmail.co.k", "a.b@hotmail.co.uk"),
        ("mailto:Ann@Example.co.uk", "ann@example.co.uk"),
        ("info@firm.co.uk", "info@firm.co.uk"),
        ("mike@mail.com", "mike@mail.com"),  # a real domain is not a typo of gmail.com
    ],
)
def test_email_normalised(raw, expected):
    assert GB.email(raw) == (expected, OK)


def test_gmail_rules_when_configured():
    assert GMAIL.email("John.Smith+shop@googlemail.com") == ("johnsmith@gmail.com", OK)
    assert GMAIL.email("jane.doe@outlook.com") == (
        "jane.doe@outlook.com",
        OK,
    )  # dots kept elsewhere


@pytest.mark.parametrize(
    "raw", ["bad@@x.com", "foo@bar", "plain", "", "   ", "a b@c.com", "@gmail.com"]
)
def test_invalid_email(raw):
    assert GB.email(raw)[1] == INVALID


@pytest.mark.parametrize(
    "raw",
    ["test@test.com", "no@email.com", "a@a.com", "noemail@gmail.com", "NONE@NONE.COM", "x@y.org"],
)
def test_junk_email_blocked(raw):
    assert GB.email(raw)[1] == BLOCKED


def test_email_rules_configurable():
    config = IdentityConfig(
        email={"plus_tags": ["gmail.com"], "ignore_dots": ["gmail.com"], "fix_domain_typos": False}
    )
    n = Normalizer(config)
    assert n.email("a.b+x@gmail.com") == ("ab@gmail.com", OK)
    assert n.email("a+x@outlook.com") == ("a+x@outlook.com", OK)
    assert n.email("a@gmial.com") == ("a@gmial.com", OK)
    assert n.fingerprint() != GB.fingerprint()


@pytest.mark.parametrize(
    "raw",
    ["07911 559242", "07911559242", "+44 7911 559242", "+447911559242", "0044 7911-559242",
     "(07911) 559242", "+44 (0)7911 559242", "07911-559-242"],
)  # fmt: skip
def test_uk_phone_formats(raw):
    assert GB.phone(raw) == ("+447911559242", OK)


def test_phone_region_and_junk():
    us = Normalizer(IdentityConfig(default_region="US"))
    assert us.phone("(212) 555-0100") == ("+12125550100", OK)
    assert us.phone("+44 20 7946 0958") == ("+442079460958", OK)
    assert GB.phone("0161 496 0123") == ("+441614960123", OK)
    for junk in ("07000000000", "01234567890", "1234567890"):
        assert GB.phone(junk)[1] == BLOCKED
    for bad in ("0000000000", "12345", "abc", "999"):
        assert GB.phone(bad)[1] in (INVALID, BLOCKED)
    assert phone_key("+44 (0)7911 559242") == "+447911559242"


def test_other_identifiers_and_blocklists():
    assert GB.identifier("user_id", "  C123 ") == ("C123", OK)
    assert GB.identifier("crm_id", "N/A")[1] == BLOCKED
    assert GB.identifier("loyalty_id", "unknown")[1] == BLOCKED
    n = Normalizer(IdentityConfig(blocked_values={"user_id": ["GUEST-1"], "*": ["ZZZ"]}))
    assert n.identifier("user_id", "guest-1")[1] == BLOCKED
    assert n.identifier("crm_id", "zzz")[1] == BLOCKED
    assert n.identifier("crm_id", "C1")[1] == OK
    assert n.identifier("email", "Ann@X.com") == ("ann@x.com", OK)
    off = Normalizer(IdentityConfig(default_blocklist=False))
    assert off.identifier("crm_id", "unknown")[1] == OK


def test_kinds_and_rules():
    assert kind_of("email") == "email" and kind_of("work_email") == "email"
    assert kind_of("phone") == "phone" and kind_of("home_phone") == "phone"
    assert kind_of("crm_id") == "id"
    config = IdentityConfig(
        identifiers={"crm_id": {"kind": "id_ci", "priority": 95, "max_per_profile": 1}}
    )
    rules = Rules(config, ["email", "anonymous_id", "user_id"])
    assert rules.rule("crm_id").kind == "id_ci" and rules.rule("crm_id").max_per_profile == 1
    assert [r.type for r in rules.all()] == ["user_id", "crm_id", "email", "anonymous_id"]
    assert (
        rules.rule("email").shared_threshold == 5 and rules.rule("user_id").shared_threshold is None
    )


def test_identity_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"identity\.splink\.threshold"):
        parse_config({"name": "a", "identity": {"splink": {"threshold": 0.5}}})
    with pytest.raises(ConfigError, match=r"identity\.identifiers\.email\.max_per_profile"):
        parse_config({"name": "a", "identity": {"identifiers": {"email": {"max_per_profile": 0}}}})
    with pytest.raises(ConfigError, match=r"identity\.survivorship\.default"):
        parse_config({"name": "a", "identity": {"survivorship": {"default": "newest"}}})
    with pytest.raises(ConfigError, match=r"identity\.identifiers\.email\.kind"):
        parse_config({"name": "a", "identity": {"identifiers": {"email": {"kind": "mail"}}}})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Smith, John", ("john", "smith")),
        ("Mr J. Smith", ("j", "smith")),
        ("  JOHN   SMITH ", ("john", "smith")),
        ("Dr Jane Mary O'Brien-Jones", ("jane", "obrienjones")),
        ("José García", ("jose", "garcia")),
        ("Madonna", (None, "madonna")),
        ("", (None, None)),
    ],
)
def test_split_full_name(raw, expected):
    assert split_full_name(raw) == expected


def test_first_names():
    assert canonical_first_name("bob") == "robert"
    assert canonical_first_name("liz") == "elizabeth"
    assert first_names_compatible("bob", "robert")
    assert first_names_compatible("jonh", "john")  # swapped letters
    assert first_names_compatible("j", "john")  # an initial
    assert first_names_compatible("sam", "samantha")
    assert first_names_compatible("michael", "micheal")
    assert not first_names_compatible("john", "joan")
    assert not first_names_compatible("jane", "john")
    assert not first_names_compatible("emily", "emma")


def test_dates_and_postcodes():
    assert normalize_date("28/03/1950") == "1950-03-28"
    assert normalize_date("03/28/1950", "US") == "1950-03-28"
    assert normalize_date("1950-03-28T00:00:00Z") == "1950-03-28"
    assert normalize_date("19500328") == "1950-03-28"
    assert normalize_date("31/02/1950") is None
    assert normalize_date("soon") is None
    assert dates_compatible("1950-03-12", "1950-12-03")  # day and month swapped
    assert dates_compatible("1950-03-12", "1951-03-12")  # one digit wrong (a typo)
    assert dates_compatible("1950-03-12", "1905-03-12")  # two adjacent digits swapped
    assert not dates_compatible("1950-03-12", "1962-03-12")  # two digits wrong
    assert not dates_compatible("1950-03-12", "1950-04-13")
    assert normalize_postcode("m145rt") == "M14 5RT"
    assert normalize_postcode(" bs23 1zq") == "BS23 1ZQ"
    assert normalize_postcode("10001", "US") == "10001"


# -- the fast paths agree with the libraries they skip ------------------------------------

_EMAIL_CHARS = "abcxyz0189._-+!#'`~@"


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(
    st.one_of(
        st.text(_EMAIL_CHARS, max_size=40),
        st.builds(
            lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
            st.text("abz09._-+!#'~", min_size=1, max_size=70),
            st.lists(st.text("az09-", min_size=1, max_size=66), min_size=1, max_size=4),
            st.sampled_from(["com", "co", "uk", "test", "local", "x", "c0m", "arpa", "onion", "museum"]),
        ),
    )
)
def test_plain_email_accepts_only_what_email_validator_accepts_unchanged(text):
    from email_validator import EmailNotValidError, validate_email

    plain = plain_email(text)
    if plain is None:
        return  # the full check decides
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise AssertionError(f"plain_email accepted {text!r}, email-validator says {exc}") from exc
    assert plain == (checked.local_part.lower(), checked.domain.lower())


@pytest.mark.parametrize("text", ["ann@example.com", "a.b+c@mail.example.co.uk", "o'neil@x-y.org",
                                  "a..b@example.com", "ann@localhost", "ann@foo.test", "ann@xn--bcher-kva.de",
                                  "ann@ab--cd.com", "ann@example.c0m", ".ann@example.com", "ann@-x.com"])  # fmt: skip
def test_plain_email_examples(text):
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
        expected = (checked.local_part.lower(), checked.domain.lower())
    except EmailNotValidError:
        expected = None
    plain = plain_email(text)
    assert plain is None or plain == expected
    if text in ("ann@example.com", "a.b+c@mail.example.co.uk", "o'neil@x-y.org"):
        assert plain == expected  # the common shapes take the fast path


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(
    st.sampled_from(["GB", "US", "DE", "FR", "IE", "CA", "IM", "JE", "KZ", "RU", "AU"]),
    st.sampled_from(["+44", "+1", "+49", "+33", "+353", "+7", "+61", "0", ""]),
    st.text("0123456789", min_size=4, max_size=12),
)
def test_phone_validity_matches_phonenumbers(region, prefix, digits):
    import phonenumbers

    n = Normalizer(IdentityConfig(default_region=region))
    try:
        number = phonenumbers.parse(prefix + digits, region)
    except phonenumbers.NumberParseException:
        return
    assert n._valid_number(number) == phonenumbers.is_valid_number(number)


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(["GB", "US", "DE", "FR", "IE", "AU", "IN", "IT", "NL", "JP", "BR", "JE", "GG"]),
    st.sampled_from(["0", "00", "+44", "+440", "+44180020", "0180020", "+49", "+33", "+61", "+91", "+39",
                     "+31", "+81", "+55", "+1", "+353", "0044", ""]),  # fmt: skip
    st.text("0123456789", min_size=5, max_size=12),
)
def test_phone_shortcut_agrees_with_the_full_parse(region, prefix, digits):
    """`Normalizer.phone` skips `phonenumbers.parse` for 'national prefix + digits' and '+own
    calling code + digits' when the number is valid; the answer must be the full path's."""
    n = Normalizer(IdentityConfig(default_region=region))
    raw = prefix + digits
    assert n.phone(raw) == n._phone(raw, phone_key(raw)), raw


def test_phone_shortcut_is_taken_for_the_common_shapes():
    n = Normalizer(IdentityConfig(default_region="GB"))
    for raw in ("07700 900123", "+44 7700 900123", "020 7946 0018"):
        assert n._parsed_simply(phone_key(raw)) is not None, raw
        assert n.phone(raw)[1] == "ok"
    for raw in ("0044 7700 900123", "+1 202 555 0143", "+44 07700 900123"):
        assert n._parsed_simply(phone_key(raw)) is None, raw
    assert Normalizer(IdentityConfig(default_region="JE"))._simple_prefix is None  # +44 is read as GB
