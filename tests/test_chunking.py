from retrieval.chunking import (
    MAX_CHARS_PER_TOKEN,
    chunk_document,
    chunk_id,
    indexed_text,
    make_splitter,
)
from retrieval.documents import Chunk, LoadedDocument, TextBlock
from retrieval.prompt import PromptDocument, format_documents
from retrieval.titles import document_title, readable_name


def count_words(text: str) -> int:
    return len(text.split())


def long_document() -> LoadedDocument:
    paragraph = " ".join(f"word{i}." for i in range(60))
    return LoadedDocument(
        source="a/b.pdf",
        blocks=[
            TextBlock(paragraph, page=1, section="Intro"),
            TextBlock("Short second page.", page=2, section="Intro"),
            TextBlock(paragraph + "\n\n" + paragraph, page=3, section="Details"),
        ],
    )


def test_offsets_point_at_the_chunk_text():
    document = long_document()
    chunks = chunk_document(document, make_splitter(count_words, 20, 4))
    assert len(chunks) > 5
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_chunks_respect_the_token_budget_and_overlap():
    chunks = chunk_document(long_document(), make_splitter(count_words, 20, 4))
    assert all(count_words(c.text) <= 20 for c in chunks)
    first_page = [c for c in chunks if c.page == 1]
    # Consecutive chunks of one block share their boundary words.
    assert first_page[0].text.split()[-1] in first_page[1].text.split()[:6]


def test_chunks_never_straddle_pages_and_keep_sections():
    chunks = chunk_document(long_document(), make_splitter(count_words, 20, 4))
    assert {c.page for c in chunks} == {1, 2, 3}
    assert [c.text for c in chunks if c.page == 2] == ["Short second page."]
    assert {c.section for c in chunks if c.page == 3} == {"Details"}


def test_ids_are_stable_and_distinct():
    first = chunk_document(long_document(), make_splitter(count_words, 20, 4))
    second = chunk_document(long_document(), make_splitter(count_words, 20, 4))
    assert [c.chunk_id for c in first] == [c.chunk_id for c in second]
    assert len({c.chunk_id for c in first}) == len(first)
    assert chunk_id("x.md", 0, "t") != chunk_id("y.md", 0, "t")


def test_indexed_text_adds_the_section_once():
    chunks = chunk_document(
        LoadedDocument(
            "x.md",
            [
                TextBlock("# Warranty\n\nClaims within 30 days.", section="Warranty"),
                TextBlock("More claims text.", section="Warranty"),
            ],
        ),
        make_splitter(count_words, 50, 5),
    )
    assert indexed_text(chunks[0]) == chunks[0].text
    assert indexed_text(chunks[1]) == "Warranty\nMore claims text."


def test_the_embedded_tokenizer_counts_long_texts_in_full():
    """all-MiniLM's tokenizer.json pads and truncates to 128 tokens; counting must not."""
    from retrieval.embeddings import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder("embedded:all-MiniLM-L6-v2", "cpu")
    assert encoder.count_tokens("word " * 300) == 300
    assert encoder.count_tokens("hello world") == 2


def test_no_chunk_exceeds_the_character_cap_even_for_a_word_without_spaces():
    # The word counter (like a tokenizer's one unknown token) sees a 1 MB word as one token.
    word = "x" * 1_000_000
    document = LoadedDocument("w.txt", [TextBlock(f"Intro words here.\n\n{word}\n\nThe end.")])
    chunks = chunk_document(document, make_splitter(count_words, 20, 4))
    assert max(len(c.text) for c in chunks) <= 20 * MAX_CHARS_PER_TOKEN
    assert chunks[0].text == "Intro words here." and chunks[-1].text == "The end."
    pieces = [c.text for c in chunks if c.text.startswith("x")]
    assert sum(len(piece) for piece in pieces) >= len(word)  # cut, not cut off
    for chunk in chunks[::500]:
        assert document.text[chunk.start : chunk.end] == chunk.text


def test_a_long_run_of_blanks_inside_a_line_is_cut_too():
    document = LoadedDocument("b.txt", [TextBlock("a" + " \t" * 100_000 + "b")])
    chunks = chunk_document(document, make_splitter(count_words, 20, 4))
    assert [c.text for c in chunks] == ["a", "b"]


def test_a_title_is_the_file_name_made_readable_after_a_first_heading():
    assert readable_name("filings/2023 Q1 AAPL.pdf") == "2023 Q1 AAPL"
    assert readable_name("rotor_service__manual.md") == "rotor service manual"
    assert document_title("a/2023 Q1 AAPL.pdf", [TextBlock("Apple Inc.", page=1)]) == (
        "2023 Q1 AAPL"
    )
    blocks = [TextBlock("# MX-30 Rotor\n\nRetire it.", section="MX-30 Rotor")]
    assert document_title("manuals/mx30.md", blocks) == "MX-30 Rotor (mx30)"
    assert document_title("MX-30 Rotor.md", blocks) == "MX-30 Rotor"


def test_with_headers_a_chunk_is_indexed_under_its_title_section_and_page():
    chunk = Chunk("c", "f.pdf", "Net sales rose.", 0, 15, 14, "Item 2. MD&A", 3, "2023 Q1 AAPL")
    assert indexed_text(chunk) == "2023 Q1 AAPL | Item 2. MD&A | p. 14\nNet sales rose."
    assert indexed_text(chunk, headers=False) == "Item 2. MD&A\nNet sales rose."


def test_the_prompt_shows_the_title_of_each_document():
    shown = format_documents([PromptDocument("f.pdf", "Net sales rose.", 14, None, 'A "B"')])
    assert 'title="A &quot;B&quot;" page="14"' in shown


def test_a_chunk_of_table_rows_carries_the_table_header_to_the_index_and_the_prompt():
    header = "| Rotor | Retire after |\n| --- | --- |"
    rows = "\n".join(f"| R-{i} | {1000 * i} runs |" for i in range(1, 40))
    document = LoadedDocument("rotors.md", [TextBlock(f"Rotor limits.\n{header}\n{rows}")])
    chunks = chunk_document(document, make_splitter(count_words, 24, 0))
    assert chunks[0].text.startswith("Rotor limits.\n| Rotor |")
    assert chunks[0].table_header is None  # it holds the header itself
    later = chunks[1:]
    assert later and all(c.table_header == header for c in later)
    assert all(document.text[c.start : c.end] == c.text for c in chunks)
    assert indexed_text(later[-1], headers=False).startswith(header + "\n| R-")
    shown = format_documents([PromptDocument.of(later[-1])])
    assert f"{header}\n{later[-1].text}" in shown


def test_text_after_a_table_and_a_hostile_header_get_no_table_header():
    wide = "| " + "x" * 1000 + " |\n| --- |\n" + "| y |\n" * 200
    document = LoadedDocument("t.md", [TextBlock(wide + "After.\n| a |\n| b |")])
    chunks = chunk_document(document, make_splitter(count_words, 8, 0))
    assert all(c.table_header is None for c in chunks)
