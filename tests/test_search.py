import pytest

from builder.build import build
from retrieval.config import RetrievalConfig
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
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], rrf_k=60, limit=3)
    assert [row for row, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_rrf_ties_keep_first_ranking_order():
    fused = reciprocal_rank_fusion([[7], [8]], rrf_k=60, limit=2)
    assert [row for row, _ in fused] == [7, 8]


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
        (["index.approximate_from=3"], "hnsw"),  # auto switches past the threshold
        ([], "flat"),
    ],
)
def test_index_kinds_search_alike(project_factory, encoder, settings, kind):
    project = project_factory(DOCS, settings)
    report = build(project, encoder=encoder)
    assert report.index_kind == kind
    retriever = Retriever.open(
        project.index_root, encoder, RetrievalConfig(mode="dense"), project.config.index
    )
    try:
        assert retriever.search("warranty")[0].source == "warranty.md"
        assert retriever.search("parking badges")[0].source == "parking.md"
    finally:
        retriever.close()
