"""Normalisation of identifiers and person attributes.

Identifiers: emails (syntax checked with `email-validator`, no DNS; lower case; plus-tags and
dots removed where the domain ignores them; googlemail = gmail; one-letter typos of
well-known domains corrected), phones (E.164 with `phonenumbers` and the project's default
region), other ids (trimmed; optionally case-insensitive). Each value gets a status:

* ``ok``       — links profiles;
* ``invalid``  — kept on the record as an attribute, never used to link;
* ``blocked``  — a junk value (``test@test.com``, ``0000000000``, ``unknown``) that never links.

Person attributes: names (case, accents, titles, "Last, First", nicknames), dates of birth,
postcodes. Everything here is pure Python on single values; the batch code normalises each
distinct value once and caches it (`panorama.identity.graph`).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib import resources

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from unidecode import unidecode

from panorama.config import IdentityConfig

OK, INVALID, BLOCKED = "ok", "invalid", "blocked"

# --------------------------------------------------------------------------------------
# blocked values (junk typed by staff and users)

DEFAULT_BLOCKED: dict[str, frozenset[str]] = {
    "email": frozenset(
        {
            "test@test.com",
            "noemail@noemail.com",
            "none@none.com",
            "a@a.com",
            "no@email.com",
            "noemail@email.com",
            "none@email.com",
            "test@example.com",
            "email@email.com",
            "no@no.com",
            "na@na.com",
            "x@x.com",
            "abc@abc.com",
            "123@123.com",
            "nomail@nomail.com",
            "donotreply@donotreply.com",
            "unknown@unknown.com",
            "null@null.com",
            "asdf@asdf.com",
        }
    ),
    "phone": frozenset(),  # phones are judged by pattern: see _junk_phone
    "*": frozenset(
        {
            "unknown",
            "n/a",
            "na",
            "none",
            "null",
            "nil",
            "undefined",
            "test",
            "-",
            "--",
            "0",
            "-1",
            "(none)",
            "(null)",
            "anonymous",
            "guest",
            "notprovided",
            "not provided",
            "no",
            "x",
            "xx",
            "xxx",
            "00000000-0000-0000-0000-000000000000",
            "nan",
        }
    ),
}
_JUNK_LOCAL_PARTS = frozenset(
    {
        "test",
        "noemail",
        "none",
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
        "nobody",
        "unknown",
        "null",
        "na",
        "n/a",
        "nomail",
        "invalid",
        "fake",
        "dummy",
        "asdf",
        "no",
        "notprovided",
        "noone",
        "nil",
    }
)
_JUNK_DOMAINS = frozenset(
    {
        "test.com",
        "example.com",
        "example.org",
        "example.net",
        "noemail.com",
        "none.com",
        "nomail.com",
        "invalid.com",
        "test.test",
        "mailinator.com",
        "donotreply.com",
    }
)

# Well-known consumer mail domains: a domain one edit away from exactly one of these (and
# not itself listed) is taken as a typo of it.
KNOWN_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "hotmail.it",
        "hotmail.es",
        "outlook.com",
        "outlook.fr",
        "outlook.de",
        "live.com",
        "live.co.uk",
        "live.fr",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.es",
        "yahoo.it",
        "ymail.com",
        "rocketmail.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "aol.co.uk",
        "btinternet.com",
        "sky.com",
        "virginmedia.com",
        "talktalk.net",
        "ntlworld.com",
        "blueyonder.co.uk",
        "tiscali.co.uk",
        "protonmail.com",
        "proton.me",
        "pm.me",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "email.com",
        "comcast.net",
        "verizon.net",
        "att.net",
        "sbcglobal.net",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "wanadoo.fr",
        "libero.it",
        "fastmail.com",
        "zoho.com",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "qq.com",
        "163.com",
        "126.com",
        "naver.com",
        "hey.com",
        "tutanota.com",
    }
)


def _dl1(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance exactly 1 (one insertion, deletion, substitution or
    transposition of adjacent characters)."""
    if a == b:
        return False
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if la > lb:
        a, b = b, a
    # b is a with one character inserted
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def damerau_levenshtein(a: str, b: str) -> int:
    """Optimal string alignment distance (names and domains are short)."""
    la, lb = len(a), len(b)
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[lb]


@lru_cache(maxsize=4096)
def fix_domain_typo(domain: str) -> str:
    if domain in KNOWN_DOMAINS or len(domain) < 7:
        return domain
    if domain.endswith((".con", ".cmo", ".ocm", ".vom", ".xom")):
        fixed = domain[:-4] + ".com"
        if fixed in KNOWN_DOMAINS:
            return fixed
    close = [d for d in KNOWN_DOMAINS if _dl1(domain, d)]
    return close[0] if len(close) == 1 else domain


# --------------------------------------------------------------------------------------
# identifier kinds and the normaliser


def kind_of(identifier_type: str, config: IdentityConfig | None = None) -> str:
    """email | phone | id | id_ci for an identifier type (configured, or by its name)."""
    if config is not None:
        rule = config.identifiers.get(identifier_type)
        if rule is not None and rule.kind is not None:
            return rule.kind
    name = identifier_type.lower()
    if name == "email" or name.endswith("_email") or name.startswith("email_"):
        return "email"
    if name in ("phone", "mobile", "landline", "telephone", "tel") or name.endswith(
        ("_phone", "_mobile")
    ):
        return "phone"
    return "id"


@dataclass
class Normalizer:
    """Normalises identifier values for one project config."""

    config: IdentityConfig = field(default_factory=IdentityConfig)

    def __post_init__(self) -> None:
        c = self.config
        self.region = c.default_region
        self._region_code = phonenumbers.country_code_for_region(self.region)
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(self._region_code, ())
        meta = phonenumbers.PhoneMetadata.metadata_for_region(self.region.upper(), None)
        self._main_region = bool(regions) and regions[0] == self.region.upper() and \
            meta is not None and meta.leading_digits is None  # fmt: skip
        # `_parsed_simply`: the default region's national prefix is one fixed string that its
        # parsing rule strips whole, with no carrier code and no transform, and its calling
        # code is the one parse reads first from '+' and those digits
        self._simple_prefix = None
        if self._main_region and meta.national_prefix and meta.national_prefix_transform_rule is None:
            rule = re.compile(meta.national_prefix_for_parsing or meta.national_prefix)
            match = rule.match(meta.national_prefix + "1")
            cc = str(self._region_code)
            first_code = next((int(cc[:i]) for i in range(1, 4) if int(cc[:i]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE), None)  # fmt: skip
            if match and match.group(0) == meta.national_prefix and match.lastindex is None and first_code == int(cc):
                international = re.compile(meta.international_prefix or "(?!)")
                self._simple_prefix = (meta.national_prefix, cc, international, rule)
        self._plus_all = "*" in c.email.plus_tags
        self._plus = frozenset(d.lower() for d in c.email.plus_tags)
        self._dots = frozenset(d.lower() for d in c.email.ignore_dots)
        self._aliases = {k.lower(): v.lower() for k, v in c.email.domain_aliases.items()}
        blocked: dict[str, set[str]] = {}
        if c.default_blocklist:
            for kind, values in DEFAULT_BLOCKED.items():
                blocked.setdefault(kind, set()).update(values)
        self._blocked_by_type = {
            t: {v.strip().lower() for v in vs} for t, vs in c.blocked_values.items()
        }
        self._blocked_default = {k: frozenset(v) for k, v in blocked.items()}

    def fingerprint(self) -> str:
        """Changes whenever a setting that affects normalised values changes."""
        c = self.config
        payload = repr((c.default_region, c.email.model_dump(), c.default_blocklist,
                        sorted((k, sorted(v)) for k, v in c.blocked_values.items()),
                        sorted((k, r.kind) for k, r in c.identifiers.items()), 3))  # fmt: skip
        return hashlib.md5(payload.encode()).hexdigest()[:16]

    # -- emails ----------------------------------------------------------------------
    def email(self, raw: str) -> tuple[str | None, str]:
        text = _clean_text(raw).lower()
        if text.startswith("mailto:"):
            text = text[7:]
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1].strip()
        if not text:
            return None, INVALID
        plain = plain_email(text)
        if plain is not None:
            local, domain = plain
        else:
            try:
                checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
            except EmailNotValidError:
                return None, INVALID
            local = checked.local_part.lower()
            domain = checked.domain.lower()
        if self.config.email.fix_domain_typos:
            domain = fix_domain_typo(domain)
        domain = self._aliases.get(domain, domain)
        if "+" in local and (self._plus_all or domain in self._plus):
            local = local.split("+", 1)[0]
        if domain in self._dots:
            local = local.replace(".", "")
        if not local:
            return None, INVALID
        value = f"{local}@{domain}"
        return value, BLOCKED if self._junk_email(value, local, domain) else OK

    def _junk_email(self, value: str, local: str, domain: str) -> bool:
        if value in self._blocked_default.get("email", ()) or value in self._blocked_default.get(
            "*", ()
        ):
            return True
        if not self.config.default_blocklist:
            return False
        if local in _JUNK_LOCAL_PARTS or domain in _JUNK_DOMAINS:
            return True
        first_label = domain.split(".", 1)[0]
        return len(local) == 1 and len(first_label) == 1  # a@a.com, x@y.com

    # -- phones ----------------------------------------------------------------------
    def phone(self, raw: str) -> tuple[str | None, str]:
        text = phone_key(raw)
        if not text or len(text) < 5:
            return None, INVALID
        number = self._parsed_simply(text)
        if number is not None and self._valid_number(number):
            national = str(number.national_number)
            e164 = f"+{number.country_code}{national}"
            if self.config.default_blocklist and _junk_phone(national, raw):
                return e164, BLOCKED
            return e164, OK
        return self._phone(raw, text)

    def _parsed_simply(self, text: str) -> phonenumbers.PhoneNumber | None:
        """What `phonenumbers.parse(text, default_region)` gives for the two common shapes —
        the national prefix and digits ('07700900123'), or the default region's calling code
        and digits ('+447700900123') — without its general machinery (42 us of a GB mobile's
        ~90); None for anything else. Only used when the number is then found valid: for a
        valid number, parse strips the prefix exactly so (property tests check the agreement)."""
        simple = self._simple_prefix
        if simple is None or not 8 <= len(text) <= 17 or not _ASCII_DIGITS.fullmatch(text, 1):
            return None
        prefix, cc, international, rule = simple
        if text[0] == "+":
            if not text.startswith(cc, 1):
                return None
            national = text[1 + len(cc) :]
        elif text.startswith(prefix) and text[0].isdigit() and not international.match(text):
            national = text[len(prefix) :]
        else:
            return None
        if not national or national[0] == "0" or rule.match(national):
            return None  # a leading zero, or a second prefix to strip: parse decides
        return phonenumbers.PhoneNumber(country_code=int(cc), national_number=int(national))

    def _phone(self, raw: str, text: str) -> tuple[str | None, str]:
        try:
            number = phonenumbers.parse(text, self.region)
        except phonenumbers.NumberParseException:
            return None, INVALID
        national = str(number.national_number)
        if self.config.default_blocklist and _junk_phone(national, raw):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            return e164, BLOCKED
        if not self._valid_number(number) and (
            phonenumbers.is_possible_number_with_reason(number)
            != phonenumbers.ValidationResult.IS_POSSIBLE
            or len(national) < 9
        ):
            # the right length for the country counts: numbering plans grow faster than the
            # library's metadata, and a well-formed number is what a person typed
            return None, INVALID
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), OK

    def _valid_number(self, number: phonenumbers.PhoneNumber) -> bool:
        """`phonenumbers.is_valid_number`, checking the default region's patterns once.

        `is_valid_number` first finds the number's region by trying each region of its
        calling code in turn (the full check for a region without leading digits), then runs
        the same check again for the region found. When the default region comes first for
        its calling code and has no leading digits, that search returns it for every number
        valid there, so one check for it gives the same answer; anything else falls through
        to the full function (measured: 43 -> ~20 us for a GB mobile)."""
        if (
            self._main_region
            and number.country_code == self._region_code
            and phonenumbers.is_valid_number_for_region(number, self.region)
        ):
            return True
        return phonenumbers.is_valid_number(number)

    # -- any identifier ----------------------------------------------------------------
    def identifier(self, identifier_type: str, raw: str | None) -> tuple[str | None, str]:
        """(normalised value or None, status) of one identifier value."""
        if raw is None:
            return None, INVALID
        kind = kind_of(identifier_type, self.config)
        if kind == "email":
            value, status = self.email(raw)
        elif kind == "phone":
            value, status = self.phone(raw)
        else:
            value = _clean_text(raw)
            if kind == "id_ci":
                value = value.lower()
            status = OK if value else INVALID
            if not value:
                value = None
        if value is not None and status == OK and self.is_blocked(identifier_type, value):
            status = BLOCKED
        return value, status

    def is_blocked(self, identifier_type: str, value: str) -> bool:
        low = value.lower()
        if low in self._blocked_by_type.get(
            identifier_type, ()
        ) or low in self._blocked_by_type.get("*", ()):
            return True
        return low in self._blocked_default.get(
            identifier_type, ()
        ) or low in self._blocked_default.get("*", ())


# An e-mail address that `email-validator` accepts unchanged (but for case): an ASCII dot-atom
# local part, host-name labels without "--" (no IDNA: punycode and hyphens in places 3-4 need
# its checks), a top-level domain of letters, within the length limits, not a special-use
# domain. `plain_email` answers for those in ~2 us instead of ~60 us; everything else goes
# through `validate_email` (a property test checks the two agree on what this accepts).
_ATEXT = r"a-z0-9_!#$%&'*+/=?^`{|}~-"
_PLAIN_EMAIL = re.compile(
    rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@((?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+[a-z]{{2,63}})"
)
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def plain_email(text: str) -> tuple[str, str] | None:
    """(local part, domain) of a lower-case address `validate_email` would accept as it is;
    None when it needs the full check."""
    m = _PLAIN_EMAIL.fullmatch(text)
    if m is None or len(text) > 254:
        return None
    local, domain = m.group(1), m.group(2)
    if len(local) > 64 or len(domain) > 253 or "--" in domain:
        return None
    if domain.endswith(_SPECIAL_USE) and any(
        domain == d or domain.endswith("." + d) for d in _SPECIAL_USE
    ):
        return None
    return local, domain


_SPACES = re.compile(r"\s+")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff\u00ad"), None)


def _clean_text(raw: str) -> str:
    return _SPACES.sub(" ", str(raw).translate(_INVISIBLE)).strip()


_PHONE_DROP = re.compile(r"[^0-9+]")


_ASCII_DIGITS = re.compile(r"[0-9]+")


def phone_key(raw: str) -> str:
    """The digits of a phone number (with a leading + kept): the unit that is normalised
    once and cached. '+44 (0)7700 900123' -> '+447700900123'."""
    text = str(raw).strip().replace("(0)", "")
    text = _PHONE_DROP.sub("", text)
    if text.startswith("+"):
        return "+" + text[1:].replace("+", "")
    return text.replace("+", "")


def _junk_phone(national: str, raw: str) -> bool:
    digits = re.sub(r"\D", "", str(raw))
    if len(set(national)) <= 2 and len(national) >= 6:
        return True  # 0000000000, 07000000000, 01111111111
    if re.search(r"(\d)\1{6,}", national):
        return True
    return any(seq in digits for seq in ("1234567890", "0123456789", "9876543210", "1234567"))


# --------------------------------------------------------------------------------------
# names

_TITLES = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "professor",
        "sir",
        "dame",
        "rev",
        "revd",
        "lord",
        "lady",
        "master",
        "madam",
        "mme",
        "mlle",
        "herr",
        "frau",
        "fr",
        "capt",
        "col",
    }
)
_SUFFIXES = frozenset(
    {"jr", "jnr", "sr", "snr", "ii", "iii", "iv", "phd", "md", "esq", "obe", "mbe"}
)
_NON_LETTER = re.compile(r"[^a-z ]+")


def clean_name(raw: str | None) -> str:
    """Lower case ASCII letters and single spaces: ' José  O'Brien-Smith ' -> 'jose obriensmith'."""
    if raw is None:
        return ""
    text = unidecode(str(raw)).lower().replace("-", "").replace("'", "").replace("\u2019", "")
    text = _NON_LETTER.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _strip_titles(tokens: list[str]) -> list[str]:
    while len(tokens) > 1 and tokens[0] in _TITLES:
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in _SUFFIXES:
        tokens = tokens[:-1]
    return tokens


def split_full_name(raw: str | None) -> tuple[str | None, str | None]:
    """(first, last) of a full name: 'Smith, John' / 'Mr J. Smith' / 'JOHN  SMITH'."""
    if raw is None or not str(raw).strip():
        return None, None
    text = str(raw)
    if "," in text:
        last_part, _, first_part = text.partition(",")
        first_tokens = _strip_titles(clean_name(first_part).split())
        last_tokens = clean_name(last_part).split()
        first = first_tokens[0] if first_tokens else None
        last = "".join(last_tokens) if last_tokens else None
        return first or None, last or None
    tokens = _strip_titles(clean_name(text).split())
    if not tokens:
        return None, None
    if len(tokens) == 1:
        return None, tokens[0]
    return tokens[0], tokens[-1]


def first_name_key(raw: str | None) -> str | None:
    """The cleaned first given name (title and middle names dropped), or None."""
    tokens = _strip_titles(clean_name(raw).split())
    return tokens[0] if tokens else None


def last_name_key(raw: str | None) -> str | None:
    tokens = clean_name(raw).split()
    return "".join(tokens) if tokens else None


@lru_cache(maxsize=1)
def nickname_groups() -> dict[str, frozenset[str]]:
    """name -> the formal names whose group it belongs to (a name may be in several)."""
    groups: dict[str, set[str]] = {}
    with (
        resources.files("panorama.identity")
        .joinpath("data/nicknames.csv")
        .open(encoding="utf-8") as f
    ):
        for row in csv.DictReader(f):
            formal = clean_name(row["group"])
            for name in [formal, *(clean_name(n) for n in row["names"].split())]:
                groups.setdefault(name.replace(" ", ""), set()).add(formal)
    return {k: frozenset(v) for k, v in groups.items()}


def canonical_first_name(name: str | None) -> str | None:
    """The formal name a (cleaned) first name stands for: 'bob' -> 'robert'. Ambiguous
    nicknames ('chris', 'sam') map to the alphabetically first formal name."""
    if not name:
        return None
    group = nickname_groups().get(name)
    if not group:
        return name
    if name in group:
        return name
    return min(group)


@lru_cache(maxsize=65536)
def first_names_compatible(a: str, b: str) -> bool:
    """Could two cleaned first names belong to one person? Equal, an initial of the other,
    nicknames of one formal name, a short form of the other, or one typo apart."""
    if a == b:
        return True
    if len(a) == 1 or len(b) == 1:
        return a[0] == b[0]
    groups = nickname_groups()
    ga = groups.get(a, frozenset()) | {a}
    gb = groups.get(b, frozenset()) | {b}
    if ga & gb:
        return True
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if (
        3 <= len(short) <= 5
        and len(long_) > len(short)
        and (long_.startswith(short) or long_.endswith(short))
    ):
        return True  # short forms: 'sam' / 'samuel', 'dan' / 'daniel', 'shell' / 'michelle'
    if min(len(a), len(b)) >= 4 and damerau_levenshtein(a, b) == 1:
        if len(a) == len(b) and sorted(a) == sorted(b):
            return True  # adjacent letters swapped: 'jonh' / 'john'
        return min(len(a), len(b)) >= 6  # one letter dropped / doubled / wrong in a long name
    return False


def dates_compatible(a: str, b: str) -> bool:
    """Two ISO dates of birth of one person: equal, day and month swapped, or one typo (a
    digit wrong or two adjacent digits swapped)."""
    if a == b:
        return True
    if len(a) != 10 or len(b) != 10:
        return False
    if a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]:
        return True
    return _dl1(a, b)


# --------------------------------------------------------------------------------------
# dates and postcodes

_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")
_SLASH_DATE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def normalize_date(raw: str | None, region: str = "GB") -> str | None:
    """An ISO date 'YYYY-MM-DD' from ISO, 'YYYYMMDD' or 'dd/mm/yyyy' ('mm/dd/yyyy' in the US);
    None when not a real date."""
    if raw is None:
        return None
    text = str(raw).strip()
    y = m = d = None
    if match := _ISO_DATE.match(text) or _COMPACT.match(text):
        y, m, d = (int(g) for g in match.groups())
    elif match := _SLASH_DATE.match(text):
        first, second, y = (int(g) for g in match.groups())
        d, m = (second, first) if region == "US" else (first, second)
        if m > 12 >= d:
            d, m = m, d
    if y is None:
        return None
    try:
        return date(y, m, d).isoformat()
    except ValueError:
        return None


_UK_POSTCODE = re.compile(r"^[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}$")


def normalize_postcode(raw: str | None, region: str = "GB") -> str | None:
    """Upper case without spaces, then in the country's written form: 'm145rt' -> 'M14 5RT'."""
    if raw is None:
        return None
    text = re.sub(r"[^A-Za-z0-9]", "", unidecode(str(raw))).upper()
    if not text:
        return None
    if region in ("GB", "GG", "JE", "IM") and _UK_POSTCODE.match(text):
        return f"{text[:-3]} {text[-3:]}"
    return text


def normalize_address(raw: str | None) -> str | None:
    """Lower case ASCII words: 'Flat 2, 22 Green Crescent' -> 'flat 2 22 green crescent'."""
    if raw is None:
        return None
    text = re.sub(r"[^a-z0-9 ]+", " ", unidecode(str(raw)).lower())
    text = _SPACES.sub(" ", text).strip()
    return text or None
