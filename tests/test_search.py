import pytest

from builder.build import build
from retrieval.config import RetrievalConfig
from retrieval.document_index import DocumentIndex
from retrieval.documents import Chunk
from retrieval.keyword_terms import terms_of
from retrieval.langchain_retriever import RagtuneRetriever
from retrieval.search import Retriever, reciprocal_rank_fusion

DOCS = {
    "rotor.md": "# Rotor\n\nThe rotor of the centrifuge is replaced every 12000 hours.\n",
    "warranty.md": "# Warranty\n\nThe warranty covers the centrifuge for two years.\n",
    "vacation.md": "# Vacation\n\nStaff take vacation in August; code VX-9 applies.\n",
    "parking.md": "# Parking\n\nParking badges are renewed in January.\n",
}


@pytest.fixture
def retriever_for(project_factory, encoder):
    opened = []

    def make(mode: str = "hybrid", k: int = 3) -> Retriever:
        project = project_factory(DOCS)
        build(project, encoder=encoder)
        retriever = Retriever.open(project.index_root, encoder, RetrievalConfig(top_k=k, mode=mode))
        opened.append(retriever)
        return retriever

    yield make
    for retriever in opened:
        retriever.close()


def test_rrf_sums_reciprocal_ranks():
    fused = reciprocal_rank_fusion(
        [[(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 5.0), (1, 4.0)]], rrf_k=60, limit=3
    )
    assert [row for row, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_rrf_ties_keep_first_ranking_order():
    fused = reciprocal_rank_fusion([[(7, 1.0)], [(8, 1.0)]], rrf_k=60, limit=2)
    assert [row for row, _ in fused] == [7, 8]


def test_rrf_gives_equal_scores_one_rank_so_another_ranking_decides():
    # Rows 1 and 2 are copies (equal dense and keyword scores); the third ranking prefers 2.
    fused = reciprocal_rank_fusion(
        [[(1, 0.9), (2, 0.9), (3, 0.5)], [(1, 2.0), (2, 2.0)], [(2, -1.0), (1, -2.0)]],
        rrf_k=60,
        limit=3,
    )
    assert [row for row, _ in fused] == [2, 1, 3]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_every_mode_finds_the_right_document(retriever_for, mode):
    retriever = retriever_for(mode)
    assert retriever.search("how long is the warranty?")[0].source == "warranty.md"
    assert retriever.search("when are parking badges renewed")[0].source == "parking.md"


def test_keyword_search_finds_codes_dense_cannot(retriever_for):
    # 'VX-9' is not one of the fake encoder's keywords, so only BM25 can match it.
    retriever = retriever_for("hybrid")
    hits = retriever.search("what is VX-9?")
    assert hits[0].source == "vacation.md"
    assert hits[0].keyword_score is not None and hits[0].keyword_score > 0


def test_hits_carry_citation_fields(retriever_for):
    hit = retriever_for().search("rotor hours")[0]
    assert hit.source == "rotor.md" and hit.section == "Rotor" and hit.page is None
    assert "12000 hours" in hit.text and len(hit.chunk_id) == 20
    assert hit.score > 0 and hit.dense_score is not None
    assert set(hit.to_dict()) >= {"source", "page", "section", "chunk_id", "score", "text"}


def test_search_many_matches_single_searches(retriever_for):
    retriever = retriever_for()
    questions = ["warranty length", "rotor hours", "parking badges"]
    assert retriever.search_many(questions) == [retriever.search(q) for q in questions]


def test_k_larger_than_the_corpus(retriever_for):
    hits = retriever_for(k=50).search("centrifuge")
    assert len(hits) == len({h.chunk_id for h in hits}) <= 50
    assert {h.source for h in hits[:2]} == {"rotor.md", "warranty.md"}


def test_langchain_retriever(retriever_for):
    documents = RagtuneRetriever(retriever=retriever_for(), k=2).invoke("warranty")
    assert len(documents) == 2
    assert documents[0].metadata["source"] == "warranty.md"
    assert "two years" in documents[0].page_content
    assert "text" not in documents[0].metadata


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        (["index.kind=hnsw"], "hnsw"),
        (["index.kind=ivf"], "ivf"),
        (["index.kind=ivfpq"], "ivfpq"),
        (["index.compressed_from=3"], "ivfpq"),  # auto compresses past the threshold
        (["index.approximate_from=3"], "hnsw"),  # auto switches past the threshold
        ([], "flat"),
    ],
)
def test_index_kinds_search_alike(project_factory, encoder, settings, kind):
    project = project_factory(DOCS, settings)
    report = build(project, encoder=encoder)
    assert report.index_kind == kind
    # Approximate indexes say how close they come to exact search; exact search needs not.
    assert (report.vector_recall is None) == (kind == "flat")
    if kind != "flat":
        assert 0.0 <= report.vector_recall <= 1.0
    retriever = Retriever.open(
        project.index_root, encoder, RetrievalConfig(mode="dense"), project.config.index
    )
    try:
        assert retriever.search("warranty")[0].source == "warranty.md"
        assert retriever.search("parking badges")[0].source == "parking.md"
    finally:
        retriever.close()


FILINGS = {
    name: "# Rotor\n\nThe rotor is replaced every 12000 hours.\n"
    for name in ("2023 Q1 ACME.md", "2023 Q2 ACME.md", "2023 Q1 BOLT.md")
}


@pytest.mark.parametrize("asked", ["2023 Q1 ACME.md", "2023 Q2 ACME.md", "2023 Q1 BOLT.md"])
def test_document_stage_lifts_the_document_a_question_names(project_factory, encoder, asked):
    # The chunks are the same text: without headers only the document stage tells them apart.
    project = project_factory(FILINGS, ["ingest.chunk_headers=false"])
    build(project, encoder=encoder)
    question = f"When is the rotor replaced, says {asked[:-3].split()[-1]} in {asked[5:7]} 2023?"
    config = RetrievalConfig(top_k=3, document_stage=True)
    retriever = Retriever.open(project.index_root, encoder, config)
    try:
        assert retriever.search(question)[0].source == asked
    finally:
        retriever.close()


def test_chunk_headers_name_the_document_in_the_keyword_index(project_factory, encoder):
    project = project_factory(FILINGS, ["ingest.chunk_headers=true"])
    build(project, encoder=encoder)
    config = RetrievalConfig(top_k=3, mode="keyword")
    retriever = Retriever.open(project.index_root, encoder, config)
    try:
        hit = retriever.search("BOLT rotor")[0]
        assert (hit.source, hit.title) == ("2023 Q1 BOLT.md", "Rotor (2023 Q1 BOLT)")
    finally:
        retriever.close()


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory):
    from tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


def test_reranker_reorders_the_fused_candidates(project_factory, encoder, tiny_cross_encoder):
    project = project_factory(DOCS)
    build(project, encoder=encoder)
    config = RetrievalConfig(top_k=2, reranker=str(tiny_cross_encoder), rerank_candidates=4)
    retriever = Retriever.open(project.index_root, encoder, config)
    try:
        hits = retriever.search("rotor warranty vacation parking")
    finally:
        retriever.close()
    assert len(hits) == 2
    scores = [hit.rerank_score for hit in hits]
    assert None not in scores and scores == sorted(scores, reverse=True)


def test_an_unavailable_reranker_fails_in_one_line_that_says_what_to_do(
    project_factory, encoder, tmp_path
):
    from retrieval.models import ModelNotFoundError

    project = project_factory(DOCS)
    build(project, encoder=encoder)
    config = RetrievalConfig(reranker="nobody/no-such-cross-encoder")
    with pytest.raises(ModelNotFoundError) as error:
        Retriever.open(project.index_root, encoder, config)
    message = str(error.value)
    assert "\n" not in message and "retrieval.reranker" in message
    assert "huggingface-cli download nobody/no-such-cross-encoder" in message


def _chunk(source: str, text: str, page: int, position: int) -> Chunk:
    return Chunk(f"{source}{position}", source, text, 0, len(text), page, None, position, source)


def test_document_stage_weighs_first_page_words_by_the_whole_collection():
    # ACME's cover page lists notes; every filing discusses notes in its body, so 'notes' names
    # no filing, while 'bolt', rare in the collection, names BOLT's.
    chunks = [
        _chunk("ACME", "ACME Corp. 2% Notes due 2030, 3% Notes due 2040, 4% Notes", 1, 0),
        _chunk("ACME", "The notes pay interest twice a year.", 2, 1),
        _chunk("BOLT", "BOLT Inc. quarterly report", 1, 0),
        _chunk("BOLT", "Interest on the notes rose.", 2, 1),
    ]
    index = DocumentIndex.build(chunks, terms_of([c.text for c in chunks]))
    [shares] = index.match(["What did BOLT say about its notes?"])
    assert shares[1] > 0.8 and shares[0] < 0.5


def test_on_the_reachable_scale_a_document_gets_the_share_of_the_question_it_matches():
    # No document holds both of the question's rare words: on the best-match scale the better
    # of the two still gets the full vote, on the reachable scale each gets about half.
    chunks = [
        _chunk("ACME", "ACME Corp. dividend policy", 1, 0),
        _chunk("BOLT", "BOLT Inc. buyback plan", 1, 0),
        _chunk("CORE", "CORE Ltd. quarterly report", 1, 0),
    ]
    index = DocumentIndex.build(chunks, terms_of([c.text for c in chunks]))
    question = "Which company has a dividend policy and a buyback?"
    [best] = index.match([question], "best")
    [reachable] = index.match([question], "reachable")
    assert max(best.values()) == 1.0
    assert 0.3 < reachable[0] < 0.8 and 0.3 < reachable[1] < 0.8 and 2 not in reachable
    [named] = index.match(["ACME's dividend policy"], "reachable")
    assert named[0] > 0.99 and 1 not in named
    with pytest.raises(ValueError, match="unknown scale"):
        index.match([question], "median")


def test_the_document_vote_follows_the_score_not_the_rank(project_factory, encoder):
    # Both ACME filings match 'ACME' alike, so their votes are about equal; naming the quarter
    # gives Q2's filing the lead.
    project = project_factory(FILINGS, ["ingest.chunk_headers=false"])
    build(project, encoder=encoder)
    retriever = Retriever.open(project.index_root, encoder, RetrievalConfig(top_k=3))
    try:
        [alike] = retriever.index.documents.match(["the rotor of ACME"])
        [named] = retriever.index.documents.match(["the rotor of ACME in Q2 2023"])
    finally:
        retriever.close()
    sources = retriever.index.documents.sources
    acme = [i for i, s in enumerate(sources) if "ACME" in s]
    q2 = sources.index("2023 Q2 ACME.md")
    assert abs(alike[acme[0]] - alike[acme[1]]) < 0.05
    assert named[q2] == pytest.approx(1.0) and min(named[i] for i in acme) < 0.8
