"""Pairs that no `corroborate` field agrees on are never scored: the blocking rules carry the
corroboration, so Splink scores fewer pairs and the links are exactly the same."""

from __future__ import annotations

import random

import pyarrow as pa

from panorama.config import SplinkSettings
from panorama.identity.matching import (
    BLOCKING_KEYS,
    _corroborated,
    _with_blocking_keys,
    predict,
    train,
)

FIRST = ["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david",
         "elizabeth", "william", "susan", "richard", "jessica", "joseph", "sarah", "thomas", "karen"]  # fmt: skip
LAST = ["smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies", "patel",
        "robinson", "wright", "thompson", "evans", "walker", "white", "roberts", "green", "hall"]  # fmt: skip
CITIES = ["leeds", "york", "bath", "derby", "hull"]


def _typo(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    return text[:i] + rng.choice("aeioustn") + text[i + 1 :]


def people(n: int = 700, seed: int = 3) -> pa.Table:
    """`n` people, a fifth of them twice (typos, a nickname-free second record, some fields
    missing), and twins: same surname, birth date and address, another first name."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        person = {
            "first_name": first, "last_name": last,
            "birth_date": f"{rng.randint(1950, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "postcode": f"LS{rng.randint(1, 30)} {rng.randint(1, 9)}{rng.choice('ABDEFG')}{rng.choice('HJLNPQ')}",
            "address": f"{rng.randint(1, 200)} {rng.choice(['high', 'mill', 'church'])} street",
            "city": rng.choice(CITIES), "email": f"{first}.{last}{i}@example.com",
            "phone": f"+4477009{i:05d}",
        }  # fmt: skip
        rows.append(person)
        if i % 5 == 0:
            again = dict(person, email=None if i % 2 else f"{first[0]}{last}{i}@mail.test")
            again["last_name"] = _typo(last, rng) if i % 3 == 0 else last
            again["phone"] = None
            if i % 10 == 0:
                again["postcode"], again["address"] = None, None
            rows.append(again)
        if i % 17 == 0:
            rows.append(dict(person, first_name=rng.choice(FIRST), email=None, phone=None))
    table = {k: [r[k] for r in rows] for k in rows[0]}
    table["first_canon"] = table["first_name"]
    table["email_local"] = [e.split("@")[0] if e else None for e in table["email"]]
    columns = {"unique_id": pa.array(range(len(rows)), pa.int64())}
    columns.update({k: pa.array(v, pa.string()) for k, v in table.items()})
    return _with_blocking_keys(pa.table(columns), BLOCKING_KEYS, 50)


def _links(table: pa.Table, settings: SplinkSettings, corroborated_only: bool):
    model = train(table, settings, corroborated_only=corroborated_only)
    try:
        scored = predict(model, 0.0).num_rows
        links = _corroborated(table, predict(model, settings.threshold), list(settings.corroborate))
    finally:
        model.con.close()
    got = {(a, b): round(p, 9) for a, b, p in zip(links.column("unique_id_l").to_pylist(),
           links.column("unique_id_r").to_pylist(), links.column("match_probability").to_pylist(), strict=True)}  # fmt: skip
    return scored, got


def test_corroborated_blocking_scores_fewer_pairs_with_the_same_links():
    table = people()
    settings = SplinkSettings(threshold=0.9, corroborate=["birth_date"])
    every_pair, links = _links(table, settings, corroborated_only=False)
    fewer, same = _links(table, settings, corroborated_only=True)
    assert len(links) > 50  # the duplicates are found
    assert same == links  # the same pairs with the same probabilities
    assert fewer < every_pair / 2, (fewer, every_pair)


def test_blocking_keys_drop_values_shared_by_too_many_and_incomplete_ones():
    table = pa.table({
        "unique_id": pa.array([0, 1, 2, 3, 4], pa.int64()),
        "last_name": ["smith", "smith", "smith", "jones", None],
        "postcode": ["LS1 1AA", "LS1 1AA", "LS2 2BB", "LS1 1AA", "LS1 1AA"],
    })  # fmt: skip
    keys = {"bk_last": ("last_name",), "bk_last_postcode": ("last_name", "postcode"), "bk_pc": ("postcode",)}
    out = _with_blocking_keys(table, keys, max_block=3).to_pydict()
    assert out["unique_id"] == [0, 1, 2, 3, 4]
    assert out["bk_last"] == ["smith"] * 3 + ["jones", None]  # 3 smiths: not more than 3
    assert out["bk_last_postcode"] == ["smith\x1fLS1 1AA"] * 2 + ["smith\x1fLS2 2BB", "jones\x1fLS1 1AA", None]
    assert out["bk_pc"] == [None, None, "LS2 2BB", None, None]  # LS1 1AA is shared by 4
