"""Generate the bundled demo caption corpus (seeded, reproducible) — and bigger ones for benchmarks.

    python engine/prompts/data/make_demo_captions.py            # writes demo_captions.jsonl (4,000 lines)
    python engine/prompts/data/make_demo_captions.py --n 100000 --out /tmp/c.jsonl

A realistic mix of web-caption styles: DreamFusion prompts (Apache-2.0, threestudio), "a DSLR
photo of …" prompts, alt text, product titles, plus scenes, people, actions, abstract text, spam,
text-rendering requests and a few blocklisted captions; ~10% are case/punctuation variants or
paraphrases of earlier captions so dedup has work to do.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).parent

NOUNS = ("chair armchair stool table desk lamp vase teapot mug cup bowl plate bottle jar kettle clock watch "
         "camera guitar violin drum trumpet piano radio telephone typewriter laptop keyboard headphones "
         "backpack handbag suitcase boot sneaker hat helmet crown ring necklace sword shield axe hammer "
         "bicycle motorcycle car truck bus tractor train airplane helicopter sailboat rocket robot "
         "teddy-bear doll figurine statue bust candle lantern birdhouse bench barrel chest basket "
         "apple pear banana pineapple strawberry cake cupcake donut croissant burger pizza sandwich "
         "cat dog puppy kitten fox owl parrot frog turtle rabbit horse elephant giraffe penguin lion "
         "dragon dinosaur unicorn mushroom cactus sunflower tulip bonsai pumpkin shell skull").split()
COLORS = "red blue green yellow orange purple pink black white brown golden silver teal".split()
MATERIALS = "wooden ceramic glass metal leather marble bronze plastic wicker knitted porcelain stone".split()
STYLES = ("low poly|vintage|steampunk|cartoon|origami|futuristic|antique|miniature|cute|retro|medieval|"
          "art deco|voxel|claymation").split("|")
FRAMES = ("a DSLR photo of {}|a zoomed out DSLR photo of {}|a photo of {}|{}|{}|{}|a 3D render of {}|"
          "close-up of {}|{}, isolated on white background|{} stock photo|an illustration of {}").split("|")
EXTRAS = ("|| with a wooden handle| on a small stand| with gold trim| covered in moss| made of candy|"
          " wearing a tiny hat| with a red ribbon| full of flowers| next to a small book").split("|")
BRANDS = "Acme Nordic Urban Classic Deluxe Pro Home Studio".split()
SCENES = ["a sunset over the {place}", "a beautiful view of the {place}", "a crowded {place} at noon",
          "the {place} at night", "aerial view of a {place}", "a foggy morning in the {place}",
          "a {thing} in the middle of the {place}", "a {thing} on the {place} at sunset"]
PLACES = "beach city forest mountains desert harbor village street park lake countryside market".split()
PEOPLE = ["a man holding a {thing}", "a woman with a {thing}", "a group of people around a {thing}",
          "portrait of a young girl", "an old man sitting on a bench", "two kids playing with a {thing}",
          "a chef cooking in a kitchen", "a crowd watching a concert", "a businessman on the phone",
          "a family having a picnic", "a bride holding a bouquet", "a soldier in uniform"]
ACTIONS = ["a dog running through a field", "a car racing down the highway", "a horse galloping on the beach",
           "an airplane flying over the clouds", "a surfer riding a big wave", "fireworks exploding in the sky",
           "a cat jumping off a {thing}", "a train crossing a bridge", "a bird flying over the sea",
           "a motorcycle speeding down the road", "dolphins jumping out of the water"]
ABSTRACT = ["love is all you need", "the meaning of life", "happiness", "a new beginning", "time flies",
            "Welcome to our website", "Thanks for watching", "how to improve your productivity",
            "the future of technology", "seamless floral pattern", "Top 10 tips for better sleep", "very nice"]
SPAM = ["Buy now! {n}% off all {thing}s", "FREE SHIPPING on orders over ${n}", "Click here to win a free {thing}",
        "Cheap {thing}s wholesale", "IMG_{n}.JPG", "DSC_{n}", "Follow us #{thing} #style #love",
        "Limited time offer: 2 {thing}s for ${n}", "Photo by Alex on Unsplash", "Call now 1-800-555-{n}",
        "Best prices on {thing}s, order now", "Use promo code SAVE{n} at checkout"]
TEXT = ["a neon sign that says {word}", "a t-shirt with the words \"{word}\"", "a poster with the text \"{word}\"",
        "a logo that reads {word}", "the word \"{word}\" written in gold letters", "a wooden sign saying \"{word}\""]
WORDS = "OPEN hello SALE welcome dream love home".split()
BLOCK = ["a bloody {thing}", "a naked woman", "nsfw drawing", "a corpse on the {place}"]
PARAPHRASE = [("a {c} {n}", "a {n} that is {c}"), ("a {m} {n}", "a {n} made of {m2}"),
              ("a cute {n}", "an adorable {n}"), ("an old {n}", "a vintage {n}")]
MAT_NOUN = {"wooden": "wood", "ceramic": "ceramic", "glass": "glass", "metal": "metal", "leather": "leather",
            "marble": "marble", "bronze": "bronze", "plastic": "plastic", "wicker": "wicker", "knitted": "yarn",
            "porcelain": "porcelain", "stone": "stone"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object(rng: random.Random) -> str:
    noun = rng.choice(NOUNS).replace("-", " ")
    mods = []
    if rng.random() < 0.5:
        mods.append(rng.choice(COLORS))
    if rng.random() < 0.4:
        mods.append(rng.choice(MATERIALS))
    if rng.random() < 0.25:
        mods.insert(0, rng.choice(STYLES))
    phrase = " ".join(mods + [noun]) + rng.choice(EXTRAS)
    phrase = f"{_article(phrase)} {phrase}"
    frame = rng.choice(FRAMES)
    if frame.startswith("{}") and not frame.startswith("{},"):
        return frame.format(phrase)
    return frame.format(phrase) if not frame.startswith("{}") else frame.format(phrase[0].upper() + phrase[1:])


def _product(rng: random.Random) -> str:
    noun = rng.choice(NOUNS).replace("-", " ").title()
    return (f"{rng.choice(BRANDS)} {rng.choice(MATERIALS).title()} {noun} "
            f"{rng.choice(['', 'Set of 2', '12 inch', 'Large', 'Handmade', rng.choice(COLORS).title()])}").strip()


def _fill(rng: random.Random, template: str) -> str:
    return template.format(thing=rng.choice(NOUNS).replace("-", " "), place=rng.choice(PLACES),
                           n=rng.randint(10, 9999), word=rng.choice(WORDS))


def _variant(rng: random.Random, caption: str) -> str:
    kind = rng.random()
    if kind < 0.35:
        return caption.upper() if len(caption) < 20 else caption.title()
    if kind < 0.7:
        return "  " + caption.replace(" ", "  ", 1) + rng.choice([".", "!", " .", "...", ""])
    return caption[0].upper() + caption[1:] + "."


def generate(n: int, seed: int = 0) -> Iterator[str]:
    """``n`` captions: ~55% object-like, ~35% not, ~10% variants/paraphrases of earlier ones."""
    rng = random.Random(seed)
    dreamfusion = json.loads((HERE / "dreamfusion_prompt_library.json").read_text())["dreamfusion"]
    earlier: list[str] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.10 and earlier:
            cap = _variant(rng, rng.choice(earlier))
        elif r < 0.13:
            c, noun = rng.choice(COLORS), rng.choice(NOUNS).replace("-", " ")
            m = rng.choice(MATERIALS)
            a, b = rng.choice(PARAPHRASE)
            cap = rng.choice([a, b]).format(c=c, n=noun, m=m, m2=MAT_NOUN[m])
            cap = f"{_article(cap[2:])}{cap[1:]}" if cap.startswith("a ") else cap
        elif r < 0.23:
            cap = rng.choice(dreamfusion).strip()
        elif r < 0.53:
            cap = _object(rng)
        elif r < 0.63:
            cap = _product(rng)
        elif r < 0.72:
            cap = _fill(rng, rng.choice(SCENES))
        elif r < 0.80:
            cap = _fill(rng, rng.choice(PEOPLE))
        elif r < 0.86:
            cap = _fill(rng, rng.choice(ACTIONS))
        elif r < 0.90:
            cap = rng.choice(ABSTRACT)
        elif r < 0.955:
            cap = _fill(rng, rng.choice(SPAM))
        elif r < 0.985:
            cap = _fill(rng, rng.choice(TEXT))
        else:
            cap = _fill(rng, rng.choice(BLOCK))
        earlier.append(cap)
        if len(earlier) > 5000:
            earlier.pop(rng.randrange(len(earlier)))
        yield cap


def write(path: Path, n: int, seed: int = 0) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for cap in generate(n, seed):
            fh.write(json.dumps({"caption": cap}, ensure_ascii=False) + "\n")
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "demo_captions.jsonl")
    args = ap.parse_args()
    print(write(args.out, args.n, args.seed))
