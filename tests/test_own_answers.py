"""RAFT targets in the model's own words: an answer replaces the target only when it holds the
key fact, its unsupported sentences are left out and one cites the evidence; a miss is asked
again with the oracle chunk alone and trained on the full prompt; examples without a grounding
keep their share."""

from finetune.data import ChatExample, Grounding
from finetune.own_answers import accepted_answer, own_answer_targets, with_hint
from retrieval.attribution import verify_claims
from retrieval.prompt import NO_ANSWER, is_no_answer

CHUNKS = [
    "The MX-60 rotor is retired after 8000 runs.",
    "Setup. The MX-30 rotor is retired after 5000 runs. Clean it weekly.",
    "Plover pipettes are calibrated yearly.",
]
PROMPT = [
    {"role": "system", "content": "Answer from the documents."},
    {
        "role": "user",
        "content": "<documents>...</documents>\n\nQuestion: When is the MX-30 retired?",
    },
]
FOCUSED = [PROMPT[0], {"role": "user", "content": "<documents>oracle</documents>\n\nQuestion: ?"}]
EVIDENCE = "The MX-30 rotor is retired after 5000 runs."
QUESTION = "When is the MX-30 retired?"
GROUNDING = Grounding(QUESTION, CHUNKS, "5000 runs", [2], EVIDENCE, FOCUSED)


def verify(claims, chunks):
    return verify_claims(claims, chunks)


def accept(reply: str):
    return accepted_answer(reply, GROUNDING, verify, is_no_answer)


def example(target="The MX-30 rotor is retired after 5000 runs [2].", grounding=GROUNDING):
    return ChatExample([*PROMPT, {"role": "assistant", "content": target}], grounding=grounding)


def test_a_right_supported_answer_becomes_the_target_with_its_verified_marker():
    target, reason = accept("The MX-30 rotor is retired after 5000 runs.")
    assert reason == "ok"
    assert target == "The MX-30 rotor is retired after 5000 runs [2]."


def test_a_wrong_marker_is_moved_to_the_chunk_that_supports_the_sentence():
    target, _ = accept("The MX-30 rotor is retired after 5000 runs [1].")
    assert target == "The MX-30 rotor is retired after 5000 runs [2]."


def test_answers_that_are_wrong_unsupported_refused_or_unfinished_are_refused():
    assert accept("The MX-60 rotor is retired after 8000 runs.") == (None, "key fact missing")
    assert accept("The MX-30 rotor lasts 5000 runs and glows blue at night.")[1] == "unsupported"
    assert accept(NO_ANSWER) == (None, "refused")
    assert accept("") == (None, "empty")
    assert accept("The MX-30 rotor is retired after") == (None, "unfinished")


def test_a_sentence_cut_by_the_token_limit_is_left_out():
    target, reason = accept("The MX-30 rotor is retired after 5000 runs. Clean it weekly and")
    assert reason == "ok" and target == "The MX-30 rotor is retired after 5000 runs [2]."


def test_an_answer_must_cite_a_chunk_that_holds_the_evidence():
    grounding = Grounding(QUESTION, CHUNKS, "runs", [2], GROUNDING.evidence)
    target, reason = accepted_answer(
        "The MX-60 rotor is retired after 8000 runs.", grounding, verify, is_no_answer
    )
    assert (target, reason) == (None, "cites no evidence")


def test_a_focused_answer_loses_its_markers_and_gets_the_full_prompts():
    reply = "The MX-30 rotor is retired after 5000 runs [1]."
    target, reason = accepted_answer(reply, GROUNDING, verify, is_no_answer, focused=True)
    assert reason == "ok" and target == "The MX-30 rotor is retired after 5000 runs [2]."


def test_a_whole_sentence_answer_may_be_said_in_other_words():
    sentence = Grounding(
        QUESTION,
        CHUNKS,
        "Setup. The MX-30 rotor is retired after 5000 runs.",
        [2],
        "The MX-30 rotor is retired after 5000 runs.",
        whole_sentence=True,
    )
    reply = "After 5000 runs the MX-30 rotor is retired."
    assert accepted_answer(reply, sentence, verify, is_no_answer)[1] == "ok"
    exact = Grounding(QUESTION, CHUNKS, sentence.key_fact, [2], sentence.evidence)
    assert accepted_answer(reply, exact, verify, is_no_answer)[1] == "key fact missing"


def test_targets_are_replaced_hinted_kept_or_dropped_and_counted():
    refusal = ChatExample([*PROMPT, {"role": "assistant", "content": NO_ANSWER}])
    examples = [example(), example(), example(), refusal, refusal, refusal]
    seen: list[list[list[dict]]] = []

    def generate(prompts):
        seen.append(prompts)
        if len(seen) == 1:  # first round: right, wrong, wrong
            return [
                "The MX-30 rotor is retired after 5000 runs.",
                "It is retired after 8000 runs.",
                "It glows.",
            ]
        return ["The rotor is retired after 5000 runs [1].", "It glows."]

    result, report, attempts = own_answer_targets(
        examples, generate, verify, is_no_answer, retry="focused", miss="drop"
    )
    assert len(seen[0]) == 3 and len(seen[1]) == 2
    assert seen[1] == [FOCUSED, FOCUSED]
    assert [e.messages[-1]["content"] for e in result] == [
        "The MX-30 rotor is retired after 5000 runs [2].",
        "The rotor is retired after 5000 runs [2].",
        NO_ANSWER,
        NO_ANSWER,
    ]
    assert [(a["round"], a["verdict"]) for a in attempts] == [
        ("own", "ok"),
        ("own", "key fact missing"),
        ("own", "unsupported"),
        ("focused", "ok"),
        ("focused", "unsupported"),
    ]
    assert attempts[0]["question"] == "When is the MX-30 retired?"
    # Trained on the full prompt.
    assert all(e.messages[:-1] == PROMPT for e in result)
    assert (report.own, report.focused, report.dropped, report.cited_examples) == (1, 1, 1, 3)
    # Two of three cited examples kept: two of the three refusals keep the mix.
    assert report.others_left_out == 1 and len(result) == 4
    kept, report, _ = own_answer_targets(
        examples, generate_first_right, verify, is_no_answer, retry="none", miss="pair"
    )
    assert (report.own, report.kept_pair, report.others_left_out) == (1, 2, 0)
    assert [e.messages[-1] for e in kept[1:]] == [e.messages[-1] for e in examples[1:]]


def generate_first_right(prompts):
    return ["The MX-30 rotor is retired after 5000 runs.", *generate_once_wrong(prompts[1:])]


def generate_once_wrong(prompts):
    return ["It glows." for _ in prompts]


def test_a_missed_yes_no_example_keeps_its_synthesized_target_even_when_misses_are_dropped():
    yes_no = Grounding("Is it 8000 runs?", CHUNKS, "no", [2], EVIDENCE, FOCUSED, verdict=True)
    twin = example(f"No. {EVIDENCE[:-1]} [2].", grounding=yes_no)
    examples = [example(), twin, example()]
    kept, report, _ = own_answer_targets(
        examples, generate_first_right, verify, is_no_answer, retry="none", miss="drop"
    )
    assert (report.own, report.kept_yes_no, report.dropped) == (1, 1, 1)
    assert kept[1].messages[-1]["content"] == "No. The MX-30 rotor is retired after 5000 runs [2]."


def test_a_bare_label_is_no_own_answer_to_a_yes_no_question():
    yes_no = Grounding("Is it 8000 runs?", CHUNKS, "no", [2], EVIDENCE, FOCUSED, verdict=True)
    twin = example(f"No. {EVIDENCE[:-1]} [2].", grounding=yes_no)

    def generate(prompts):
        return ["The MX-30 rotor is retired after 5000 runs.", "No"][: len(prompts)]

    kept, report, _ = own_answer_targets(
        [example(), twin], generate, verify, is_no_answer, retry="none", miss="drop"
    )
    assert (report.own, report.kept_yes_no) == (1, 1)
    assert kept[1].messages[-1]["content"] == twin.messages[-1]["content"]


def test_a_model_that_gets_none_right_keeps_the_synthesized_targets():
    examples = [example(), example()]
    kept, report, attempts = own_answer_targets(examples, generate_once_wrong, verify, is_no_answer)
    assert report.fallback and kept == examples and len(attempts) == 4


def test_the_hint_names_the_key_fact_and_its_chunk_and_the_target_is_trained_without_it():
    hinted = with_hint(PROMPT, GROUNDING)
    assert hinted[0] == PROMPT[0] and hinted[1]["content"].startswith(PROMPT[1]["content"])
    assert '"5000 runs"' in hinted[1]["content"] and "[2]" in hinted[1]["content"]
    seen = []

    def generate(prompts):
        seen.append(prompts)
        reply = "It glows." if len(seen) == 1 else "The rotor is retired after 5000 runs [2]."
        return [reply for _ in prompts]

    result, report, _ = own_answer_targets([example()], generate, verify, is_no_answer)
    assert seen[1] == [hinted] and report.hint == 1
    assert result[0].messages[:-1] == PROMPT


def test_examples_the_teacher_restyled_keep_their_voice_and_are_not_asked():
    styled_grounding = Grounding("Who retires the MX-30?", CHUNKS, "5000 runs", [2], EVIDENCE)
    styled = example("Hey there! Your MX-30 rotor retires after 5000 runs [2].", styled_grounding)
    refusal = ChatExample([*PROMPT, {"role": "assistant", "content": NO_ANSWER}])
    examples = [styled, example(), example(), refusal, refusal]
    asked: list[int] = []

    def generate(prompts):
        asked.append(len(prompts))
        return generate_first_right(prompts)

    result, report, _ = own_answer_targets(
        examples, generate, verify, is_no_answer, retry="none", keep={"Who retires the MX-30?"}
    )
    assert asked == [2]  # the restyled example is not asked
    assert result[0] is styled
    assert (report.kept_styled, report.own, report.dropped, report.cited_examples) == (1, 1, 1, 3)
    # Two of three cited examples stay: so do one of the two refusals (rounded).
    assert len(result) == 3 and report.others_left_out == 1
