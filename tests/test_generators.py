"""Fast tests of the data engine's generators (`finetune.generators`), the split and
`synthesize` itself, with fake teachers and fake search (the shared filters:
tests/test_filters.py; the teacher backends: tests/test_teacher.py)."""

from __future__ import annotations

import json

import pytest
from synthesis_data import chunk

from finetune.generators import answer_first, structural, triples
from finetune.generators.naming import document_labels, names_document, with_document
from finetune.generators.spans import CLAUSE, CODE, NAME, NUMBER, QUOTED, UnitWords, answer_span
from finetune.pairs import QAPair, read_pairs_jsonl, write_pairs_jsonl
from finetune.split import split_pairs, write_eval_questions
from finetune.synthesis_config import SynthesisConfig
from finetune.synthesize import balance_labels, synthesize
from retrieval.config import StyleConfig
from retrieval.persona import verdicts
from retrieval.prompt import NO_ANSWER


def pair(question, answer, chunk_id="c1", **extra) -> QAPair:
    fields = {"source": "docs/notes.md", "page": None, "section": None, "evidence": answer}
    fields.update({"generator": "teacher:fake", "kind": "factoid"} | extra)
    return QAPair(question=question, answer=answer, chunk_id=chunk_id, **fields)


# --- answer spans --------------------------------------------------------------------------

UNITS = UnitWords().add(["after 9,000 runs", "after 7,000 runs", "15,000 rpm or 12,000 rpm"])


@pytest.mark.parametrize(
    ("sentence", "text", "kind"),
    [
        ("The R-24A rotor must be retired after 9,000 runs or 7 years.", "9,000 runs", NUMBER),
        ("Net sales fell by $6.4 billion in the quarter.", "$6.4", NUMBER),
        ("Mortality was 12% in the early group.", "12%", NUMBER),
        ("Error codes are listed under the heading E-42 in the manual.", "E-42", CODE),
        ("The filing was made by AAPL for the quarter.", "AAPL", CODE),
        ("The mode is called “quiet spin” in the menus.", "quiet spin", QUOTED),
        ("Returns are handled by Northwind Traders on weekdays.", "Northwind Traders", NAME),
        ("The pilot reported that the engine lost power during the climb.", None, CLAUSE),
    ],
)
def test_answer_span_picks_the_answer_by_its_form(sentence, text, kind):
    span = answer_span(sentence, UNITS)
    assert span.kind == kind
    if text:
        assert span.text == text
    else:
        assert span.text in sentence and 3 <= len(span.text.split()) <= 10


def test_a_unit_is_a_word_that_mostly_follows_numbers():
    units = UnitWords().add(["12 runs in 3 days", "in the lab, 5 runs in 2 days", "in in in"])
    assert "runs" in units and "days" in units and "in" not in units


def test_answer_span_in_unspaced_text():
    units = UnitWords().add(["转速12000转\uff0c3000转后"])
    span = answer_span("最大转速为12000转\uff0c适用于常规离心。", units)
    assert span == answer_span("最大转速为12000转\uff0c适用于常规离心。", units)
    assert (span.text, span.kind) == ("12000转", NUMBER)


# --- document names ------------------------------------------------------------------------


def test_document_labels_keep_what_tells_documents_apart():
    chunks = [
        chunk("x", "filings/2022 Q3 AAPL.pdf", chunk_id="a"),
        chunk("x", "filings/2022 Q3 MSFT.pdf", chunk_id="b"),
        chunk("x", "papers/21645374.txt", "Early surgery in endocarditis", chunk_id="c"),
    ]
    labels = document_labels(chunks)
    assert labels["filings/2022 Q3 AAPL.pdf"] == "2022 Q3 AAPL"
    assert labels["papers/21645374.txt"] == "Early surgery in endocarditis"  # a number says nothing
    siblings = document_labels(
        [chunk("x", "merlin-mx30-manual.md", chunk_id="1"), chunk("x", "merlin-mx60-manual.md")]
    )
    assert siblings == {"merlin-mx30-manual.md": "mx30", "merlin-mx60-manual.md": "mx60"}


def test_a_question_names_its_document_once():
    assert (
        with_document("What were net sales?", "2022 Q3 AAPL")
        == "2022 Q3 AAPL: What were net sales?"
    )
    named = "What were AAPL's net sales in Q3?"
    assert with_document(named, "2022 Q3 AAPL") == named
    # 'Q3' alone is the third quarter of five companies: the whole label is needed.
    assert not names_document("What were net sales in Q3?", "2022 Q3 AAPL")
    assert names_document("How fast is the MX-30?", "mx30")
    assert with_document("Why?", "") == "Why?"


# --- answer-first generator ----------------------------------------------------------------


def _corpus():
    return [
        chunk(
            "The R-24A rotor must be retired after 9,000 runs. Clean the lid after 300 runs. "
            "Use only mild soap on the lid.",
            "merlin-mx30-manual.md",
            chunk_id="mx30-0",
        ),
        chunk(
            "The MX-30 spins at most 15,000 rpm in quiet mode.",
            "merlin-mx30-manual.md",
            chunk_id="mx30-1",
            position=1,
        ),
        chunk(
            "The R-24A rotor must be retired after 12,000 runs on this model.",
            "merlin-mx60-manual.md",
            chunk_id="mx60-0",
        ),
    ]


def test_choose_items_spreads_over_documents_and_prefers_numbers():
    items = answer_first.choose_items(_corpus(), budget=3, per_chunk=3)
    assert [item.chunk.source for item in items].count("merlin-mx60-manual.md") == 1
    assert items[0].span.kind == NUMBER and items[0].label == "mx30"
    assert answer_first.choose_items(_corpus(), 3, 3) == items  # deterministic
    assert len(answer_first.choose_items(_corpus(), budget=100, per_chunk=1)) == 3


@pytest.mark.parametrize(
    ("reply", "question"),
    [
        ("How many runs is the rotor good for?", "How many runs is the rotor good for?"),
        ("Question: How many runs? It lasts long.", "How many runs?"),
        ("**Q:** When does it expire?\nmore", "When does it expire?"),
        ("转子的寿命是多少次\uff1f还有", "转子的寿命是多少次\uff1f"),
        ("I cannot write a question.", None),
        ("", None),
    ],
)
def test_parse_question(reply, question):
    assert answer_first.parse_question(reply) == question


class FakeTeacher:
    name = "fake"

    def __init__(self, reply):
        self.reply = reply
        self.prompts = []

    def generate(self, prompts, samples=1, json_schema=None):
        self.prompts.extend(prompts)
        self.schema = json_schema
        return [[self.reply(prompt) for _ in range(samples)] for prompt in prompts]


def _question_for(prompt):
    request = prompt[-1]["content"]
    if "Answer: 9,000 runs" in request:
        return "After how many runs must the R-24A rotor be retired?"
    if "Answer: 12,000 runs" in request:
        return "After how many runs must the R-24A rotor be retired?"
    return "no idea"


def test_answer_first_writes_the_sentence_as_answer_and_keeps_the_span():
    teacher = FakeTeacher(_question_for)
    config = SynthesisConfig(teacher_questions=10, teacher_batch_size=2)
    pairs, unparsable = answer_first.generate(_corpus(), config, teacher)
    assert unparsable == len(teacher.prompts) - 2
    mx30, mx60 = sorted(pairs, key=lambda pair: pair.source)
    assert mx30.question == "mx30: After how many runs must the R-24A rotor be retired?"
    assert mx60.question.startswith("mx60: ")  # the twin question names its own manual
    assert mx30.answer == mx30.evidence == "The R-24A rotor must be retired after 9,000 runs."
    assert (mx30.span, mx30.kind, mx30.generator) == ("9,000 runs", "factoid", "teacher:fake")
    assert any("Answer: 9,000 runs" in prompt[-1]["content"] for prompt in teacher.prompts)


# --- triples generator ---------------------------------------------------------------------

TRIPLES = {
    "pairs": [
        {
            "type": "factoid",
            "question": "How long do MX-30 rotors last?",
            "answer": "9,000 runs",
            "evidence": "The R-24A rotor must be retired after 9,000 runs.",
        },
        {
            "type": "yes",
            "question": "Must the MX-30 rotor be retired after 9,000 runs?",
            "answer": "Yes, it must.",
            "evidence": "The R-24A rotor must be retired after 9,000 runs.",
        },
        {
            "type": "no",
            "question": "Can the MX-30 rotor run 20,000 times?",
            "answer": "Yes",
            "evidence": "The R-24A rotor must be retired after 9,000 runs.",
        },
        {
            "type": "unanswerable",
            "question": "What does an MX-30 rotor cost?",
            "answer": "",
            "evidence": "",
        },
        {"type": "essay", "question": "Discuss.", "answer": "", "evidence": ""},
        "not an object",
    ]
}


def test_parse_triples_validates_every_entry():
    parsed = triples.parse_triples("Here you go: " + json.dumps(TRIPLES) + " done")
    assert [entry["type"] for entry in parsed] == ["factoid", "yes", "no", "unanswerable"]
    assert triples.parse_triples("no json") is None
    assert triples.parse_triples('{"pairs": "x"}') is None
    assert triples.parse_triples('{"pairs": [') is None


def test_triples_become_typed_pairs_with_the_refusal_for_unanswerable():
    teacher = FakeTeacher(lambda prompt: json.dumps(TRIPLES))
    config = SynthesisConfig(teacher_questions=8, teacher_samples=2, teacher_style="triples")
    text = "The R-24A rotor must be retired after 9,000 runs. " + "Keep it clean. " * 10
    pairs, unparsable = triples.generate([chunk(text, "mx30.md")], config, teacher)
    assert unparsable == 0 and teacher.schema == triples.SCHEMA
    assert len(teacher.prompts) == 1  # one chunk, two samples of four questions
    by_kind = {p.kind: p for p in pairs}
    assert set(by_kind) == {"factoid", "yes", "unanswerable"}  # 'no' answered yes is dropped
    assert by_kind["yes"].answer == "Yes. The R-24A rotor must be retired after 9,000 runs."
    assert by_kind["unanswerable"].answer == NO_ANSWER and by_kind["unanswerable"].evidence == ""
    assert by_kind["factoid"].question == "How long do MX-30 rotors last?"  # names it already


def test_pick_chunks_spreads_across_documents():
    words = " ".join(["word"] * 30)
    chunks = [
        chunk(words, f"doc{d}.md", chunk_id=f"{d}-{n}", position=n)
        for d in range(3)
        for n in range(10)
    ]
    chunks.append(chunk("too short", "doc9.md", chunk_id="short"))
    picked = triples.pick_chunks(chunks, 7)
    assert [c.source for c in picked].count("doc0.md") == 3
    assert {c.source for c in picked} == {"doc0.md", "doc1.md", "doc2.md"}
    assert [c.chunk_id for c in picked[:3]] == ["0-1", "0-5", "0-8"]


def test_balance_labels_drops_the_excess_of_yes():
    yes = [pair(f"Is it true {n}?", "Yes. x", kind="yes") for n in range(3)]
    no = [pair("Is it false?", "No. x", kind="no")]
    other = [pair("What?", "x")]
    assert balance_labels([*yes, *other, *no]) == [yes[0], *other, *no]


# --- split and files -----------------------------------------------------------------------


def test_unanswerable_pairs_stay_in_train_and_eval_gold_is_the_span(tmp_path):
    pairs = [
        pair(
            f"Question {word} {n} about the rotor?",
            f"Answer sentence {n}.",
            chunk_id=f"c{n}",
            span=f"span {n}",
            kind="unanswerable" if n % 2 else "factoid",
        )
        for n, word in enumerate(
            [
                "alpha",
                "bravo",
                "charlie",
                "delta",
                "echo",
                "foxtrot",
                "golf",
                "hotel",
                "india",
                "juliet",
                "kilo",
                "lima",
                "mike",
                "november",
                "oscar",
                "papa",
                "quebec",
                "romeo",
                "sierra",
                "tango",
            ]
        )
    ]
    train, held = split_pairs(pairs, eval_fraction=0.5, max_eval=20)
    assert held and all(p.kind == "factoid" for p in held)
    assert sum(p.kind == "unanswerable" for p in train) == 10
    write_eval_questions(tmp_path / "eval.jsonl", held)
    first = json.loads((tmp_path / "eval.jsonl").read_text().splitlines()[0])
    assert first["answer"] == held[0].span


def test_pairs_without_kind_still_read(tmp_path):
    path = tmp_path / "pairs.jsonl"
    written = pair("What is it?", "It.", span="It")
    write_pairs_jsonl(path, [written])
    assert read_pairs_jsonl(path) == [written]
    old = {k: v for k, v in written.to_dict().items() if k not in ("kind", "span")}
    path.write_text(json.dumps(old) + "\n")
    assert read_pairs_jsonl(path)[0].kind == ""


# --- synthesize ----------------------------------------------------------------------------


def test_synthesize_runs_structural_and_teacher_then_filters():
    faq = chunk(
        "How long are loaners issued?\nLoaners are issued for five days.",
        "support/faq.md",
        chunk_id="faq",
    )
    chunks = [*_corpus(), faq]
    stages = []

    def search(questions, k):
        return [
            [c.chunk_id for c in chunks if "runs" in q and "runs" in c.text][:k] or ["faq"]
            for q in questions
        ]

    teacher = FakeTeacher(_question_for)
    config = SynthesisConfig(teacher_questions=10, teacher_batch_size=4)
    kept, report = synthesize(chunks, config, search, teacher, lambda *a: stages.append(a))
    assert report.generated_by["teacher:fake"] == 2
    assert {p.kind for p in kept} == {"faq", "factoid"}
    assert report.kept_by_kind["faq"] == 1
    assert (report.files, report.files_covered) == (3, 3)
    assert stages[0] == ("rules", 4, 4) and stages[-1][0] == "filter"
    # The English sentence rules are off by default: plain prose gives no rule pairs.
    prose = structural.generate([_corpus()[0]], SynthesisConfig())
    assert prose == []
    english = structural.generate([_corpus()[0]], SynthesisConfig(english_rules=True))
    assert english and {p.kind for p in english} <= {"sentence", "yes", "no"}


def test_synthesize_adds_balanced_yes_no_twins_in_the_answer_language():
    faq = chunk("How long are loaners issued?\nFor five days.", "support/faq.md", chunk_id="faq")
    chunks = [*_corpus(), faq]

    def search(questions, k):
        return [
            [c.chunk_id for c in chunks if "runs" in q and "runs" in c.text][:k] or ["faq"]
            for q in questions
        ]

    config = SynthesisConfig(teacher_questions=10, teacher_batch_size=4, yes_no_share=0.7)
    teacher = FakeTeacher(_question_for)
    plain, _ = synthesize(chunks, config, search, teacher)
    kept, report = synthesize(chunks, config, search, teacher, verdicts=verdicts(None))
    twins = [p for p in kept if p.kind in ("yes", "no")]
    assert kept[: len(plain)] == plain and twins == kept[len(plain) :]
    assert sorted(p.kind for p in twins) == ["no", "yes"]
    assert report.kept_by_kind["yes"] == report.kept_by_kind["no"] == 1
    assert sum(report.generated_by.values()) == report.generated
    german, _ = synthesize(
        chunks, config, search, teacher, verdicts=verdicts(StyleConfig(language="de"))
    )
    assert {p.answer.split(".")[0] for p in german if p.kind in ("yes", "no")} == {"Ja", "Nein"}
