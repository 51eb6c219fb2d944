"""How real systems garble identities: email, phone, name and postcode variants.

Each function takes canonical values plus a per-row variant code and returns the text a
source would hold. Random choices come from arrays drawn by the caller's numpy Generator,
so the output is deterministic. Rows with code 0 are returned unchanged (vectorised); only
the varied rows go through Python.
"""

from __future__ import annotations

import numpy as np

from panorama.demo import vocab
from panorama.demo.util import sreplace

# email variant codes
E_SAME, E_CASE, E_SPACE, E_DOTS, E_PLUS, E_TYPO_LOCAL, E_TYPO_DOMAIN, E_GOOGLEMAIL, E_UPPER = range(9)
EMAIL_VARIANTS = ("same", "case", "whitespace", "gmail_dots", "plus_tag", "typo_local",
                  "typo_domain", "googlemail", "upper")

# phone styles
PHONE_STYLES = 8


def email_variants(emails: np.ndarray, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply variant `codes` (E_*) to canonical lower-case emails."""
    out = np.asarray(emails).astype(object)
    rows = np.flatnonzero((codes != E_SAME) & (out != ""))
    if len(rows) == 0:
        return out.astype(str)
    r1 = rng.random(len(rows))
    r2 = rng.integers(0, 1 << 30, len(rows))
    for k, i in enumerate(rows):
        out[i] = _email_variant(out[i], int(codes[i]), r1[k], int(r2[k]))
    return out.astype(str)


def _email_variant(email: str, code: int, r: float, n: int) -> str:
    local, _, domain = email.partition("@")
    if code == E_CASE:
        parts = local.split(".")
        local = ".".join(p[:1].upper() + p[1:] for p in parts)
        return f"{local}@{domain.capitalize() if r < 0.3 else domain}"
    if code == E_UPPER:
        return email.upper()
    if code == E_SPACE:
        return (" " + email) if r < 0.3 else (email + " ") if r < 0.8 else f"  {email} "
    if code == E_DOTS:
        if domain not in ("gmail.com", "googlemail.com"):
            return email if r < 0.5 else email.capitalize()
        if "." in local:
            return f"{local.replace('.', '')}@{domain}"
        if len(local) < 3:
            return email
        cut = 1 + n % (len(local) - 1)
        return f"{local[:cut]}.{local[cut:]}@{domain}"
    if code == E_PLUS:
        tags = ("shop", "orders", "retail", "newsletter", "promo", "2024")
        return f"{local}+{tags[n % len(tags)]}@{domain}"
    if code == E_TYPO_LOCAL:
        if len(local) < 3:
            return local + local[-1:] + "@" + domain
        pos = n % (len(local) - 1)
        while pos > 0 and not (local[pos].isalnum() and local[pos + 1].isalnum()):
            pos -= 1  # typos happen between letters, not around dots
        kind = n // 7 % 3
        if kind == 0:  # swap adjacent letters
            local = local[:pos] + local[pos + 1] + local[pos] + local[pos + 2:]
        elif kind == 1:  # drop a letter
            local = local[:pos] + local[pos + 1:]
        else:  # double a letter
            local = local[:pos] + local[pos] + local[pos:]
        return f"{local}@{domain}"
    if code == E_TYPO_DOMAIN:
        typos = vocab.DOMAIN_TYPOS.get(domain)
        if not typos:
            return f"{local}@{domain[:-1]}" if r < 0.5 else f"{local}@@{domain}".replace("@@", "@", 1 if r < 0.7 else 0)
        return f"{local}@{typos[n % len(typos)]}"
    if code == E_GOOGLEMAIL:
        if domain == "gmail.com":
            return f"{local}@googlemail.com"
        if domain == "googlemail.com":
            return f"{local}@gmail.com"
        return email
    return email


def random_email_codes(rng: np.random.Generator, n: int, p_variant: float,
                       weights: tuple[float, ...] = (0, 0.3, 0.12, 0.12, 0.1, 0.12, 0.1, 0.04, 0.1)) -> np.ndarray:
    """Variant codes: E_SAME with probability 1 - p_variant, else one of the others by weight."""
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    codes = rng.choice(len(w), size=n, p=w)
    return np.where(rng.random(n) < p_variant, codes, E_SAME)


def format_phones(nsn: np.ndarray, area_len: np.ndarray, styles: np.ndarray) -> np.ndarray:
    """National significant numbers (no leading 0) -> text in one of 8 common UK styles.

    style 0 '07700 900123' / '0161 496 0123'; 1 '07700900123'; 2 '+44 7700 900123';
    3 '+447700900123'; 4 '0044 7700-900123'; 5 '(07700) 900123'; 6 '+44 (0)7700 900123';
    7 '07700-900-123'.
    """
    out = np.empty(len(nsn), dtype=object)
    nsn_l = np.asarray(nsn).tolist()
    al = np.asarray(area_len).tolist()
    st = np.asarray(styles).tolist()
    for i, (num, a, s) in enumerate(zip(nsn_l, al, st, strict=True)):
        if not num:
            out[i] = ""
            continue
        area, rest = num[:a], num[a:]
        if len(rest) == 8:
            pretty = f"{rest[:4]} {rest[4:]}"
        elif len(rest) == 7:
            pretty = f"{rest[:3]} {rest[3:]}"
        else:
            pretty = rest
        if s == 0:
            out[i] = f"0{area} {pretty}"
        elif s == 1:
            out[i] = f"0{num}"
        elif s == 2:
            out[i] = f"+44 {area} {pretty}"
        elif s == 3:
            out[i] = f"+44{num}"
        elif s == 4:
            out[i] = f"0044 {area}-{rest}"
        elif s == 5:
            out[i] = f"(0{area}) {pretty}"
        elif s == 6:
            out[i] = f"+44 (0){area} {pretty}"
        else:
            out[i] = f"0{area}-{rest[:3]}-{rest[3:]}"
    return out.astype(str)


def phone_styles(rng: np.random.Generator, n: int, p=(0.34, 0.26, 0.12, 0.1, 0.04, 0.04, 0.05, 0.05)) -> np.ndarray:
    return rng.choice(PHONE_STYLES, size=n, p=np.asarray(p) / np.sum(p))


def nickname_of(first: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(nickname or the name itself, whether a nickname exists) per row."""
    out = np.asarray(first).astype(object)
    has = np.zeros(len(out), dtype=bool)
    r = rng.integers(0, 1 << 30, len(out))
    for i, name in enumerate(out.tolist()):
        nicks = vocab.NICKNAMES.get(name)
        if nicks:
            out[i] = nicks[r[i] % len(nicks)]
            has[i] = True
    return out.astype(str), has


# full-name styles
N_PLAIN, N_LAST_FIRST, N_UPPER, N_LOWER, N_INITIAL, N_TITLE, N_NICK, N_SPACES = range(8)


def full_names(first: np.ndarray, last: np.ndarray, titles: np.ndarray, styles: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """'First Last' in a given style: 'Last, First', 'FIRST LAST', 'j smith', 'Mr J Smith'..."""
    nick, has_nick = nickname_of(first, rng)
    out = np.empty(len(first), dtype=object)
    for i, (f, la, t, s, nk) in enumerate(zip(np.asarray(first).tolist(), np.asarray(last).tolist(),
                                             np.asarray(titles).tolist(), np.asarray(styles).tolist(),
                                             nick.tolist(), strict=True)):
        if s == N_LAST_FIRST:
            out[i] = f"{la}, {f}"
        elif s == N_UPPER:
            out[i] = f"{f} {la}".upper()
        elif s == N_LOWER:
            out[i] = f"{f} {la}".lower()
        elif s == N_INITIAL:
            out[i] = f"{f[:1]} {la}" if i % 2 else f"{f[:1]}. {la}"
        elif s == N_TITLE:
            out[i] = f"{t} {f[:1]} {la}" if i % 3 == 0 else f"{t} {f} {la}"
        elif s == N_NICK:
            out[i] = f"{nk} {la}"
        elif s == N_SPACES:
            out[i] = f" {f}  {la} "
        else:
            out[i] = f"{f} {la}"
    return out.astype(str)


def name_styles(rng: np.random.Generator, n: int,
                p=(0.62, 0.08, 0.07, 0.05, 0.05, 0.04, 0.06, 0.03)) -> np.ndarray:
    return rng.choice(8, size=n, p=np.asarray(p) / np.sum(p))


def postcode_variants(postcodes: np.ndarray, rng: np.random.Generator, p_variant: float) -> np.ndarray:
    """'M14 5RT' -> 'm14 5rt', 'M145RT', ' M14 5RT' for a share of rows."""
    pc = np.asarray(postcodes).astype(str)
    code = np.where(rng.random(len(pc)) < p_variant, rng.integers(1, 4, len(pc)), 0)
    out = pc.copy()
    out = np.where(code == 1, np.strings.lower(pc), out)
    out = np.where(code == 2, sreplace(pc, " ", ""), out)
    out = np.where(code == 3, np.strings.add(np.strings.lower(sreplace(pc, " ", "")), ""), out)
    return np.where(pc == "", "", out)


def name_typos(names: np.ndarray, rng: np.random.Generator, p) -> np.ndarray:
    """Swap two adjacent letters in a share `p` (scalar or per row) of the names: Jonh, Smtih."""
    out = np.asarray(names).astype(object)
    rows = np.flatnonzero((rng.random(len(out)) < p) & (np.strings.str_len(np.asarray(names).astype(str)) >= 4))
    pos = rng.integers(1, 1 << 20, len(rows))
    for k, i in enumerate(rows.tolist()):
        name = out[i]
        j = 1 + int(pos[k]) % (len(name) - 2)
        if name[j].isalpha() and name[j + 1].isalpha() and name[j] != name[j + 1]:
            out[i] = name[:j] + name[j + 1] + name[j] + name[j + 2:]
    return out.astype(str)


def case_variants(text: np.ndarray, rng: np.random.Generator, p_upper: float, p_lower: float) -> np.ndarray:
    t = np.asarray(text).astype(str)
    r = rng.random(len(t))
    return np.where(r < p_upper, np.strings.upper(t), np.where(r < p_upper + p_lower, np.strings.lower(t), t))
