"""Turn a sentence that states a number, amount, duration or date into the question it answers,
by moving a wh-phrase in front of the verb:

    'The R-24A rotor must be retired after 9,000 runs.'
        -> 'After how many runs must the R-24A rotor be retired?'
    'The RMA number expires after 14 days.'  -> 'After how many days does the RMA number expire?'
    'The per diem is €58.'                   -> 'What is the per diem?'

No parser: the subject is the text before the first auxiliary ('must', 'is', ...) or before a
present-tense verb ('expires', given do-support). Sentences that do not fit these shapes, or
that are negated, are left alone rather than turned into odd questions.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from finetune.question_context import DETERMINERS, ChunkContext
from finetune.text import STOPWORDS, word_set

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
    "forty|fifty|sixty|seventy|eighty|ninety|hundred"
)
# A bare year is one not followed by a unit ('2024 runs', '2024mm'). It must start its token, so
# that the lookahead, which reads the rest of the token, runs once per token: started anywhere
# in '2020202020...' it read the rest of the run at every position (quadratic).
_YEAR = r"(?<![\w.,])(?:19|20)\d{2}(?![\w.,]*?[a-z]|[\w.,]*+\s*+[a-z%°])"
_DATE = re.compile(
    rf"(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:{_MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}})?"
    rf"|(?:{_MONTHS})\s+\d{{4}}|\d{{4}}-\d{{2}}-\d{{2}}|{_YEAR})"
)
_QUANTITY = re.compile(
    rf"(?<![\w.,/±~\u00d7-])(?P<currency>[€$£]\s?|(?:EUR|USD|GBP|CHF)\s)?"
    rf"(?P<number>{_NUMBER}(?![\w-])|(?:{_NUMBER_WORDS})\b)"
)
# 'extension 4400', 'internal extension 4400', 'version 2.5.3', 'form DC-7'.
_NAMED_NUMBER = re.compile(
    r"(?<![\w-])(?P<noun>(?:[a-z]{3,}\s+)?[a-z]{3,})\s+"
    r"(?P<code>\d+(?:\.\d+)+|\d{2,}|[A-Z]{1,5}-?\d[\w-]*)(?![\w-])"
)
# The patterns that read the words after a number are matched at its end (`match(text, pos)`),
# not on a copy of the rest of the sentence: one copy per number was quadratic in long text.
_CURRENCY_AFTER = re.compile(r"\s?(?:€|euros?|dollars?|pounds?|EUR|USD|GBP|CHF)\b")
_PERCENT = re.compile(r"\s?(?:%|percent\b|per cent\b)")
_TEMPERATURE = re.compile(r"\s?(?:°\s?[CF]\b|degrees(?: Celsius| Fahrenheit)?\b)")
_MEASURE_UNITS = {
    "x g": "relative centrifugal force",
    "rpm": "speed",
    "mL": "volume",
    "ml": "volume",
    "µL": "volume",
    "μL": "volume",  # the Greek mu, as some documents write microlitres
    "uL": "volume",
    "L": "volume",
    "mg": "weight",
    "kg": "weight",
    "g": "weight",
    "nm": "wavelength",
    "mm": "length",
    "cm": "length",
    "km": "distance",
    "m": "length",
    "V": "voltage",
    "W": "power",
    "kW": "power",
    "Hz": "frequency",
    "kHz": "frequency",
    "dB(A)": "noise level",
    "dB": "noise level",
    "bar": "pressure",
    "psi": "pressure",
    "kPa": "pressure",
    "GB": "size",
    "MB": "size",
    "TB": "size",
}
_MEASURE = re.compile(
    r"\s?(?P<unit>"
    + "|".join(re.escape(unit) for unit in sorted(_MEASURE_UNITS, key=len, reverse=True))
    + r")(?![\w(])"
)
_TIME_UNITS = word_set(
    """second seconds minute minutes min mins hour hours h day days week weeks month months year
    years"""
)
_PREPOSITIONS = (
    "for up to",
    "no later than",
    "at least",
    "at most",
    "up to",
    "more than",
    "less than",
    "after",
    "within",
    "for",
    "at",
    "every",
    "by",
    "to",
    "in",
    "on",
    "since",
    "until",
    "above",
    "below",
    "over",
    "under",
)
_AUX = word_set("must should can may might will shall could would is are was were has have had")
_COPULAS = word_set("is are was were")
_DURATION_VERBS = word_set("take takes took last lasts lasted need needs")
_NEGATIONS = word_set("not never no cannot nothing")
_AMOUNTS = word_set("time money percent temperature measure")
_CLAUSE_END = re.compile(
    r"[,;:(]|\s(?:and|or|but|which|whichever|so|because|unless|if|while|when|where|whereas)\s"
)
_PHRASE_PREPOSITIONS = word_set(
    "for in on at to from by with after before within during since until"
)
_NOT_NOUNS = word_set(
    """within about around approximately nearly almost than until since every above below over
    under after before during per plus minus times outside inside across along behind beyond
    near via without among instead"""
)
_NOT_VERBS = word_set(
    """its this thus plus always sometimes perhaps less unless was has does is as yes series
    news means various previous serious famous numerous afterwards towards"""
)
_SUBORDINATORS = word_set(
    """if when where while although though because before after once unless since as until for
    in on at during to with from by whether however so then also please"""
)
_CAPITALIZED_STOPWORDS = frozenset(word.capitalize() for word in STOPWORDS | DETERMINERS)
_PRONOUNS = word_set("it this that they these those he she we i there here one")
_ONE = word_set("one 1 a an")
_ORDINALS = word_set(
    """first second third fourth fifth last next only most least recent remaining other
    additional further total following previous"""
)
_PREDICATE_ADJECTIVES = word_set(
    "valid free open due able likely available responsible eligible entitled subject ready"
)


def _predicate_start(word: str) -> bool:
    """Whether `word` can open what follows 'is' in a turnable sentence: a participle, an
    adverb or a predicate adjective ('is valid for', 'was performed on', 'is usually ...')."""
    return (
        _is_participle(word)
        or word.endswith(("ly", "ble", "ent", "ant", "ive"))
        or word in _PREDICATE_ADJECTIVES
    )


_POSSESSION = {"has": "does", "have": "do", "had": "did"}
_IRREGULAR_PARTICIPLES = word_set(
    """been given taken made shown written done seen known become kept sent set put held paid
    built sold run begun chosen grown drawn found left brought bought thought told broken driven
    eaten fallen forgotten frozen hidden proven risen spoken stolen worn torn beaten"""
)


def _is_participle(word: str) -> bool:
    return word in _IRREGULAR_PARTICIPLES or word.endswith("ed")


@dataclass(frozen=True)
class Target:
    """What a question asks for: a span of the sentence and what it measures.

    Attributes:
        start: Where the span starts in the sentence.
        end: Where it ends.
        kind: 'date', 'money', 'percent', 'temperature', 'measure', 'time', 'count' or 'named'.
        words: The unit words of a count or time ('written quotes', 'days'), or the noun of a
            named number ('extension').
        dimension: What a measure measures ('speed').
    """

    start: int
    end: int
    kind: str
    words: str = ""
    dimension: str = ""


_UNIT_WORD = re.compile(r"\s+([a-z][a-z-]*)")


def _unit_words(text: str, pos: int) -> tuple[str, int]:
    """The lowercase noun phrase of up to three words at `pos` of `text` ('working days' in
    ' working days in advance'), stopping at a stopword; returns it and where it ends."""
    kept: list[str] = []
    end = pos
    while len(kept) < 3 and (match := _UNIT_WORD.match(text, end)):
        if match.group(1) in STOPWORDS:
            break
        kept.append(match.group(1))
        end = match.end()
    return " ".join(kept), end


def _classify(sentence: str, quantity: re.Match) -> Target | None:
    """What a number measures, from the words around it."""
    start, end = quantity.start(), quantity.end()
    extra = _CURRENCY_AFTER.match(sentence, end)
    if quantity.group("currency") or extra:
        return Target(start, extra.end() if extra else end, "money")
    for pattern, kind in ((_PERCENT, "percent"), (_TEMPERATURE, "temperature")):
        unit = pattern.match(sentence, end)
        if unit:
            return Target(start, unit.end(), kind)
    measure = _MEASURE.match(sentence, end)
    if measure:
        return Target(start, measure.end(), "measure", "", _MEASURE_UNITS[measure["unit"]])
    words, words_end = _unit_words(sentence, end)
    if not words or quantity.group("number").lower() in _ONE:
        return None  # 'one day' -> 'how many day' would be odd
    last = words.split()[-1]
    if last in _TIME_UNITS:
        plural = words if last.endswith("s") else f"{words}s"
        return Target(start, words_end, "time", plural)
    if not last.endswith("s"):
        return None
    return Target(start, words_end, "count", words)


def _overlap(first: Target, second: Target) -> bool:
    return first.start < second.end and second.start < first.end


class _Spans:
    """Targets that do not overlap each other, sorted by start: an overlap test in log time
    (comparing each new target with every earlier one was quadratic in numbers per sentence)."""

    def __init__(self, found: list[Target]) -> None:
        self.found = sorted(found, key=lambda target: target.start)
        self._starts = [target.start for target in self.found]

    def overlaps(self, target: Target) -> bool:
        # The last target starting before `target` ends has the latest end of those (no two
        # overlap), so it alone can reach into `target`.
        index = bisect.bisect_left(self._starts, target.end) - 1
        return index >= 0 and _overlap(target, self.found[index])


def _add_in_order(spans: _Spans, candidates: Iterable[Target]) -> _Spans:
    """`spans` plus each candidate (in order of start) that overlaps no target kept before it."""
    kept: list[Target] = []
    # A later candidate overlaps a kept one iff it starts before the furthest end kept so far.
    reach = 0
    for target in candidates:
        if target.start >= reach and not spans.overlaps(target):
            kept.append(target)
            reach = max(reach, target.end)
    return _Spans([*spans.found, *kept])


def targets(sentence: str) -> list[Target]:
    """The dates, amounts, durations, counts and numbered names of `sentence`, in order."""
    spans = _Spans([Target(m.start(), m.end(), "date") for m in _DATE.finditer(sentence)])
    quantities = (_classify(sentence, match) for match in _QUANTITY.finditer(sentence))
    spans = _add_in_order(spans, (target for target in quantities if target))
    return _add_in_order(spans, _named_numbers(sentence)).found


def _named_numbers(sentence: str) -> Iterator[Target]:
    """Numbers named by the noun before them, in order; kept only where no unit explains the
    number."""
    for match in _NAMED_NUMBER.finditer(sentence):
        noun = match.group("noun")
        head = noun.split()[-1]
        if head in STOPWORDS or head in _NOT_NOUNS or head.endswith(("ly", "ed", "ing")):
            continue
        if noun.split()[0] in STOPWORDS | _NOT_NOUNS:
            noun = head
        start = match.start("noun") + match.group("noun").index(noun)
        yield Target(start, match.end(), "named", words=noun)


def _wh_phrase(target: Target, preposition: str, duration: bool, middle: str) -> str | None:
    """'After how many runs', 'How long', 'When', ...; None when no natural phrase exists.

    Args:
        target: What the question asks for.
        preposition: The preposition in front of the target ('' for none).
        duration: The verb measures time ('takes 8 minutes', 'is valid for'): 'How long'.
        middle: The words between the verb and the target, to avoid 'limit the speed to what
            speed'.
    """
    kind, prep = target.kind, preposition
    if kind == "date":
        return {
            "": "When",
            "on": "When",
            "in": "When",
            "at": "When",
            "since": "Since when",
            "by": "By when",
            "until": "Until when",
            "no later than": "By when",
        }.get(prep)
    if kind in ("time", "count"):
        if prep == "every":
            return "How often"
        if kind == "time" and (prep in ("for", "for up to") or (not prep and duration)):
            return "How long"
        return f"{prep} how many {target.words}".strip()
    noun = {
        "money": "amount",
        "percent": "percentage",
        "temperature": "temperature",
        "measure": target.dimension,
        "named": target.words,
    }[kind]
    if kind == "money" and prep in ("", "for"):
        return "How much"
    if prep == "by" and kind in ("measure", "percent"):
        return "By how much"
    if noun in middle.lower().split():
        noun = "value"
    which = "which" if kind == "named" else "what"
    return f"{prep} {which} {noun}".strip()


_ENDS_WITH_PREPOSITION = {
    preposition: re.compile(rf"(?:^|\s){re.escape(preposition)}$", re.IGNORECASE)
    for preposition in _PREPOSITIONS
}


def _preposition_before(sentence: str, start: int) -> tuple[str, int]:
    """The preposition that ends right before `start`, and where it starts."""
    before = sentence[:start].rstrip()
    for preposition in _PREPOSITIONS:
        # Only the end of `before` can hold it: searching all of it, 22 times per number, was
        # quadratic in long text.
        if _ENDS_WITH_PREPOSITION[preposition].search(before[-len(preposition) - 1 :]):
            return preposition, len(before) - len(preposition)
    return "", len(before)


def _lemma(verb: str) -> str:
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if verb.endswith(("sses", "shes", "ches", "xes", "zzes", "oes")):
        return verb[:-2]
    return verb[:-1]


def _plural_verb(word: str) -> bool:
    """Whether `word` can be a present-tense verb after a plural subject ('accrue')."""
    return (
        bool(re.fullmatch(r"[a-z]{3,}", word))
        and word not in STOPWORDS
        and word not in _NOT_NOUNS
        and not word.endswith(("s", "ed", "ing", "ly"))
    )


def _opens_object(word: str, lemma: str, context: ChunkContext) -> bool:
    """Whether the word after a candidate verb looks like the start of its object or adverbial
    ('the', 'after', '8'), or the document uses the verb as one elsewhere."""
    bare = word.lower().strip(",.")
    return (
        bare in STOPWORDS
        or bare in DETERMINERS
        or bool(re.match(r"[\d€$£]", bare))
        or (bare.endswith("s") and not bare.endswith("ss"))  # a plural object: 'receives fixes'
        or lemma in context.verbs
    )


def _split_subject(head: str, context: ChunkContext) -> tuple[str, str, str] | None:
    """Cut the text before a target into (subject, auxiliary, middle):
    'The R-24A rotor must be retired' -> ('The R-24A rotor', 'must', 'be retired'); a sentence
    without an auxiliary gets do-support: 'The number expires' -> ('The number', 'does',
    'expire')."""
    words = head.split()
    if words and (words[0].lower() in _NUMBER_WORDS.split("|") or words[0][:1].isdigit()):
        return None  # 'Two rotors of ...': a subject that starts with a number
    for position, word in enumerate(words[:13]):
        if "," in word or ";" in word:
            return None
        if word.lower() in _AUX and position > 0:
            return " ".join(words[:position]), word.lower(), " ".join(words[position + 1 :])
    for position, word in enumerate(words[1:9], start=1):
        previous = words[position - 1].lower()
        if previous in ("and", "or") or "," in previous:
            return None  # 'Report damaged or wrong deliveries ...': no plain subject
        if not re.fullmatch(r"[a-z]{3,}", word):
            continue
        if previous in DETERMINERS or (previous in STOPWORDS and previous not in _PRONOUNS):
            continue
        if re.fullmatch(r"[\d.,]+", previous):
            continue
        middle = " ".join(words[position + 1 :])
        following = words[position + 1] if position + 1 < len(words) else ""
        singular = (
            word.endswith("s")
            and not word.endswith(("ss", "us", "is", "ous"))
            and word not in _NOT_VERBS
        )
        if singular and position <= 3 and _plural_verb(following):
            continue  # 'Full-time employees accrue': the -s word ends the subject
        if singular and (not following or _opens_object(following, _lemma(word), context)):
            return " ".join(words[:position]), "does", f"{_lemma(word)} {middle}".strip()
        plural_subject = (
            position <= 3
            and len(previous) >= 4
            and previous.endswith("s")
            and not previous.endswith("ss")
        )
        if plural_subject and _plural_verb(word):
            return " ".join(words[:position]), "do", f"{word} {middle}".strip()
    return None


def movable_subject(subject: str, context: ChunkContext) -> str | None:
    """The subject as it reads inside a question, or None for one that cannot be moved."""
    words = subject.split()
    if not 1 <= len(words) <= 12 or any(char in subject for char in ';:()"'):
        return None
    first = words[0].lower()
    if first in _SUBORDINATORS or not (words[0][0].isupper() or words[0][0].isdigit()):
        return None
    if re.fullmatch(r"[a-z]+ed", first):
        return None  # a fragment such as 'Based on severity scores ...' or 'Surveyed ...'
    if {"that", "which", "who", "whether", "if"} & {word.lower() for word in words}:
        return None  # a clause, not a noun phrase: 'Orlenby warrants that its products'
    if any(word in _CAPITALIZED_STOPWORDS for word in words[1:]):
        return None  # a heading run into the sentence: 'Support policy Each Connect version'
    if first in ("it", "this") and len(words) <= 2:
        # 'It limits the speed ...' under the heading 'Quiet Spin mode': name the heading.
        topic = context.topic
        if topic and any(context.is_proper(word) for word in topic.split()):
            return topic
        return None
    if first in _PRONOUNS:
        return None
    if first == "you":
        return "you"
    if len(words) > 1 and context.is_instruction(words[0]):
        return None  # 'Register trips outside the EU ...' is an instruction
    if any(target.kind in _AMOUNTS for target in targets(subject)):
        return None  # the question would carry an amount of its own
    return context.lower_first(subject)


def _tail(text: str, attachable: bool) -> tuple[str, str] | None:
    """Split the words after the target into (words joining the wh-phrase, words ending the
    question): 'of delivery and ...' -> ('of delivery', '')."""
    cut = _CLAUSE_END.search(text)
    words = (text[: cut.start()] if cut else text).split()
    extra: list[str] = []
    if words and words[0].lower() in ("of", "per", "a"):
        # 'within 120 days of delivery': 'of delivery' belongs to the wh-phrase.
        extra = [words[0]]
        for word in words[1:]:
            if word.lower() in _PHRASE_PREPOSITIONS:
                break
            extra.append(word)
        words = words[len(extra) :]
        if not attachable:
            extra = []  # 'by 31 March of that year': drop 'of that year'
    if words and re.fullmatch(r"[a-z]+(?:ed|ing)", words[0]):
        words = []  # 'on 23 fractures recorded over ...' describes the target: drop it
    while words and words[-1].lower() in STOPWORDS:
        words.pop()
    if len(words) > 10:
        return None
    return " ".join(extra), " ".join(words)


def question_about_number(sentence: str, context: ChunkContext) -> str | None:
    """The question `sentence` answers about its first number, amount, duration or date after
    the verb, or None when the sentence has no such shape."""
    body = sentence.rstrip(".!")
    for target in targets(body)[:4]:
        question = _question_around(body, target, context)
        if question:
            return question
    return None


def _question_around(body: str, target: Target, context: ChunkContext) -> str | None:
    preposition, prep_start = _preposition_before(body, target.start)
    split = _split_subject(body[:prep_start].strip(), context)
    if split is None:
        return None
    subject, aux, middle = split
    subject = movable_subject(subject, context)
    middle_words = middle.lower().split()
    if subject is None or len(middle_words) > 6 or any(c in middle for c in ",;:()"):
        return None
    if _NEGATIONS & set(middle_words) or (middle_words and middle_words[-1] in STOPWORDS):
        return None  # negated, or a preposition left hanging: 'is a microcentrifuge for tubes of'
    if aux in _COPULAS and middle_words and middle_words[0] in ("a", "an", "the"):
        return None
    if aux in _COPULAS and middle_words and not _predicate_start(middle_words[0]):
        return None  # 'were children of young age less than 2 years'
    if middle_words and middle_words[-1] in DETERMINERS | _ORDINALS:
        return None  # the target sits inside a noun phrase: 'plans your first two weeks'
    if aux in _POSSESSION and not (middle_words and _is_participle(middle_words[0])):
        # 'The deck has nine positions' -> 'How many positions does the deck have?'
        aux, middle = _POSSESSION[aux], f"have {middle}".strip()
    tail = _tail(body[target.end :], target.kind in ("count", "time", "money"))
    if tail is None:
        return None
    extra, rest = tail
    if _AUX & set(rest.lower().split()):
        return None  # the target sits in the subject: 'Gifts worth more than EUR 150 must ...'
    if aux in _COPULAS and not middle and not preposition:
        # 'The per diem is €58.' -> 'What is the per diem?'
        wh = {"time": "How long", "date": "When"}.get(target.kind, "What")
        if wh == "How long" and re.search(r"\bages?\b", subject):
            wh = "What"  # 'The mean age was 62 years.
        return f"{wh} {aux} {subject} {rest}"
    duration = bool(middle_words) and middle_words[0] in _DURATION_VERBS
    duration = duration or (aux in _COPULAS and not middle_words[1:])
    wh = _wh_phrase(target, preposition.lower(), duration, middle)
    if wh is None:
        return None
    if extra:
        if wh.startswith(("How long", "How often")):
            return None
        wh = f"{wh} {extra}"
    return f"{wh} {aux} {subject} {middle} {rest}"
