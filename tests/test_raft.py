"""RAFT formatting: oracle among hard negatives, cited answers, oracle-free and closed-book
examples, all in the answer engine's own prompt."""

from dataclasses import replace

from finetune.config import RaftConfig
from finetune.pairs import UNANSWERABLE, QAPair
from finetune.raft import cited_answer, raft_examples
from retrieval.config import StyleConfig
from retrieval.prompt import NO_ANSWER, RAG_SYSTEM, parse_citations
from retrieval.search import Hit


def hit(chunk_id: str, text: str) -> Hit:
    return Hit(f"{chunk_id}.md", None, None, chunk_id, 0.5, text)


ORACLE = hit("oracle", "Setup. The MX-30 rotor is retired after 5000 runs. Clean it weekly.")
NEGATIVES = [
    hit("mx60", "The MX-60 rotor is retired after 8000 runs."),
    hit("heron", "The Heron rotor needs no retirement."),
    hit("plover", "Plover pipettes are calibrated yearly."),
]
PAIR = QAPair(
    question="After how many runs is the MX-30 rotor retired?",
    answer="The MX-30 rotor is retired after 5000 runs.",
    chunk_id="oracle",
    source="oracle.md",
    page=None,
    section=None,
    evidence="The MX-30 rotor is retired after 5000 runs.",
    generator="rules",
)


def search_many(questions, k):
    # The retriever's own hit of the oracle chunk: same chunk, its own score.
    retrieved = Hit(ORACLE.source, None, None, ORACLE.chunk_id, 0.9, ORACLE.text)
    return [[retrieved, *NEGATIVES][:k] for _ in questions]


def make(count: int, **config):
    pairs = [PAIR] * count
    return raft_examples(pairs, {"oracle": ORACLE}, search_many, 3, RaftConfig(**config))


def test_every_example_shows_the_oracle_among_distractors_and_cites_it():
    examples, report = make(20, without_oracle=0.0, closed_book=0.0, oracle_place="random")
    assert report.with_oracle == 20 and report.without_oracle == 0
    positions = set()
    for example in examples:
        system, user, answer = example.messages
        assert system["content"] == RAG_SYSTEM
        assert user["content"].count("<document ") == 3
        assert "mx60.md" in user["content"] and "oracle.md" in user["content"]
        _, cited, dropped = parse_citations(answer["content"], 3)
        assert dropped == 0 and len(cited) == 1
        documents = user["content"].split("<document ")[1:]
        assert "oracle.md" in documents[cited[0] - 1]
        positions.add(cited[0])
    assert len(positions) > 1  # the oracle is not always in the same slot


def test_the_oracle_can_be_where_the_retriever_ranks_it():
    first, _ = make(5, without_oracle=0.0, closed_book=0.0, oracle_place="retrieved")
    assert all(parse_citations(e.messages[-1]["content"], 3)[1] == [1] for e in first)

    def oracle_ranked_low(questions, k):
        return [[*NEGATIVES, ORACLE][:k] for _ in questions]

    pairs = [PAIR] * 5
    config = RaftConfig(without_oracle=0.0, closed_book=0.0, oracle_place="retrieved")
    low, _ = raft_examples(pairs, {"oracle": ORACLE}, oracle_ranked_low, 3, config)
    for example in low:
        documents = example.messages[1]["content"].split("<document ")[1:]
        assert "mx60.md" in documents[0] and "oracle.md" in documents[2]
        assert parse_citations(example.messages[-1]["content"], 3)[1] == [3]


def test_an_unknown_oracle_place_is_refused():
    assert "oracle_place" in RaftConfig(oracle_place="middle").problems()[0]


def test_without_the_oracle_the_target_is_the_refusal():
    examples, report = make(40, without_oracle=0.5, closed_book=0.0, seed=3)
    refusals = [e for e in examples if e.messages[-1]["content"] == NO_ANSWER]
    assert report.without_oracle == len(refusals)
    assert 10 <= len(refusals) <= 30
    for example in refusals:
        assert "oracle.md" not in example.messages[1]["content"]


def test_closed_book_examples_have_no_documents_and_no_citations():
    examples, report = make(40, without_oracle=0.0, closed_book=0.5, seed=1)
    closed = [e for e in examples if "<documents>" not in e.messages[1]["content"]]
    assert len(closed) == report.closed_book > 0
    assert all("[" not in e.messages[-1]["content"] for e in closed)
    assert report.examples == 40 + report.closed_book


def test_same_seed_same_examples():
    assert make(10, seed=7)[0] == make(10, seed=7)[0]


def test_cited_answer_puts_the_marker_before_the_final_stop():
    assert cited_answer("Two years.", [2]) == "Two years [2]."
    assert cited_answer("Two years", [1]) == "Two years [1]"


def test_a_style_refusal_is_the_target_of_oracle_free_and_unanswerable_examples():
    german = "Das habe ich in den Unterlagen leider nicht gefunden."
    style = StyleConfig(language="de", refusal=german)
    unanswerable = replace(PAIR, answer=NO_ANSWER, evidence="", kind=UNANSWERABLE)
    examples, report = raft_examples(
        [PAIR] * 20 + [unanswerable] * 5,
        {"oracle": ORACLE},
        search_many,
        3,
        RaftConfig(without_oracle=0.5, closed_book=0.0, seed=3),
        style,
    )
    targets = [e.messages[-1]["content"] for e in examples]
    assert targets.count(german) == report.without_oracle >= 5 and NO_ANSWER not in targets
    assert all(german in e.messages[0]["content"] for e in examples)  # the prompt says it too
