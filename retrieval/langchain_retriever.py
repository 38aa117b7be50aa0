"""The project retriever as a LangChain `BaseRetriever`, for use in LangChain chains."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from retrieval.search import Retriever


class RagtuneRetriever(BaseRetriever):
    """Wraps a `Retriever`; each hit becomes a Document whose metadata holds its citation.

    Example:
        >>> retriever = RagtuneRetriever(retriever=Retriever.open(index_root, encoder), k=5)
        >>> docs = retriever.invoke("How often is the rotor replaced?")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any
    """A `retrieval.search.Retriever` (typed loosely so pydantic does not inspect it)."""
    k: int = 5

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        searcher: Retriever = self.retriever
        return [
            Document(
                page_content=hit.text,
                metadata={key: value for key, value in hit.to_dict().items() if key != "text"},
            )
            for hit in searcher.search(query, self.k)
        ]
