"""Fast tests of the synthesis stage's rules (structural extractors and the English-only sentence
rules) and its settings (fake search, no real models); the filters are in test_filters.py, the
split in test_split.py, the teacher-driven generators and `synthesize` in test_generators.py."""

from __future__ import annotations

import pytest
from synthesis_data import chunk, pair

from finetune.filters import filter_pairs, grounding
from finetune.question_context import chunk_context, document_name
from finetune.rule_questions import questions_from_chunk as structural_questions
from finetune.rule_questions import rule_pairs as structural_pairs
from finetune.synthesis_config import SynthesisConfig
from finetune.text import text_units


def questions_from_chunk(*args, **kwargs):
    """The structural extractors with the English sentence rules (synthesis.english_rules)."""
    return structural_questions(*args, sentences=True, **kwargs)


def rule_pairs(*args, **kwargs):
    return structural_pairs(*args, sentences=True, **kwargs)


# --- rule-written questions ----------------------------------------------------------------

RULE_CASES = [
    # (text, section, source, expected question)
    (
        "The R-24A rotor must be retired after 9,000 runs or 7 years, whichever comes first.",
        "4.2 Rotor life",
        "manuals/merlin-mx30-manual.md",
        "For the MX30, after how many runs must the R-24A rotor be retired?",
    ),
    (
        "Warranty+ must be purchased within 120 days of delivery and extends the warranty.",
        None,
        "support/terms.md",
        "Within how many days of delivery must warranty+ be purchased?",
    ),
    (
        "The RMA number is valid for 14 days.",
        None,
        "support/returns.txt",
        "How long is the RMA number valid?",
    ),
    (
        "The RMA number expires after 14 days.",
        None,
        "support/returns.txt",
        "After how many days does the RMA number expire?",
    ),
    (
        "Full-time employees accrue 2.1 days of paid vacation for every calendar month worked.",
        None,
        "handbook/leave.md",
        "How many days of paid vacation do full-time employees accrue for every calendar month "
        "worked?",
    ),
    (
        "The per diem for a full travel day in another EU country is €58.",
        None,
        "handbook/travel.md",
        "What is the per diem for a full travel day in another EU country?",
    ),
    (
        "The lid seal should be replaced every two years.",
        None,
        "handbook/care.md",
        "How often should the lid seal be replaced?",
    ),
    (
        "OrlOS 4.0.0 was released on 12 March 2024.",
        None,
        "notes/release.md",
        "When was OrlOS 4.0.0 released?",
    ),
    (
        "The anonymous ethics hotline is called the Clearwater Line.",
        None,
        "handbook/conduct.md",
        "What is the anonymous ethics hotline called?",
    ),
    (
        "Error 217 means the lid lock failed.",
        "Errors",
        "support/codes.md",
        "What does error 217 mean?",
    ),
    (
        "| Parameter | Value |\n| --- | --- |\n| Maximum speed | 15,000 rpm |",
        "1.1 Technical data",
        "manuals/heron-hs400-manual.md",
        "What is the maximum speed of the HS400?",
    ),
    (
        "| Code | Meaning | What to do |\n| --- | --- | --- |\n| E-101 | Lid open | Close it. |",
        "Centrifuges",
        "support/codes.md",
        "What does error E-101 mean?",
    ),
    (
        "Products\n\nProduct | Warranty period\nCentrifuge rotors | 24 months",
        "Warranty periods",
        "support/warranty.md",
        "What is the warranty period for centrifuge rotors?",
    ),
    (
        "Core hours: 10:00 to 15:00",
        None,
        "handbook/remote.md",
        "What are the core hours?",
    ),
    (
        "How long does delivery take?\nInstruments ship within three weeks of order confirmation.",
        "Ordering",
        "support/faq.html",
        "How long does delivery take?",
    ),
    (
        "The Merlin MX-30 is a compact, non-refrigerated microcentrifuge for small tubes.",
        "Overview",
        "manuals/overview.md",
        "What is the Merlin MX-30?",
    ),
    (
        "The deck has nine positions in three rows.",
        None,
        "manuals/robot.md",
        "How many positions does the deck have in three rows?",
    ),
    (
        "The IT helpdesk can be reached on internal extension 4400 from any desk phone.",
        None,
        "handbook/it.md",
        "On which internal extension can the IT helpdesk be reached from any desk phone?",
    ),
    (
        "Rotor care\n\nRotors need cleaning after every spill and a check for cracks by eye.",
        "Rotor care",
        "manuals/merlin-mx30-manual.md",
        "What does the merlin MX30 manual say about rotor care?",
    ),
]


@pytest.mark.parametrize(("text", "section", "source", "expected"), RULE_CASES)
def test_rule_patterns_write_the_expected_question(text, section, source, expected):
    questions = [p.question for p in questions_from_chunk(chunk(text, source, section))]
    assert expected in questions


def test_rule_pairs_are_extractive_and_tagged():
    text = "The RMA number is valid for 14 days. If the item is late, the number expires."
    only, false_premise = questions_from_chunk(chunk(text))
    assert only.answer == "The RMA number is valid for 14 days."
    assert only.evidence == only.answer
    assert only.generator == "rules"
    assert grounding(only.answer, text) == 1.0
    assert false_premise.question == "Is the RMA number valid for 21 days?"
    assert false_premise.answer == f"No. {only.answer}"


@pytest.mark.parametrize(
    "text",
    [
        "Tubes placed opposite each other must not differ in weight by more than 0.3 g.",
        "If the lid cannot be opened, wait at least 3 minutes.",
        "Report damaged or wrong deliveries to the purchasing team within 2 working days.",
        "manual, and in particular the safety chapter, before operating the instrument.",
        "It limits the speed to 12,000 rpm.",
    ],
)
def test_rule_generator_leaves_awkward_sentences_alone(text):
    assert questions_from_chunk(chunk(text)) == []


def test_rule_generator_names_the_product_from_the_document():
    # Two sibling manuals share a sentence: the question must say which product it is about.
    text = "The rotor must be retired after 9,000 runs."
    mx30 = chunk("The Merlin MX-30 is small.\n\n" + text, "manuals/merlin-mx30-manual.pdf")
    questions = [p.question for p in rule_pairs([mx30]) if "retired" in p.question]
    assert questions == [
        "For the MX-30, after how many runs must the rotor be retired?",
        "For the MX-30, must the rotor be retired after 13,500 runs?",
    ]


def test_rule_generator_uses_a_named_section_for_it():
    text = "Enable Quiet Spin in the menu. It limits the speed to 12,000 rpm and brakes gently."
    (only,) = questions_from_chunk(chunk(text, section="3.3 Quiet Spin mode"))
    assert only.question == "To what value does Quiet Spin mode limit the speed?"


def test_rule_generator_is_deterministic_and_bounded():
    text = "\n".join(f"Item {n}: {n} widgets" for n in range(1, 9))
    chunks = [chunk(text, chunk_id=f"c{n}", position=n) for n in range(3)]
    first = rule_pairs(chunks, max_per_chunk=2)
    assert first == rule_pairs(chunks, max_per_chunk=2)
    assert [p.chunk_id for p in first] == ["c0", "c0", "c1", "c1", "c2", "c2"]


def test_text_units_join_wrapped_lines_and_keep_rows():
    text = "HEADING\nThe number is valid\nfor 14 days. Call us.\n\n| a | b |\nKey: value"
    units = [(unit.text, unit.kind) for unit in text_units(text)]
    assert units == [
        ("HEADING", "line"),
        ("The number is valid for 14 days.", "sentence"),
        ("Call us.", "sentence"),
        ("| a | b |", "row"),
        ("Key: value", "line"),
    ]


def test_synthesis_config_problems():
    assert SynthesisConfig().problems() == []
    bad = SynthesisConfig(
        teacher="none", rules=False, min_grounding=0, eval_fraction=1.0, max_pairs_per_chunk=0
    )
    text = "\n".join(bad.problems())
    for name in ("nothing writes questions", "min_grounding", "eval_fraction", "max_pairs_per"):
        assert name in text
    endpoint = SynthesisConfig(teacher="http://localhost:8000/v1")
    assert "teacher_model_name" in endpoint.problems()[0]


@pytest.mark.parametrize(
    ("sentence", "question", "label"),
    [
        (
            "The R-24A rotor is autoclavable at 121 degrees.",
            "Is the R-24A rotor autoclavable at 121 degrees?",
            "Yes",
        ),
        (
            "Noise was not reduced by the new lid in these tests.",
            "Was noise reduced by the new lid in these tests?",
            "No",
        ),
        (
            "The two rotor types did not differ in run time.",
            "Did the two rotor types differ in run time?",
            "No",
        ),
        (
            "There was no difference in survival between the groups.",
            "Was there any difference in survival between the groups?",
            "No",
        ),
        (
            "No complications were seen after the procedure in any patient.",
            "Were any complications seen after the procedure in any patient?",
            "No",
        ),
        (
            "All patients have been followed for at least two years.",
            "Have all patients been followed for at least two years?",
            "Yes",
        ),
    ],
)
def test_yes_no_questions_from_statements(sentence, question, label):
    from finetune.yes_no_questions import yes_no_question

    context = chunk_context(chunk(sentence), document_name("docs/notes.md", [sentence]))
    assert yes_no_question(sentence, context) == (question, f"{label}. {sentence}")


@pytest.mark.parametrize(
    "sentence",
    [
        "The groups had a reduced risk of progression over five years.",  # 'had' as main verb
        "The patient improved quickly and was discharged after three days.",  # no noun phrase
        "The plate is printed on the rear and is also shown on the screen.",  # two verbs
        "Survival was longer in group A, but costs were higher than in group B.",  # two clauses
        "The treatment may be effective in some of these elderly patients.",  # hedged
        "The patients did improve after the second cycle of treatment.",  # 'did' without 'not'
    ],
)
def test_no_yes_no_question_from_unsuitable_statements(sentence):
    from finetune.yes_no_questions import yes_no_question

    context = chunk_context(chunk(sentence), document_name("docs/notes.md", [sentence]))
    assert yes_no_question(sentence, context) is None


def test_a_sentence_with_a_number_also_gets_a_false_premise_question_answered_no():
    sentence = "The R-24A rotor must be retired after 9,000 runs of the centrifuge."
    text = f"Rotor limits\n\n{sentence}"
    pairs = questions_from_chunk(chunk(text, "manuals/rotor-guide.md", "Rotor limits"))
    assert [(p.question, p.answer) for p in pairs] == [
        ("After how many runs of the centrifuge must the R-24A rotor be retired?", sentence),
        ("Must the R-24A rotor be retired after 13,500 runs of the centrifuge?", f"No. {sentence}"),
    ]
    # Near-duplicate questions with different yes/no labels are both kept.
    yes = pair("Must the R-24A rotor be retired after 9,000 runs of the centrifuge?")
    yes.answer, yes.evidence, yes.kind = f"Yes. {sentence}", sentence, "yes"
    kept, _ = filter_pairs([yes, pairs[1]], {"c1": chunk(text)}, None, SynthesisConfig())
    assert len(kept) == 2


@pytest.mark.parametrize(
    ("sentence", "question", "expected"),
    [
        (
            "Torsion was suspected in 94% of cases.",
            "Was torsion suspected in 94% of cases?",
            "Was torsion suspected in 47% of cases?",
        ),
        (
            "Plans renew 30 days before the 45 day window.",
            "Do plans renew 30 days before the 45 day window?",
            "Do plans renew 30 days before the 67 day window?",
        ),  # 45 is in the sentence already
        (
            "It was released in 2023 by the ISO-9001 team.",
            "Was it released in 2023 by the ISO-9001 team?",
            None,
        ),  # a year and an identifier
        (
            f"Order {'7' * 40} ships within 4 days.",
            f"Does order {'7' * 40} ship within 4 days?",
            f"Does order {'7' * 40} ship within 6 days?",
        ),  # a 40-digit identifier: left alone (it overflowed a float before)
    ],
)
def test_false_number_questions(sentence, question, expected):
    from finetune.yes_no_questions import false_number_question

    result = false_number_question(sentence, question)
    assert (result[0] if result else None) == expected
    if result:
        assert result[1] == f"No. {sentence}"


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Delivery takes 5 working  days.", [("time", "working days", "5 working  days")]),
        ("It was built in 2024.", [("date", "", "2024")]),
        ("The FY2024 budget grew.", []),  # a year inside a token is not a date
        ("Call 12020 first.", []),
    ],
)
def test_targets_of_odd_spacing_and_years_inside_tokens(sentence, expected):
    from finetune.number_questions import targets

    # 'working  days' (two spaces) raised ValueError and stopped synthesis.
    found = [(t.kind, t.words, sentence[t.start : t.end]) for t in targets(sentence)]
    assert found == expected
