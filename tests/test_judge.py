"""The correctness judge: parsing its grade, an OpenAI-compatible endpoint (a local fake
server) and a local model (a tiny random one)."""

from __future__ import annotations

import pytest
from fake_openai import fake_chat_server

from eval.judge import EndpointJudge, JudgeError, ModelJudge, make_judge, parse_score


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("4", 4.0),
        ("Score: 5/5", 5.0),
        ("**3**", 3.0),
        ("10", None),
        ("I think 2.", 2.0),
        ("no idea", None),
        ("0.5 then 4", 4.0),
    ],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_endpoint_judge_against_a_local_server():
    def grade(body):
        return "5" if "18 weeks" in body["messages"][1]["content"] else "no score"

    with fake_chat_server(grade, model="judge-model") as server:
        judge = make_judge(f"{server.url}/v1/chat/completions")
        assert isinstance(judge, EndpointJudge)
        items = [("How long?", "18 weeks", "18 weeks"), ("How long?", "2 days", "3 days")]
        assert judge.score_batch(items) == [5.0, None]
        path, payload, _ = server.requests[0]
        assert path == "/v1/chat/completions"
        assert payload["model"] == "judge-model" and payload["temperature"] == 0
    with pytest.raises(JudgeError, match="cannot reach the judge server"):
        EndpointJudge(f"{server.url}#m", timeout=2).score("q", "a", "a")


def test_no_judge_for_an_empty_spec():
    assert make_judge("  ") is None


def test_model_judge_batches_on_a_tiny_model(tmp_path):
    from tiny_models import build_tiny_llama

    folder = build_tiny_llama(tmp_path / "tiny")
    judge = ModelJudge(str(folder), device="cpu", batch_size=2)
    items = [("How long?", "18 weeks", "18 weeks"), ("Who?", "Maren", "Bob"), ("Q", "a", "b")]
    scores = judge.score_batch(items)
    # A random model writes no reliable grade: each reply parses to a grade or to None.
    assert len(scores) == 3 and all(s is None or 1 <= s <= 5 for s in scores)
    assert judge.generator.tokenizer.padding_side == "left"
