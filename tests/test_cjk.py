"""Text without spaces between words (Chinese, Japanese) end to end, with no word lists: chunks
that end at 。！？, BM25 over character bigrams, sentences, synthesis, attribution and the eval
metrics; every new pattern linear on 1 MB of adversarial CJK text."""

# The full-width punctuation that ruff flags as confusable is what these tests are about.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import re

import pytest
from conftest import KeywordEncoder
from test_hostile_text import repeat, timed

from builder.build import build
from eval.metrics import contains_gold, gold_token_recall, token_f1
from finetune.filters import grounding
from finetune.rule_questions import rule_pairs
from finetune.synthesis_config import SynthesisConfig
from finetune.synthesize import synthesize
from finetune.text import jaccard, split_sentences, text_units, tokens, topic_tokens, word_count
from retrieval.answer_match import normalize_answer
from retrieval.attribution import split_claims, verify_claims
from retrieval.chunking import MAX_CHARS_PER_TOKEN, chunk_document, make_splitter
from retrieval.config import IndexConfig, RetrievalConfig
from retrieval.documents import Chunk, LoadedDocument, TextBlock
from retrieval.index import open_index
from retrieval.keyword_index import KeywordIndex
from retrieval.keyword_terms import terms
from retrieval.search import Retriever

DOCS = {
    "manual.md": "# 离心机 X9 使用手册\n\n"
    "最大转速：12000 rpm\n额定功率：850 W\n转子容量：6 × 50 ml\n\n"
    "离心机每天使用后都应清洁转子。转子在运行一万次后必须更换，否则可能发生危险。"
    "清洁时请使用中性清洁剂，不要使用酒精。\n",
    "faq.md": "# 常见问题\n\n保修期是多久？\n本产品的保修期为两年，从购买之日起计算。\n\n"
    "可以在户外使用吗？\n不可以，本产品只能在室内使用。\n",
    "company.txt": "本公司成立于二〇〇五年。我们的总部位于上海！员工人数超过三百人。"
    "每年春天我们都会举办技术交流会，欢迎客户参加。你想参观我们的工厂吗？请提前一周预约。",
}
STOPS = ("。", "！", "？")
CHUNK_TOKENS = 40  # project_factory's ingest.chunk_tokens
_HAN_OR_WORD = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]|[^\s\u3040-\u30ff\u4e00-\u9fff]+")


class CharacterEncoder(KeywordEncoder):
    """The keyword encoder, counting tokens as a BERT-style tokenizer does (MiniLM, the default
    model): one per CJK character, one per other word."""

    def count_tokens(self, text: str) -> int:
        return len(_HAN_OR_WORD.findall(text))


@pytest.fixture
def project(project_factory):
    built = project_factory(DOCS)
    build(built, encoder=CharacterEncoder())
    return built


@pytest.fixture
def chunks(project):
    index = open_index(project.index_root, IndexConfig())
    try:
        return list(index.store.iter_chunks())
    finally:
        index.close()


def chunk_holding(chunks, text: str):
    return next(chunk for chunk in chunks if text in chunk.text)


def test_chinese_documents_are_cut_into_sentence_bounded_chunks(chunks):
    prose = [chunk for chunk in chunks if chunk.source == "company.txt"]
    assert len(prose) >= 3  # 75 characters in chunks of at most 40 tokens
    assert all(chunk.text.endswith(STOPS) for chunk in prose)
    assert len(chunks) > len(DOCS)
    encoder = CharacterEncoder()
    assert all(encoder.count_tokens(chunk.text) <= CHUNK_TOKENS for chunk in chunks)
    care = [c for c in chunks if c.source == "manual.md" and "清洁" in c.text]
    assert care and all(chunk.text.endswith(STOPS) for chunk in care)


def test_the_splitter_breaks_a_long_sentence_at_full_width_commas():
    sentence = "转子在运行一万次后必须更换，" * 5 + "否则可能发生危险。"
    splitter = make_splitter(CharacterEncoder().count_tokens, 30, 0)
    pieces = chunk_document(LoadedDocument("a.txt", [TextBlock(sentence)]), splitter)
    assert len(pieces) > 2
    assert all(piece.text.endswith(("，", "。")) for piece in pieces)


def test_bm25_finds_a_chinese_query_by_character_bigrams(project):
    retriever = Retriever.open(
        project.index_root, CharacterEncoder(), RetrievalConfig(top_k=3, mode="keyword")
    )
    try:
        hit = retriever.search("转子多久必须更换")[0]
        assert hit.source == "manual.md" and "一万次" in hit.text
        assert retriever.search("保修期有多长")[0].source == "faq.md"
        assert retriever.search("总部在哪里")[0].source == "company.txt"
        assert hit.keyword_score is not None and hit.keyword_score > 0
    finally:
        retriever.close()


def test_keyword_terms_are_bigrams_and_single_characters():
    assert terms("X9型的最大转速是12000 rpm，好") == [
        "x9",
        "型的",
        "的最",
        "最大",
        "大转",
        "转速",
        "速是",
        "12000",
        "rpm",
        "好",
    ]
    index = KeywordIndex.build(["最大转速：12000 rpm", "保修期为两年。"])
    assert [row for row, _ in index.search(["转速"], 2)[0]] == [0]


def test_sentences_split_at_chinese_and_japanese_stops():
    assert split_sentences("本公司成立于二〇〇五年。我们的总部位于上海！你想参观吗？请预约。") == [
        "本公司成立于二〇〇五年。",
        "我们的总部位于上海！",
        "你想参观吗？",
        "请预约。",
    ]
    assert split_sentences("今日は晴れです。明日は雨でしょうか？そうですね！") == [
        "今日は晴れです。",
        "明日は雨でしょうか？",
        "そうですね！",
    ]
    # Half-width stops right after a CJK character, closing quotes, and Latin text as before.
    assert split_sentences("他说：“好。”然后走了。多少?两年.") == [
        "他说：“好。”",
        "然后走了。",
        "多少?",
        "两年.",
    ]
    assert split_sentences("See e.g. the manual. It helps.") == [
        "See e.g. the manual.",
        "It helps.",
    ]


def test_units_of_chinese_text():
    units = text_units("最大转速：12000 rpm\n额定功率：850 W\n保修期是多久？\n保修期为两年。")
    assert [(unit.text, unit.kind) for unit in units] == [
        ("最大转速：12000 rpm", "line"),
        ("额定功率：850 W", "line"),
        ("保修期是多久？", "line"),
        ("保修期为两年。", "line"),
    ]
    assert word_count("保修期是多久？") == 7 and word_count("How long is it?") == 4


def test_synthesis_tokens_ground_and_compare_chinese():
    assert tokens("X9型的转速") == ["x9", "型的", "的转", "转速"]
    # 转速, 12000 and rpm of 转速 速为 12000 rpm are in the chunk.
    assert grounding("转速为12000 rpm", "最大转速：12000 rpm。") == pytest.approx(0.75)
    same = jaccard(topic_tokens("最大转速是多少？"), topic_tokens("最大转速是多少呢？"))
    other = jaccard(topic_tokens("最大转速是多少？"), topic_tokens("保修期是多久？"))
    assert same >= 0.8 and other < 0.2


def test_synthesis_keeps_grounded_pairs_from_chinese_documents(chunks):
    config = SynthesisConfig(teacher="none", rules=True)
    kept, report = synthesize(chunks, config, None, None)
    assert report.kept >= 1
    by_id = {chunk.chunk_id: chunk for chunk in chunks}
    assert all(grounding(p.answer, by_id[p.chunk_id].text) >= config.min_grounding for p in kept)
    assert "12000 rpm" in {pair.answer for pair in kept}
    # Full-width FAQ questions are read and kept: their length counts tokens, not spaces.
    faq = {pair.question: pair.answer for pair in rule_pairs(chunks)}
    assert "两年" in faq["保修期是多久？"]
    assert {"faq", "key_value"} <= {pair.kind for pair in kept}
    assert "faq: 保修期是多久？" in {pair.question for pair in kept}  # named by its file


def test_answer_first_items_of_chinese_documents(chunks):
    from finetune.generators.answer_first import choose_items

    items = choose_items(chunks, budget=10, per_chunk=2)
    assert items and all(item.span.text in item.sentence for item in items)
    # Prose sentences only (the key-value lines have no stop); spans are parts of them.
    assert all(item.sentence.endswith(("。", "！")) for item in items)
    assert all(len(item.span.text) < len(item.sentence) for item in items)


def test_attribution_verifies_a_chinese_claim_against_its_chunk(chunks):
    shown = [chunk_holding(chunks, "最大转速").text, chunk_holding(chunks, "保修期为两年").text]
    claims = split_claims("离心机的最大转速为12000 rpm。[2]本产品的保修期为两年。")
    assert [text for text, _ in claims] == [
        "离心机的最大转速为12000 rpm。",
        "本产品的保修期为两年。",
    ]
    speed, warranty = verify_claims(claims, shown)
    assert speed.supported and speed.cited == [1] and speed.model_cited == [2]
    assert warranty.supported and warranty.cited == [2]
    (wrong,) = verify_claims(split_claims("离心机的最大转速为15000 rpm。"), shown)
    assert wrong.supported is False and wrong.missing_facts == ["15000"]


def test_eval_metrics_score_chinese_answers_by_character():
    assert normalize_answer("最大转速：12000 rpm。") == "最 大 转 速 12000 rpm"
    score = token_f1("最大转速为12000转。", "最大转速是12000转")
    assert 0 < score < 1
    assert token_f1("保修期为两年。", "保修期为两年") == 1.0
    assert token_f1("不可以", "保修两年") == 0.0
    assert contains_gold("本机的最大转速为12000 rpm。", "12000 rpm") == 1.0
    assert contains_gold("保修期为两年。", "三年") == 0.0
    assert gold_token_recall("转速12000", "最大转速12000") == pytest.approx(0.6)


HOSTILE = {
    "one character": repeat("中"),
    "stops": repeat("。"),
    "sentences": repeat("中。"),
    "half-width stops": repeat("中?"),
    "full-width colons": repeat("中："),
    "closing quotes": repeat("中！」"),
    "mixed scripts": repeat("中a1"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_cjk_text_handling_is_linear_on_adversarial_input(name):
    text = HOSTILE[name]
    splitter = make_splitter(lambda piece: len(piece.split()), 128, 24)
    document = LoadedDocument("hostile.txt", [TextBlock(text)])
    pieces = timed(chunk_document, document, splitter)
    assert max(len(piece.text) for piece in pieces) <= 128 * MAX_CHARS_PER_TOKEN
    timed(split_sentences, text)
    timed(tokens, text)
    timed(terms, text)
    timed(split_claims, text)
    timed(normalize_answer, text)
    timed(text_units, text)
    timed(word_count, text)
    chunk = Chunk("c1", "docs/manual.md", text, 0, len(text), None, text[:200], 0)
    timed(synthesize, [chunk], SynthesisConfig(teacher="none", roundtrip_k=0), None, None)
