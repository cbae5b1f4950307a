"""Generate the synthetic sample dataset (deterministic; re-run to reproduce the CSVs exactly).

Why synthetic: examples, smoke tests and the quick-start must run offline without shipping real
abusive text. Sentences come from German-like templates; insults are mild and non-slur. Offensive
and neutral templates share words ("Du bist ein ...", city names, people) and ~8% of labels are
flipped plus a few ambiguous templates (negated insults), so a tiny model reaches roughly 0.8-0.95
F1 — enough to show learning, not a trivially separable toy.

    python -m hate_compress.data.sample.make_sample   # rewrites synthetic_{train,test}.csv here
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20180901
N_TRAIN, N_TEST = 400, 150
OFFENSE_SHARE = 0.36
NOISE = 0.08

SLOTS = {
    "insult": ["Dummkopf", "Idiot", "Versager", "Trottel", "Schwachkopf", "Depp", "Blödmann",
               "Hohlkopf", "Nichtsnutz", "Angeber", "Faulpelz", "Witzbold"],
    "insults": ["Dummköpfe", "Idioten", "Versager", "Trottel", "Deppen", "Angeber", "Nichtsnutze"],
    "name": ["Max", "Anna", "Lukas", "Sophie", "Herr Müller", "Frau Schmidt", "Jonas", "Lea",
             "der Nachbar", "die Trainerin", "der Kollege", "Onkel Paul"],
    "city": ["Berlin", "Hamburg", "München", "Köln", "Leipzig", "Bremen", "Dresden", "Kiel"],
    "topic": ["das Wetter", "den Verkehr", "die Bahn", "das neue Stadion", "den Markt",
              "die Schule", "das Fahrrad", "den Urlaub"],
    "adj": ["sonnig", "regnerisch", "windig", "kalt", "warm", "neblig", "angenehm", "grau"],
    "good": ["freundlich", "nett", "hilfsbereit", "lustig", "klug", "ruhig", "fleißig"],
    "role": ["Nachbar", "Koch", "Lehrer", "Fahrer", "Freund", "Spieler", "Gastgeber"],
}

OFFENSE = [
    "Du bist ein {insult}.",
    "{name} ist so ein {insult}, echt unglaublich.",
    "Halt endlich den Mund, du {insult}!",
    "Nur ein {insult} glaubt so einen Unsinn über {topic}.",
    "Was für ein {insult} ist {name} eigentlich?",
    "Die Leute aus {city} sind doch alle {insults}.",
    "{name}, du bist und bleibst ein {insult}.",
    "Schon wieder redet dieser {insult} über {topic}.",
    "Geh nach Hause, {insult}, keiner will dich in {city}.",
]

OTHER = [
    "Das Wetter in {city} ist heute {adj}.",
    "{name} hat gestern über {topic} gesprochen.",
    "Du bist ein guter {role}.",
    "Was für ein {good}er {role} ist {name}!",
    "Die Leute aus {city} sind sehr {good}.",
    "{name} ist {role} in {city} und sehr {good}.",
    "Morgen wird es in {city} wohl {adj}.",
    "Ich habe mit {name} über {topic} geredet.",
    "Schon wieder redet {name} über {topic}.",
]

# Neutral-labelled sentences that contain an insult word: they keep a bag-of-words model honest.
AMBIGUOUS_OTHER = [
    "Niemand hier ist ein {insult}, {name} ist {good}.",
    "Im Film über einen {insult} aus {city} war das Wetter {adj}.",
    "Das Wort {insult} sollte man über {name} nicht sagen.",
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(**{k: rng.choice(v) for k, v in SLOTS.items()})


def generate(n: int, rng: random.Random, seen: set[str]) -> list[tuple[str, str]]:
    """`n` unique (text, label) rows; `seen` is shared so train and test never overlap."""
    rows = []
    while len(rows) < n:
        r = rng.random()
        if r < OFFENSE_SHARE:
            text, label = _fill(rng.choice(OFFENSE), rng), "OFFENSE"
        elif r < OFFENSE_SHARE + 0.06:
            text, label = _fill(rng.choice(AMBIGUOUS_OTHER), rng), "OTHER"
        else:
            text, label = _fill(rng.choice(OTHER), rng), "OTHER"
        if text in seen:
            continue
        seen.add(text)
        if rng.random() < NOISE:
            label = "OTHER" if label == "OFFENSE" else "OFFENSE"
        rows.append((text, label))
    return rows


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)


HERE = Path(__file__).resolve().parent


def main(out_dir: Path = HERE) -> None:
    rng, seen = random.Random(SEED), set()
    write(out_dir / "synthetic_train.csv", generate(N_TRAIN, rng, seen))
    write(out_dir / "synthetic_test.csv", generate(N_TEST, rng, seen))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m hate_compress.data.sample.make_sample",
        description="Regenerate the synthetic sample (synthetic_train.csv, synthetic_test.csv) "
                    "deterministically, in place or into --out.")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: the package)")
    main(parser.parse_args().out)
