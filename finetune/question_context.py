"""What the rule-written questions know about a chunk beyond its text: the document's name and
product, the section topic, and which capitalized words are names (so 'Fixpoint' keeps its
capital inside a question while 'The' does not)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from finetune.text import STOPWORDS, word_set
from retrieval.documents import Chunk

# A product-like name in a heading: two letters at least, so 'P1' or 'E-217' is not a product.
_PRODUCT = re.compile(r"\b[A-Z][A-Za-z]{1,5}-?\d{1,5}[A-Za-z]?\b")
_CODE = re.compile(r"[A-Z]{1,5}-?\d[\w-]*")
_SECTION_NUMBER = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[A-Z]\.|[IVX]+\.)\s+")
DETERMINERS = word_set(
    "the a an this that these those each every all any your our its their his her"
)
# Words that name a kind of document: a title without one reads better with 'document' added.
_DOCUMENT_NOUNS = word_set(
    """manual guide policy handbook checklist terms notes overview faq changelog report
    agreement specification specifications datasheet quickstart instructions procedure
    conditions plan plans article paper abstract study"""
)
# Verbs that start instructions; with the words seen after a modal in the document itself they
# mark 'Report damaged deliveries ...' as an instruction, not a subject.
_IMPERATIVES = word_set(
    """use report register book keep let check make take send ask contact open close press set
    switch place remove insert wipe do add choose enter select click read write call request
    submit complete return attach include follow tell go avoid store clean turn put wait
    install lift lower fill load start stop run note see refer apply give bring find leave
    pay print review save sign update visit"""
)


def normalized(text: str) -> str:
    """Lowercase letters and digits only: 'MX-30' and 'mx30' compare equal."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def mentions(text: str, name: str) -> bool:
    """Whether `text` contains `name`, ignoring case, spaces and hyphens."""
    return normalized(name) in normalized(text)


@dataclass(frozen=True)
class DocumentName:
    """How questions name a document, and what its text shows about its words.

    Attributes:
        product: The identifier in the file name as the text spells it ('MX-30'), or None.
        title: The file name as words ('Merlin MX-30 manual'), or None for names that are not
            words (a PubMed id).
        names: Capitalized words the text uses as names (seen capitalized mid-sentence).
        verbs: Words the text uses as verbs (seen after 'must', 'can', 'you', ...).
        lists_codes: The text talks about error or fault codes.
    """

    product: str | None
    title: str | None
    names: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    lists_codes: bool = False


def _identifier_tokens(stem: str) -> list[tuple[str, str]]:
    """Letters and digits of each identifier in a name: 'merlin-mx30-manual' -> [('mx', '30')]."""
    words = [word for word in re.split(r"[-_\s.]+", stem.lower()) if word]
    found = []
    for position, word in enumerate(words):
        joined = re.fullmatch(r"([a-z]{1,5})(\d{1,5}[a-z]?)", word)
        if joined:
            found.append((joined.group(1), joined.group(2)))
        elif (
            re.fullmatch(r"[a-z]{1,4}", word)
            and position + 1 < len(words)
            and re.fullmatch(r"\d{1,5}[a-z]?", words[position + 1])
        ):
            found.append((word, words[position + 1]))
    return found


def _title(stem: str, corpus: str, product: str | None, names: frozenset[str]) -> str | None:
    words = [word for word in re.split(r"[-_\s]+", stem) if word]
    if not words or sum(any(char.isalpha() for char in word) for word in words) < len(words) / 2:
        return None
    # The text usually spells its own name: 'code-of-conduct' -> 'Code of Conduct'.
    spelled = re.search(r"[\s-]+".join(re.escape(word) for word in words), corpus, re.IGNORECASE)
    if spelled:
        title = re.sub(r"\s+", " ", spelled.group(0))
    else:
        title_words = []
        for word in words:
            if product and normalized(word) and normalized(word) in normalized(product):
                if not title_words or title_words[-1] != product:
                    title_words.append(product)
                continue
            capitalized = word[:1].upper() + word[1:]
            title_words.append(capitalized if capitalized in names else word.lower())
        title = " ".join(title_words)
    title = lower_first(title, names)
    if title.split()[-1].lower() not in _DOCUMENT_NOUNS:
        title += " document"
    return title


def document_name(source: str, texts: Iterable[str]) -> DocumentName:
    """Name a document from its file name, spelled as its own text (`texts`) spells it."""
    corpus = "\n".join(texts)
    names = frozenset(re.findall(r"[a-z,;(][ \t]+([A-Z][\w+-]*)", corpus))
    names = names - {word for word in names if word.lower() in STOPWORDS}
    verbs = frozenset(
        re.findall(
            r"\b(?:must|should|can|cannot|will|may|might|please|never|you|not)\s+([a-z]{3,})\b",
            corpus.lower(),
        )
    )
    stem = PurePosixPath(source).stem
    product = None
    for letters, digits in _identifier_tokens(stem):
        match = re.search(rf"\b{letters}[-\s]?{digits}\b", corpus, re.IGNORECASE)
        product = match.group(0) if match else f"{letters}{digits}".upper()
        break
    lists_codes = bool(re.search(r"\b(?:error|fault|alarm) codes?\b", corpus, re.IGNORECASE))
    title = _title(stem, corpus, product, names)
    return DocumentName(product, title, names, verbs, lists_codes)


def is_proper(word: str, names: frozenset[str]) -> bool:
    """Whether `word` is a name: all caps, with digits or inner capitals, or in `names`."""
    bare = word.strip("()\"'")
    if not bare or not bare[0].isupper():
        return False
    if any(char.isdigit() for char in bare) or any(char.isupper() for char in bare[1:]):
        return True
    return bare in names


def lower_first(phrase: str, names: frozenset[str]) -> str:
    """`phrase` with its first word lowercased, unless that word is a name."""
    words = phrase.split(" ", 1)
    if not words[0] or is_proper(words[0], names):
        return phrase
    rest = phrase.split()[1:]
    # The next content word decides: 'Quiet Spin mode', 'Code of Conduct' are names, 'Rotor
    # overview for Merlin centrifuges' is not.
    following = next((word for word in rest if word.lower() not in STOPWORDS), "")
    if following[:1].isupper() and words[0].lower() not in DETERMINERS:
        return phrase
    return " ".join([words[0].lower(), *words[1:]])


@dataclass(frozen=True)
class ChunkContext:
    """What questions about one chunk may use.

    Attributes:
        product: The product the chunk is about (from its section, else its document), or None.
        title: The document as a question names it, or None.
        topic: The section heading without its number, or None.
        about_errors: The chunk or its section talks about errors or faults.
        names: See `DocumentName.names`.
        verbs: See `DocumentName.verbs`.
    """

    product: str | None
    title: str | None
    topic: str | None
    about_errors: bool
    names: frozenset[str]
    verbs: frozenset[str]

    def lower_first(self, phrase: str) -> str:
        return lower_first(phrase, self.names)

    def is_proper(self, word: str) -> bool:
        return is_proper(word, self.names)

    def is_instruction(self, word: str) -> bool:
        """Whether a sentence starting with `word` is an instruction ('Report ...')."""
        return word.lower() in _IMPERATIVES or (
            word.lower() in self.verbs and word not in self.names
        )

    def with_product(self, question: str) -> str:
        """`question`, prefixed 'For the <product>, ' when it does not name the product."""
        if not self.product or mentions(question, self.product):
            return question
        return f"For the {self.product}, {question[0].lower()}{question[1:]}"


def chunk_context(chunk: Chunk, name: DocumentName) -> ChunkContext:
    """The context of `chunk` in the document named `name`."""
    topic = None
    product = name.product
    if chunk.section:
        topic = _SECTION_NUMBER.sub("", chunk.section).strip() or None
        in_section = _PRODUCT.search(chunk.section)
        if in_section and not _CODE.fullmatch(chunk.section.strip()):
            product = in_section.group(0)
    about_errors = name.lists_codes or bool(
        re.search(r"\b(error|fault|alarm)s?\b", f"{chunk.section}\n{chunk.text}", re.IGNORECASE)
    )
    return ChunkContext(product, name.title, topic, about_errors, name.names, name.verbs)
