"""Question/answer pairs written by rules, without a language model.

Real documents state most of their facts in a few shapes, and each shape has a natural question:

- an FAQ question followed by its answer: kept as written;
- a table row or a 'Key: value' line: 'What is the maximum speed of the MX-30?';
- an error-code row: 'What does error E-42 mean?';
- otherwise, as a fallback, the section heading: 'What does the MX-30 manual say about rotor
  life?'.

With `sentences` (`synthesis.english_rules`, off by default) English sentences are rewritten
into questions too (`finetune.english_sentences`): grammar rules, for English text only.

Answers are extractive: the supporting sentence, or the value of a row. When a document's file
name carries a product-like identifier ('merlin-mx30-manual.pdf') or the section heading does
('MX-30 rotor care'), questions that do not name it are prefixed with it ('For the MX-30, ...'),
because manuals of sibling products share most of their sentences.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

from finetune.drafts import CODE, IDENTIFIER, Draft, code_question, finish
from finetune.english_sentences import sentence_drafts
from finetune.pairs import RULES, QAPair
from finetune.question_context import (
    DETERMINERS,
    ChunkContext,
    DocumentName,
    chunk_context,
    document_name,
    mentions,
    normalized,
)
from finetune.tables import (
    balanced,
    caption,
    groups_thousands,
    header_is_data,
    merged_label,
    page_number_column,
    value_count,
)
from finetune.text import (
    STOPWORDS,
    Unit,
    is_table_separator,
    table_cells,
    text_units,
    word_count,
    word_set,
)
from retrieval.documents import Chunk
from retrieval.text_units import UNSPACED_CHARS

_LABELS = word_set(
    """note notes warning caution tip important example step see source q a question answer
    fixes new changed fixed added removed summary"""
)
_GENERIC_HEADERS = word_set(
    """value values detail details description setting settings specification specifications
    data info information notes note"""
)
# Words that make a 'key' a clause rather than a noun phrase ('Days do not roll over: ...').
_WH_WORDS = word_set("who what when where which why how whom whose")
_CLAUSE_WORDS = word_set(
    """is are was were be been do does did not no must should can cannot may will would have
    has had use uses if when we you they it"""
)


def _sentence_answer(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


# (?<!\s): a match starts at the first blank of a run only; one starting at every blank read the
# rest of the run each time (quadratic on long blank runs).
_PARENTHETICAL = re.compile(r"(?<!\s)\s*\([^)]*\)")


def _strip_parenthetical(text: str) -> str:
    # No '(' after the last ')' can be closed; left out of the search, each of them would read
    # to the end of the text in vain (quadratic on '((((...').
    end = text.rfind(")") + 1
    return (_PARENTHETICAL.sub("", text[:end]) + text[end:]).strip()


def _generic(header: str) -> bool:
    return header.strip().lower() in _GENERIC_HEADERS


def _is_noun_phrase(key: str) -> bool:
    words = key.split()
    return (
        0 < len(words) <= 5
        and not any(char in key for char in ',|;"')
        and words[0].lower() not in _LABELS
        and len(IDENTIFIER.findall(key)) < 2
        and not (_CLAUSE_WORDS & {word.lower() for word in words})
        and not all(word.lower() in STOPWORDS for word in words)
        and words[0].lower() not in _WH_WORDS
        and words[-1].lower() not in STOPWORDS
        # an -s word inside the key is a verb more often than not: 'Printing uses queues'
        and not any(re.fullmatch(r"[a-z]+[^s]s", word) for word in words[:-1])
    )


def _is_plural(phrase: str) -> bool:
    """Whether the head noun of `phrase` is plural: 'rotor overview for centrifuges' -> no."""
    head = []
    for word in phrase.split():
        if word.lower() in STOPWORDS:
            break
        head.append(word)
    last = (head or phrase.split())[-1]
    return bool(re.fullmatch(r"\w*[a-z]s", last)) and not last.endswith("ss")


def _attribute_question(attribute: str, context: ChunkContext, header: str | None = None) -> str:
    attribute = context.lower_first(_strip_parenthetical(attribute))
    if header:
        # 'Product | Warranty period' row 'Centrifuge rotors | 24 months'.
        column = context.lower_first(header)
        verb = "are" if _is_plural(column) else "is"
        return context.with_product(f"What {verb} the {column} for {attribute}?")
    verb = "are" if _is_plural(attribute) else "is"
    article = "" if attribute.split()[0].lower() in DETERMINERS else "the "
    question = f"What {verb} {article}{attribute}"
    if context.product and not mentions(attribute, context.product):
        question += f" of the {context.product}"
    return question + "?"


def _looks_like_header(cells: list[str]) -> bool:
    return all(
        cell and cell[0].isupper() and len(cell.split()) <= 5 and not re.search(r"\d", cell)
        for cell in cells
    )


def _table_row(
    cells: list[str], header: list[str] | None, context: ChunkContext, grouped: bool = True
) -> Draft | None:
    """A row as 'what is the <column> for <label>?'. `grouped`: the text groups thousands with
    a separator (see `finetune.tables.value_count`)."""
    if len(cells) < 2 or not cells[0] or not cells[1]:
        return None
    key = cells[0]
    if caption(key) or caption(cells[1]) or value_count(cells[1], grouped) > 1:
        return None  # a caption '(Zip Code)'; merged columns '$ 2,771 $ 1,747' answer twice
    if merged_label(key):
        return None
    if not balanced(key) or not balanced(cells[1]):
        return None  # a cell cut where its text wrapped: 'incorporation or organization)'
    value = normalized(cells[1])
    if value and value in normalized(key):
        return None  # a row that repeats its label: a date header read as data
    evidence = " | ".join(cells)
    if CODE.fullmatch(key):
        answer = ". ".join(cell.rstrip(".") for cell in cells[1:] if cell) + "."
        if header and re.search(r"\b(code|error|fault)s?\b", header[0], re.IGNORECASE):
            context = replace(context, about_errors=True)
        return Draft(1, code_question(key, context), answer, evidence, "table")
    if not re.search(r"[A-Za-z]", key) or len(_strip_parenthetical(key).split()) > 6:
        return None
    if cells[1].strip().lower() in _GENERIC_HEADERS:
        return None  # a header row: 'Parameter | Value'
    column = header[1] if header and len(header) == 2 else None
    if column and (column.strip().lower() in _GENERIC_HEADERS or not _is_noun_phrase(column)):
        column = None
    if header and len(header) == 2 and column is None and not _generic(header[1]):
        return None  # 'Who', 'Approved by': a column that is not an attribute name
    if column is None and (len(cells) > 2 or not _is_noun_phrase(key) or re.search(r"\d", key)):
        return None  # without a header, only 'Attribute | value' rows are understood
    question = _attribute_question(key, context, column)
    return Draft(1, question, cells[1].rstrip("."), evidence, "table")


# 'Warranty: 2 years'; a key in a script written without spaces may end in a full-width
# colon (U+FF1A), which needs no blank after it.
_KEY_VALUE = re.compile(
    f"^(?P<key>[A-Z{UNSPACED_CHARS}][^:\uff1a]{{1,48}})(?::\\s+|\uff1a\\s*)(?P<value>\\S.*)$"
)
_QUESTION_MARKS = ("?", "\uff1f")  # and the full-width one of CJK text


def _key_value(unit: Unit, context: ChunkContext) -> Draft | None:
    match = _KEY_VALUE.match(unit.text)
    if unit.kind != "line" or not match or unit.text.endswith(_QUESTION_MARKS):
        return None
    key, value = match.group("key").strip(), match.group("value").strip()
    if word_count(value) > 25 or value.endswith((":", "\uff1a")) or caption(value):
        return None  # '(In millions)' under a heading is a caption, not a value
    if CODE.fullmatch(key):
        # 'E-42: Door open' explains a code; 'PL-8: the run log now ...' is a release note.
        if not value[0].isupper():
            return None
        return Draft(
            1, code_question(key, context), _sentence_answer(value), unit.text, "key_value"
        )
    if not _is_noun_phrase(key):
        return None
    return Draft(1, _attribute_question(key, context), value.rstrip("."), unit.text, "key_value")


def _faq(question: str, following: Sequence[Unit]) -> Draft | None:
    # word_count: a CJK character counts as a word, so an unspaced question has its length.
    if (
        not 3 <= word_count(question) <= 30
        or not following
        or following[0].text.endswith(_QUESTION_MARKS)
    ):
        return None
    if following[0].kind == "row":
        return None
    answer = following[0].text
    # 'Yes.' alone says little: take the sentence that explains it too.
    if word_count(answer) <= 3 and len(following) > 1 and following[1].kind != "row":
        answer = f"{answer} {following[1].text}"
    return Draft(0, question, answer, answer, "faq")


def _fallback(units: Sequence[Unit], context: ChunkContext) -> Draft | None:
    """'What does the <document> say about <section>?', answered by the first sentence under
    the section heading in the chunk."""
    topic = context.topic
    if not topic or not re.search(r"[A-Za-z]{3}", topic) or len(topic.split()) > 8:
        return None
    topic_words = {normalized(word) for word in topic.split()} - {""}
    if topic.lower() in _LABELS or not topic_words:
        return None  # 'Fixed', 'New': a label, not a subject
    if context.title:
        title_words = {normalized(word) for word in context.title.split()} - {"", "document"}
        if len(topic_words & title_words) >= max(1, len(title_words) / 2):
            return None  # the heading is the document's own title
    if context.product and mentions(topic, context.product):
        return None
    # Only right under its heading is a sentence known to be about the section.
    heading = next(
        (i for i, unit in enumerate(units) if normalized(unit.text).endswith(normalized(topic))),
        None,
    )
    if heading is None:
        return None
    first = next(
        (
            unit.text
            for unit in units[heading + 1 : heading + 3]
            if unit.kind != "row"
            and len(unit.text.split()) >= 8
            and unit.text.endswith(".")
            and unit.text[0].isupper()
        ),
        None,
    )
    if first is None:
        return None
    about = context.lower_first(topic)
    if context.title:
        question = f"What does the {context.title} say about {about}?"
    else:
        question = f"What is said about {about}?"
    return Draft(9, finish(question), first, first, "heading")


def _table_rows(units: Sequence[Unit], start: int) -> list[list[str]]:
    """The cells of each row of the table that starts at `units[start]`."""
    rows = []
    for unit in units[start:]:
        if unit.kind != "row":
            break
        if not is_table_separator(unit.text):
            rows.append(table_cells(unit.text))
    return rows


def _drafts(
    units: list[Unit], context: ChunkContext, sentences: bool, continued_header: str | None = None
) -> list[Draft]:
    drafts: list[Draft] = []
    header: list[str] | None = None
    contents = False  # the current table is a table of contents
    grouped = groups_thousands(" ".join(unit.text for unit in units))
    for position, unit in enumerate(units):
        # The next two units are all that a row or an FAQ reads; a copy of the whole rest for
        # every unit was quadratic in units per chunk.
        following = units[position + 1 : position + 3]
        draft = None
        if unit.kind == "row":
            if is_table_separator(unit.text):
                continue
            cells = table_cells(unit.text)
            starts_table = position == 0 or units[position - 1].kind != "row"
            if starts_table:
                header = None
                contents = page_number_column(_table_rows(units, position))
                if position == 0 and continued_header:
                    # The chunk begins inside a table: its header row is the chunk's own.
                    named = table_cells(continued_header.splitlines()[0])
                    header = None if header_is_data(named) else named
            if contents:
                continue
            if following and is_table_separator(following[0].text) and not header_is_data(cells):
                header = cells  # Markdown: the row above '| --- |' names the columns
                continue
            # docx and html tables have no separator: a first row without numbers names the
            # columns, unless the chunk starts with it (it may begin in the middle of a table).
            next_has_numbers = bool(
                following and following[0].kind == "row" and re.search(r"\d", following[0].text)
            )
            if starts_table and _looks_like_header(cells) and (position > 0 or next_has_numbers):
                header = cells
                continue
            draft = _table_row(cells, header, context, grouped)
        elif unit.text.endswith(_QUESTION_MARKS):
            draft = _faq(unit.text, following)
        else:
            draft = _key_value(unit, context)
            if draft is None and sentences:
                drafts.extend(sentence_drafts(unit.text, context))
        if draft:
            drafts.append(draft)
    return drafts


def questions_from_chunk(
    chunk: Chunk,
    max_per_chunk: int = 3,
    name: DocumentName | None = None,
    sentences: bool = False,
) -> list[QAPair]:
    """Write up to `max_per_chunk` question/answer pairs from one chunk, best patterns first.

    Args:
        chunk: The chunk to write questions about.
        max_per_chunk: The most pairs returned.
        name: How to name the chunk's document (see `document_name`); derived from the chunk
            alone when None.
        sentences: Also rewrite English sentences into questions (numbers, definitions,
            yes/no): grammar rules for English text only, off unless asked for.

    Returns:
        Pairs with generator 'rules', in a deterministic order; empty when no pattern fits.
    """
    name = name or document_name(chunk.source, [chunk.text])
    context = chunk_context(chunk, name)
    units = text_units(chunk.text)
    drafts = _drafts(units, context, sentences, chunk.table_header)
    if not drafts:
        fallback = _fallback(units, context)
        drafts = [fallback] if fallback else []
    chosen: list[Draft] = []
    seen: set[str] = set()
    for draft in sorted(drafts, key=lambda draft: draft.priority):  # stable: keeps text order
        key = draft.question.lower()
        if key in seen or not draft.answer.strip():
            continue
        seen.add(key)
        chosen.append(draft)
        if len(chosen) == max_per_chunk:
            break
    return [
        QAPair(
            question=draft.question,
            answer=draft.answer,
            chunk_id=chunk.chunk_id,
            source=chunk.source,
            page=chunk.page,
            section=chunk.section,
            evidence=draft.evidence,
            generator=RULES,
            kind=draft.kind,
        )
        for draft in chosen
    ]


def rule_pairs(
    chunks: Sequence[Chunk], max_per_chunk: int = 3, sentences: bool = False
) -> list[QAPair]:
    """Rule-written pairs for every chunk, in chunk order; documents are named from all of
    their chunks (see `finetune.question_context.document_name`). `sentences` adds the English
    sentence rules (see `questions_from_chunk`).

    An identifier that several file names share ('Q3' of '2022 Q3 AAPL' and '2023 Q3 NVDA') is
    not a product. A question a document's rules write twice with different answers ('What is
    the total?' of two tables) is ambiguous, and is dropped with all its copies."""
    texts: dict[str, list[str]] = defaultdict(list)
    for chunk in chunks:
        texts[chunk.source].append(chunk.text)
    names = {source: document_name(source, parts) for source, parts in texts.items()}
    products = Counter(normalized(name.product) for name in names.values() if name.product)
    for source, name in names.items():
        if name.product and products[normalized(name.product)] > 1:
            names[source] = replace(name, product=None)
    pairs: list[QAPair] = []
    for chunk in chunks:
        pairs.extend(questions_from_chunk(chunk, max_per_chunk, names[chunk.source], sentences))
    answers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for pair in pairs:
        answers[(pair.source, pair.question.lower())].add(pair.answer)
    return [pair for pair in pairs if len(answers[(pair.source, pair.question.lower())]) == 1]
