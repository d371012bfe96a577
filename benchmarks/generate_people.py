"""Deterministic sign-up records with a known share of duplicates, for dedup tests and benchmarks.

Each person (``entity_id``) signs up once; a share of the records are second sign-ups of an earlier
person, with the errors a web form and an app produce: typos and accents in names, e-mails in another
case or with dots and ``+tags`` (sometimes another address altogether), phones in another format, dates
of birth in another format or with a typo, missing fields. Names are built from syllables with a Zipf
distribution, so some are common (large blocks, term frequencies matter) and most are rare.

    python benchmarks/generate_people.py --rows 1000000 --duplicate-rate 0.1 --output /tmp/people_1m.csv

The truth is the ``entity_id`` column (not compared by dedup): two records are duplicates exactly when
their entity ids are equal.
"""

import argparse
import csv
import random
import sys

COLUMNS = [
    "rec_id",
    "given_name",
    "surname",
    "date_of_birth",
    "email",
    "phone",
    "postcode",
    "locality",
    "channel",
    "entity_id",
]
_ONSETS = [
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "ch",
    "sh",
    "th",
    "br",
    "tr",
    "st",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
_CODAS = ["", "", "n", "r", "s", "l", "m", "th", "ck", "ng", "rd", "x"]
_DOMAINS = ["mail.com", "post.net", "inbox.org", "fastmail.io", "web.de"]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)


def _pool(rng: random.Random, size: int, low: int, high: int) -> list[str]:
    seen, words = set(), []
    while len(words) < size:
        word = _word(rng, rng.randint(low, high))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _zipf_cumulative(size: int, exponent: float = 1.0) -> list[float]:
    total, cumulative = 0.0, []
    for rank in range(size):
        total += 1.0 / (rank + 1) ** exponent
        cumulative.append(total)
    return cumulative


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.random()
    if kind < 0.3:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind < 0.6:
        return text[:i] + text[i + 1 :]
    if kind < 0.8:
        return text[:i] + rng.choice("aeiourstn") + text[i:]
    return text[:i] + rng.choice("aeiourstn") + text[i + 1 :]


def _person(rng: random.Random, entity: int, given: list[str], surnames: list[str], gw, sw) -> dict:
    given_name = rng.choices(given, cum_weights=gw)[0]
    surname = rng.choices(surnames, cum_weights=sw)[0]
    year, month, day = rng.randint(1940, 2006), rng.randint(1, 12), rng.randint(1, 28)
    postcode = rng.randint(1000, 9999)
    return {
        "given_name": given_name.capitalize(),
        "surname": surname.capitalize(),
        "date_of_birth": f"{year:04d}-{month:02d}-{day:02d}",
        "email": f"{given_name}.{surname}{rng.randint(1, 999)}@{rng.choice(_DOMAINS)}",
        "phone": f"04{rng.randint(10000000, 99999999)}",
        "postcode": str(postcode),
        "locality": f"{_LOCALITIES[postcode % len(_LOCALITIES)]}",
        "channel": "web",
        "entity_id": f"p{entity}",
    }


_LOCALITIES = _pool(random.Random(7), 3000, 2, 3)


def _second_signup(rng: random.Random, person: dict) -> dict:
    record = dict(person, channel="app")
    if rng.random() < 0.25:
        record["given_name"] = _typo(rng, record["given_name"])
    if rng.random() < 0.2:
        record["surname"] = _typo(rng, record["surname"])
    roll = rng.random()
    local, domain = person["email"].split("@")
    if roll < 0.3:
        record["email"] = person["email"].upper() if rng.random() < 0.5 else person["email"].capitalize()
    elif roll < 0.5:
        record["email"] = f"{local.replace('.', '')}+app@{domain}"
    elif roll < 0.6:
        record["email"] = f"{_typo(rng, local)}@{domain}"
    elif roll < 0.68:
        record["email"] = f"{local}@{rng.choice(_DOMAINS)}"
    phone = person["phone"]
    roll = rng.random()
    if roll < 0.3:
        record["phone"] = f"+61 {phone[1:4]} {phone[4:7]} {phone[7:]}"
    elif roll < 0.4:
        record["phone"] = ""
    year, month, day = person["date_of_birth"].split("-")
    roll = rng.random()
    if roll < 0.3:
        record["date_of_birth"] = f"{day}/{month}/{year}"
    elif roll < 0.4:
        record["date_of_birth"] = f"{year}-{month}-{int(day) % 28 + 1:02d}"
    elif roll < 0.5:
        record["date_of_birth"] = ""
    if rng.random() < 0.1:
        record["postcode"] = ""
    return record


def generate(rows: int, duplicate_rate: float = 0.1, seed: int = 1):
    """Yields ``rows`` record dicts (``COLUMNS``), about ``duplicate_rate`` of them second sign-ups."""
    rng = random.Random(seed)
    names = random.Random(seed + 1)
    given = _pool(names, max(200, rows // 200), 1, 3)
    surnames = _pool(names, max(500, rows // 50), 1, 3)
    gw, sw = _zipf_cumulative(len(given)), _zipf_cumulative(len(surnames), 0.8)
    people: list[dict] = []
    for i in range(rows):
        if people and rng.random() < duplicate_rate:
            record = _second_signup(rng, rng.choice(people))
        else:
            record = _person(rng, len(people), given, surnames, gw, sw)
            people.append(record)
        yield {"rec_id": f"r{i:08d}", **record}


def true_pairs(records) -> set[tuple[str, str]]:
    """All (id_a, id_b) pairs, id_a < id_b, of records of the same entity."""
    by_entity: dict[str, list[str]] = {}
    for record in records:
        by_entity.setdefault(record["entity_id"], []).append(record["rec_id"])
    pairs = set()
    for ids in by_entity.values():
        ids.sort()
        pairs.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    return pairs


def write_csv(path: str, records) -> int:
    """Writes records with a header; returns how many."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(record)
            count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--duplicate-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    count = write_csv(args.output, generate(args.rows, args.duplicate_rate, args.seed))
    print(f"{count} records -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
