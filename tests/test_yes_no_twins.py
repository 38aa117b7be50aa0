"""Yes/no twins of kept pairs: a yes proposing the right fact and a no proposing another fact of
its shape, in the answer language; a twin's target must open with its label."""

from dataclasses import replace

import pytest

from finetune.data import Grounding
from finetune.generators.yes_no import false_fact, shifted_number, twin_pairs
from finetune.own_answers import accepted_answer
from finetune.pairs import QAPair
from finetune.synthesize import balance_labels
from retrieval.attribution import split_claims, verify_claims
from retrieval.config import StyleConfig
from retrieval.persona import verdicts
from retrieval.prompt import is_no_answer

SENTENCE = "The MX-30 rotor is retired after 5,000 runs."


def pair(question, answer, span="", kind="factoid", source="mx30.md", evidence=SENTENCE):
    return QAPair(question, answer, "c1", source, None, None, evidence, "teacher:t", kind, span)


PAIRS = [
    pair("MX-30: When is the rotor retired?", SENTENCE, "5,000 runs"),
    pair(
        "MX-60: When is the rotor retired?",
        "It is retired after 8,000 runs.",
        "8,000 runs",
        source="mx60.md",
        evidence="It is retired after 8,000 runs.",
    ),
    pair("MX-30: What is the weight?", "12 kg", kind="table", evidence="Weight | 12 kg"),
    pair("MX-30: What does the manual say about cleaning?", "Clean it weekly.", kind="heading"),
]


FILLER = [pair(f"MX-30: What is part {n}?", "It is blue.", kind="heading") for n in "abc"]


def test_each_eligible_pair_gets_a_yes_and_a_no_twin_with_a_false_fact_of_its_shape():
    twins = twin_pairs(PAIRS + FILLER, verdicts(None), share=0.999)
    assert [(t.kind, t.question) for t in twins] == [
        ("yes", "MX-30: When is the rotor retired? Is it 5,000 runs?"),
        ("no", "MX-30: When is the rotor retired? Is it 8,000 runs?"),
        ("yes", "MX-60: When is the rotor retired? Is it 8,000 runs?"),
        ("no", "MX-60: When is the rotor retired? Is it 5,000 runs?"),
        ("yes", "MX-30: What is the weight? Is it 12 kg?"),
        ("no", "MX-30: What is the weight? Is it 22 kg?"),  # no other fact of its shape
    ]
    assert twins[1].answer == f"No. {SENTENCE}" and twins[1].span == "no"
    assert twins[0].evidence == SENTENCE and twins[0].chunk_id == "c1"
    assert len(balance_labels(twins)) == len(twins)


def test_the_share_caps_the_twins_and_zero_writes_none():
    assert len(twin_pairs(PAIRS, verdicts(None), share=0.5)) == 2
    assert twin_pairs(PAIRS, verdicts(None), share=0) == []


def test_twins_speak_the_answer_language_and_unknown_languages_get_none():
    german = verdicts(StyleConfig(language="de"))
    (yes, no) = twin_pairs(PAIRS, german, share=0.5)
    assert yes.question.endswith("Ist es 5,000 runs?") and no.answer.startswith("Nein. ")
    assert yes.span == "ja"
    chinese = verdicts(StyleConfig(language="zh"))
    assert chinese.ask("转速是多少\uff1f", "12000转") == "转速是多少\uff1f是12000转吗\uff1f"
    assert verdicts(StyleConfig(language="xx")) is None


def test_a_false_fact_is_never_one_the_evidence_holds():
    held = pair("Q?", SENTENCE, "5,000 runs", evidence=SENTENCE + " Not 8,000 runs.")
    shapes = {"0,000 runs": [("mx60.md", "8,000 runs")]}
    assert false_fact(held, "5,000 runs", shapes) == "6,000 runs"
    assert shifted_number("9 bar") == "1 bar" and shifted_number("weekly") == ""


@pytest.mark.parametrize(
    ("reply", "accepted"),
    [
        ("No, the MX-30 rotor is retired after 5000 runs [1].", True),
        ("Yes, the MX-30 rotor is retired after 5000 runs [1].", False),  # wrong label
        ("The MX-30 rotor is retired after 5000 runs, no more [1].", False),  # no label first
        ("No.", False),  # nothing supported
    ],
)
def test_a_twins_own_answer_must_open_with_its_label(reply, accepted):
    chunks = [SENTENCE.replace(",", "")]
    grounding = Grounding("Is it 8000 runs?", chunks, "no", [1], chunks[0], verdict=True)
    target, _ = accepted_answer(reply, grounding, verify_claims, is_no_answer)
    assert (target is not None) == accepted


def test_an_opening_verdict_is_a_claim_of_its_own_with_nothing_to_check():
    claims = split_claims("Yes, the rotor is retired after 5,000 runs [1].", verdict=True)
    assert claims == [("Yes,", []), ("the rotor is retired after 5,000 runs.", [1])]
    checked = verify_claims(claims, [SENTENCE])
    assert [c.supported for c in checked] == [None, True]
    assert replace(checked[0]).cited == []
