"""A style ([style] in ragtune.toml): the persona in every mode's system prompt, identity data
per language, the persona card in the answer engine, the rewrite filter, identity training
examples, `ragtune tune` with a style on a tiny Llama, and the evaluation's style measures."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import KeywordEncoder
from echo_generator import EchoGenerator
from test_tune import DOCS, TINY_RUN

import retrieval.embeddings
from builder.build import build
from builder.cli import main
from builder.config import ConfigError, load_config
from eval.style import language_share, length_summary, names_persona, style_rows
from finetune.identity_pairs import identity_count, identity_examples
from finetune.pairs import UNANSWERABLE, QAPair
from finetune.style_rewrite import check_rewrite, rewrite_messages, rewrite_pairs
from retrieval.answer import AnswerEngine
from retrieval.attribution import TermStatistics
from retrieval.config import AnswerConfig, StyleConfig
from retrieval.persona import (
    PERSONA_CHUNK_ID,
    PersonaCard,
    StyleError,
    answer_length,
    identity,
    identity_languages,
)
from retrieval.prompt import (
    CLOSED_BOOK_SYSTEM,
    NO_ANSWER,
    RAG_SYSTEM,
    closed_book_messages,
    is_no_answer,
    rag_messages,
    refusal_sentence,
)
from retrieval.search import Hit

ADA = StyleConfig(name="Ada", organization="Acme Labs", voice="Warm and brief.", answer_words=20)


# --- prompts -------------------------------------------------------------------------------


def test_no_style_leaves_every_prompt_as_it_was():
    for style in (None, StyleConfig()):
        assert rag_messages("q?", [], style)[0]["content"] == RAG_SYSTEM
        assert closed_book_messages("q?", style)[0]["content"] == CLOSED_BOOK_SYSTEM


def test_a_style_puts_the_persona_voice_length_and_language_in_both_prompts():
    style = StyleConfig(name="Ada", organization="Acme Labs", voice="Warm.", answer_words=25)
    style.language = "de"
    rag = rag_messages("q?", [], style)[0]["content"]
    closed = closed_book_messages("q?", style)[0]["content"]
    for system in (rag, closed):
        assert system.startswith("You are Ada, the assistant of Acme Labs. Warm.")
        assert "Answer in German." in system and "in about 25 words" in system
    assert NO_ANSWER in rag and "[n]" in rag


# --- the refusal sentence --------------------------------------------------------------------

GERMAN_REFUSAL = "Das habe ich in den Unterlagen leider nicht gefunden."
GERMAN = StyleConfig(language="de", refusal=GERMAN_REFUSAL)


@pytest.mark.parametrize(
    ("refusal", "problem"),
    [
        (GERMAN_REFUSAL, None),
        ("Leider nicht gefunden. Fragen Sie den Support.", "2 sentences; write one"),
        ("Not in the documents [1].", "remove the [n] marker"),
        ("Sorry, " + "very " * 40 + "sorry.", "keep it to one short sentence of at most 160"),
    ],
)
def test_the_refusal_is_one_short_sentence_without_markers(refusal, problem):
    problems = StyleConfig(refusal=refusal).problems()
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


def test_the_refusal_sentence_is_the_style_s_or_the_english_one():
    assert refusal_sentence(None) == refusal_sentence(StyleConfig()) == NO_ANSWER
    assert refusal_sentence(StyleConfig(refusal="  Nicht   gefunden. ")) == "Nicht gefunden."
    assert is_no_answer(f"Leider: {GERMAN_REFUSAL.lower()}", GERMAN)
    assert is_no_answer(NO_ANSWER, GERMAN) and not is_no_answer(GERMAN_REFUSAL)


def test_the_prompt_instructs_the_style_s_refusal():
    for style in (GERMAN, StyleConfig(refusal=GERMAN_REFUSAL)):  # a refusal alone counts too
        system = rag_messages("q?", [], style)[0]["content"]
        assert system.endswith(f"reply: {GERMAN_REFUSAL}") and NO_ANSWER not in system
    assert RAG_SYSTEM.endswith(f"reply: {NO_ANSWER}")


def test_the_engine_refuses_in_the_style_s_sentence_in_every_mode(project_factory, monkeypatch):
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    project = project_factory()
    build(project, encoder=KeywordEncoder())
    from builder.engine import open_retriever

    retriever = open_retriever(project)
    engine = AnswerEngine(EchoGenerator(), retriever, AnswerConfig(), 3, style=GERMAN)
    assert engine.refusal == GERMAN_REFUSAL
    (unrelated,) = engine.answer_many(["Tell me about dolphins"], "rag")
    assert unrelated.refused and unrelated.answer == GERMAN_REFUSAL
    *pieces, streamed = engine.stream("Tell me about dolphins", "rag")
    assert pieces == [GERMAN_REFUSAL] and streamed.answer == GERMAN_REFUSAL and streamed.refused
    rotor = Hit("a.md", None, None, "id-a", 0.5, "The R-24A rotor lasts 9,000 runs.")
    engine.config.unsupported = "drop"
    dropped = engine._finish("q", "rag", [rotor], "It lasts 5 years.", 0.0)
    assert dropped.refused and dropped.answer == GERMAN_REFUSAL
    for mode, hits in (("rag", [rotor]), ("base", [])):
        for said in (GERMAN_REFUSAL, NO_ANSWER):  # a model tuned before the style says English
            assert engine._finish("q", mode, hits, said, 0.0).refused
    retriever.close()


def test_the_rewrite_leaves_the_style_s_refusal_alone():
    pairs = [pair("Is there a manual?", GERMAN_REFUSAL, kind="factoid")]
    styled, report = rewrite_pairs(pairs, ScriptedTeacher([]), GERMAN, STATS)
    assert [p.answer for p in styled] == [GERMAN_REFUSAL] and report.not_rewritten == 1
    original = "The rotor lasts 5000 runs."
    assert check_rewrite(original, GERMAN_REFUSAL, STATS, style=GERMAN) == "markup_or_refusal"


def test_tune_and_eval_warn_once_when_refusals_stay_english(project_factory, monkeypatch, capsys):
    import builder.engine
    import builder.eval_cli
    import builder.tune
    import builder.tune_cli
    from builder.tune_layout import TuneError
    from retrieval.answer import ModeError

    def stop(*args, **kwargs):
        raise ModeError("stopped before any model loads")

    def stop_tune(*args, **kwargs):
        raise TuneError("stopped before any model loads")

    for module in (builder.eval_cli, builder.tune_cli):
        monkeypatch.setattr(module, "quiet_libraries", lambda: None)
    monkeypatch.setattr(builder.engine, "open_engine", stop)
    monkeypatch.setattr(builder.tune, "tune", stop_tune)
    project = project_factory(overrides=["style.language=de"])
    questions = project.root / "questions.jsonl"
    questions.write_text('{"question": "q?", "answer": "a"}\n', encoding="utf-8")
    warning = "style.refusal is empty: refusals stay in English; set style.refusal"
    for command in (["tune", str(project.root)], ["eval", str(project.root), "--questions"]):
        argv = [*command, str(questions)] if command[0] == "eval" else command
        assert main(argv) == 2
        assert capsys.readouterr().err.count(warning) == 1
    quiet = project_factory(overrides=["style.language=de", f"style.refusal={GERMAN_REFUSAL!r}"])
    assert main(["eval", str(quiet.root), "--questions", str(questions)]) == 2
    assert warning not in capsys.readouterr().err
    assert StyleConfig(language="en").warnings() == StyleConfig().warnings() == []


# --- identity data ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", identity_languages())
def test_identity_texts_hold_the_persona_and_keep_eval_questions_out_of_training(language):
    texts = identity(StyleConfig(name="Zed", organization="Orga", language=language))
    assert texts.answers and all("Zed" in a and "Orga" in a for a in texts.answers)
    assert len(texts.train_questions) >= 8 and len(texts.eval_questions) >= 8
    assert not set(texts.train_questions) & set(texts.eval_questions)
    alone = identity(StyleConfig(name="Zed", language=language))
    assert all("Zed" in a and "{" not in a for a in alone.answers)


def test_a_persona_in_a_language_without_identity_texts_is_refused_with_the_fix(tmp_path):
    with pytest.raises(StyleError, match=r"style.language = 'it'.*add it.json"):
        identity(StyleConfig(name="Ada", language="it"))
    with pytest.raises(ConfigError) as caught:
        load_config(
            tmp_path / "x.toml",
            ["style.name=Ada", "style.language=it", "style.answer_words=-1"],
        )
    problems = "\n".join(caught.value.problems)
    assert "add retrieval/identity/it.json" in problems and "answer_words = -1" in problems
    with pytest.raises(ConfigError, match="ISO 639-1"):
        load_config(tmp_path / "x.toml", ["style.language=German"])


def test_answer_length_counts_unspaced_characters_as_words():
    assert answer_length("The rotor lasts 5000 runs.") == 5
    assert answer_length("转子寿命为5000次。") == 7


# --- the persona card in the answer engine ---------------------------------------------------


class QuestionEncoder(KeywordEncoder):
    """The keyword encoder, plus one dimension that fires on 'who' and 'name' questions."""

    def __init__(self) -> None:
        super().__init__()
        self.keyword_encoder = KeywordEncoder()
        self.dim = self.keyword_encoder.dim + 1

    def encode(self, texts):
        import numpy as np

        base = self.keyword_encoder.encode(texts)
        extra = np.array([[float(("who" in t.lower()) or ("name" in t.lower()))] for t in texts])
        vectors = np.hstack([base * (1 - extra), extra * 3]).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_persona_card_answers_who_questions_and_stays_away_from_domain_ones(
    project_factory, monkeypatch
):
    encoder = QuestionEncoder()
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: encoder)
    project = project_factory()
    build(project, encoder=encoder)
    from builder.engine import open_retriever

    retriever = open_retriever(project)
    engine = AnswerEngine(EchoGenerator(), retriever, AnswerConfig(), 3, style=ADA)
    assert isinstance(engine.persona, PersonaCard)
    who, rotor = engine.retrieve(["Who am I talking to?", "When is the rotor replaced?"])
    assert who[0].chunk_id == PERSONA_CHUNK_ID and "Ada" in who[0].text and len(who) <= 3
    assert all(h.chunk_id != PERSONA_CHUNK_ID for h in rotor)
    # Shown and cited like a chunk: the relevance gate lets it through.
    assert engine.relevant(who)
    retriever.close()


# --- the rewrite filter ----------------------------------------------------------------------

STATS = TermStatistics.from_texts(
    ["The rotor lasts 5000 runs.", "The pump needs 230 V.", "Refunds take 14 days."] * 4
    + ["the a of and is needs takes lasts runs your good news for it"] * 40
)


@pytest.mark.parametrize(
    ("rewrite", "reason"),
    [
        ("Good news: your rotor is good for 5000 runs!", None),
        ("Your rotor is good for 5,000 runs.", None),
        ("Your rotor lasts a long time.", "lost_facts"),
        ("It lasts 5000 runs.", "lost_facts"),  # the rare term 'rotor' is gone
        ("The rotor lasts 5000 runs or 6 years.", "added_facts"),
        ("The rotor lasts 5000 runs [1].", "markup_or_refusal"),
        (f"{NO_ANSWER}", "markup_or_refusal"),
        ('<document id="1">rotor 5000', "markup_or_refusal"),
        ("The rotor lasts 5000 runs, designed for the home.", "added_facts"),
        ("   ", "empty"),
    ],
)
def test_a_rewrite_is_kept_only_when_every_fact_survives(rewrite, reason):
    assert check_rewrite("The rotor lasts 5000 runs.", rewrite, STATS) == reason


def test_a_rare_word_from_the_evidence_or_the_voice_is_no_added_claim():
    original, rewrite = (
        "The rotor lasts 5000 runs.",
        "Cheers: your centrifuge rotor lasts 5000 runs.",
    )
    assert check_rewrite(original, rewrite, STATS) == "added_facts"
    allowed = "Each centrifuge rotor lasts 5000 runs. Cheery; say cheers."
    assert check_rewrite(original, rewrite, STATS, allowed) is None


class ScriptedTeacher:
    """Replies from a list, in order: the filter's behaviour on known rewrites."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.prompts = []

    def generate(self, prompts, samples=1, json_schema=None):
        self.prompts.extend(prompts)
        return [[self.replies.pop(0)] for _ in prompts]


def pair(question, answer, kind="factoid"):
    return QAPair(question, answer, "c1", "a.md", None, None, answer, "rules", kind)


def test_rewrite_pairs_keeps_facts_and_falls_back_to_the_original_answer():
    pairs = [
        pair("How long does the rotor last?", "The rotor lasts 5000 runs."),
        pair("What does the pump need?", "The pump needs 230 V."),
        pair("Is there a manual?", NO_ANSWER, kind=UNANSWERABLE),
    ]
    pairs.append(pair("How long do refunds take?", "Refunds take 14 days."))
    teacher = ScriptedTeacher(
        [
            "Answer: Good news, your rotor lasts 5000 runs!",
            "It needs power.",
            "Refunds take 14 days.",
        ]
    )
    styled, report = rewrite_pairs(pairs, teacher, ADA, STATS, examples=["Happy to help!"])
    assert [p.answer for p in styled] == [
        "Good news, your rotor lasts 5000 runs!",
        "The pump needs 230 V.",
        NO_ANSWER,
        "Refunds take 14 days.",
    ]
    assert (report.rewritten, report.kept_original, report.not_rewritten) == (1, 2, 1)
    assert report.unchanged == 1
    assert report.lost_facts == 1 and report.samples[0]["after"].startswith("Good news")
    prompt = teacher.prompts[0][1]["content"]
    assert "Warm and brief." in prompt and "about 20 words" in prompt and "Happy to help!" in prompt
    _, strict = rewrite_pairs(pairs[:2], ScriptedTeacher(["x", "y"]), ADA, STATS, (), False)
    assert strict.left_out == 2


def test_the_rewrite_prompt_names_the_language():
    style = StyleConfig(voice="Formal.", language="fr")
    assert "Language: French" in rewrite_messages(style, "q?", "a.", [])[1]["content"]


# --- identity training examples --------------------------------------------------------------


def test_identity_examples_cite_the_card_with_rag_and_answer_alone_closed_book():
    texts = identity(ADA)
    count = identity_count(ADA, 100, texts)
    assert count == max(8, 2 * len(texts.train_questions))
    assert identity_count(StyleConfig(), 100, texts) == 0

    def search_many(questions, k):
        return [[] for _ in questions]

    examples = identity_examples(texts, ADA, search_many, 3, count)
    assert len(examples) == count
    rag = [e for e in examples if "<documents>" in e.messages[1]["content"]]
    closed = [e for e in examples if "<documents>" not in e.messages[1]["content"]]
    assert len(rag) == len(closed) == count // 2
    for example in rag:
        assert 'source="ragtune.toml [style]"' in example.messages[1]["content"]
        assert example.messages[2]["content"].count("[1]") >= 2  # every sentence cites it
    for example in examples:
        assert example.messages[0]["content"].startswith("You are Ada, the assistant of Acme")
        assert "Ada" in example.messages[2]["content"]
        assert example.messages[1]["content"].split("Question: ")[-1] in texts.train_questions


# --- ragtune tune with a style, end to end on a tiny Llama -----------------------------------


def test_tune_with_a_style_rewrites_answers_and_adds_identity_pairs(
    project_factory, tiny_model, monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    examples = tmp_path / "voice.txt"
    examples.write_text("Happy to help: the rotor lasts 5000 runs.\n\n", encoding="utf-8")
    settings = [f"generation.model={str(tiny_model)!r}", *TINY_RUN]
    settings += [
        f"synthesis.teacher={str(tiny_model)!r}",
        "synthesis.teacher_questions=0",
        "style.name=Ada",
        "style.organization='Acme Labs'",
        "style.voice='Warm and brief.'",
        "style.answer_words=15",
        f"style.examples={str(examples)!r}",
    ]
    project = project_factory(DOCS, settings)
    build(project, encoder=KeywordEncoder())
    assert main(["tune", str(project.root)]) == 0
    card = json.loads((project.current_adapter().parent / "run_card.json").read_text())
    style = card["style"]
    assert style["pairs"] > 0 and style["rewritten"] + style["kept_original"] == (
        style["pairs"] - style["not_rewritten"]
    )
    assert card["format"]["identity_examples"] >= 24
    assert "own_answers" in card["format"]  # own answers are asked with a style too
    trained = [json.loads(line) for line in (project.tune_dir / "train.jsonl").open()]
    systems = {row["messages"][0]["content"] for row in trained}
    assert all(s.startswith("You are Ada, the assistant of Acme Labs.") for s in systems)
    assert any("Ada" in row["messages"][-1]["content"] for row in trained)
    assert (project.tune_dir / "styled_pairs.jsonl").is_file()
    assert "style" in capsys.readouterr().err
    # Nothing changed: every stage, the style included, is skipped the second time.
    assert main(["tune", str(project.root)]) == 0
    assert "ran" not in capsys.readouterr().err.split("pairs:")[0]


def test_the_restyled_questions_are_those_whose_answer_the_style_stage_changed(
    project_factory, tmp_path
):
    from builder.tune_style import restyled_questions
    from finetune.pairs import write_pairs_jsonl

    plain = [
        QAPair("How long?", "5000 runs.", "c1", "a.md", None, None, "5000 runs.", "rules"),
        QAPair("How often?", "Weekly.", "c2", "a.md", None, None, "Weekly.", "rules"),
    ]
    original = tmp_path / "train_pairs.jsonl"
    write_pairs_jsonl(original, plain)
    styled = [replace(plain[0], answer="Your rotor lasts 5000 runs!"), plain[1]]
    voiced = project_factory(DOCS, ["style.voice='Warm.'"])
    assert restyled_questions(voiced, original, styled) == {"How long?"}
    voiced.config.style.voice = ""  # no style: nothing was restyled
    assert restyled_questions(voiced, original, styled) == set()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


# --- the evaluation's style measures ---------------------------------------------------------


def test_style_measures_name_length_and_language():
    assert names_persona("Hi, I am ADA.", "Ada") and not names_persona("I am a bot.", "Ada")
    summary = length_summary(["one two three", "one two three four five"], 4)
    assert summary["mean_words"] == 4 and summary["mean_distance"] == 1
    share, n = language_share(["Ich bin Ada und helfe gern.", "I am Ada, glad to help."], "de")
    assert (share, n) == (0.5, 2)
    rows = style_rows(
        {
            "modes": {
                "rag": {
                    "length": summary,
                    "persona": {"share": 0.9, "n": 10},
                    "language": {"share": 0.5, "n": 2},
                }
            }
        }
    )
    assert rows == [["rag", "90% (n=10)", "4.0 (target 4)", "50% (n=2)", "-"]]


class CountingJudge:
    """Grades every answer 4 and keeps the prompts it was given."""

    def __init__(self):
        self.prompts = []

    def grade_batch(self, conversations):
        self.prompts.extend(conversations)
        return [4.0 for _ in conversations]


def test_style_measures_ask_the_held_out_identity_questions_in_every_mode(
    project_factory, monkeypatch
):
    from eval.style import style_measures

    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    project = project_factory()
    build(project, encoder=KeywordEncoder())
    from builder.engine import open_retriever

    retriever = open_retriever(project)
    engine = AnswerEngine(EchoGenerator(), retriever, AnswerConfig(), 3, style=ADA)
    answers = {
        mode: [
            {"question": "q", "answer": "one two three", "refused": False},
            {"question": "q2", "answer": NO_ANSWER, "refused": True},
        ]
        for mode in ("base", "rag")
    }
    judge = CountingJudge()
    result = style_measures(engine, ADA, ["base", "rag"], answers, judge)
    assert result["identity_questions"] == list(identity(ADA).eval_questions)
    for mode in ("base", "rag"):
        entry = result["modes"][mode]
        assert entry["persona"]["n"] == len(identity(ADA).eval_questions)
        assert entry["length"]["n"] == 1 and entry["voice"] == {"mean": 4.0, "n": 1}
    assert "House voice: Warm and brief." in judge.prompts[0][1]["content"]
    retriever.close()
