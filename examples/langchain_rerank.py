"""Retrieve, rerank, answer: a LangChain LCEL chain with BGERerank in a
ContextualCompressionRetriever.

A BGE-M3 hybrid retriever picks candidates, ``BGERerank`` (bge-reranker-v2-m3) keeps the best
two, and the chain formats them into a prompt. The chat model is langchain-core's
``ParrotFakeChatModel`` (it answers with the prompt it receives), so the script runs offline;
swap in any chat model for real answers.

Usage:
    python examples/langchain_rerank.py            # BAAI/bge-m3 + BAAI/bge-reranker-v2-m3
    python examples/langchain_rerank.py --tiny     # offline, tiny random models

Needs ``pip install bge-integrations[langchain] langchain-classic``.
"""

from __future__ import annotations

import argparse

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

from bge_integrations.langchain import BGEM3Retriever, BGERerank
from bge_integrations.offline import tiny_model

DOCUMENTS = [
    Document("BGE-M3 supports more than 100 languages and inputs of up to 8192 tokens.",
             id="m3-languages"),
    Document("bge-reranker-v2-m3 reads the query and the passage together.", id="reranker"),
    Document("The giant panda is a bear species endemic to China.", id="panda"),
    Document("Reciprocal rank fusion merges rankings by summing 1 / (60 + rank).", id="rrf"),
]
PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer the question using only the context."),
    ("human", "Context:\n{context}\n\nQuestion: {question}"),
])


def main(argv: list[str] | None = None) -> int:
    """Build retriever -> reranker -> prompt -> chat model and answer one question."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random models (offline; rankings are noise)")
    parser.add_argument("--question", default="How many languages does BGE-M3 support?")
    args = parser.parse_args(argv)

    m3 = tiny_model("xlm-roberta") if args.tiny else "BAAI/bge-m3"
    reranker = tiny_model("xlm-roberta-reranker") if args.tiny else "BAAI/bge-reranker-v2-m3"
    retriever = ContextualCompressionRetriever(
        base_compressor=BGERerank(model_name=reranker, top_n=2),
        base_retriever=BGEM3Retriever.from_documents(DOCUMENTS, model_name=m3, k=4))
    for doc in retriever.invoke(args.question):
        print(f"rerank {doc.metadata['relevance_score']:.4f} [{doc.id}] {doc.page_content}")
    chain = ({"context": retriever | (lambda docs: "\n".join(d.page_content for d in docs)),
              "question": RunnablePassthrough()} | PROMPT | ParrotFakeChatModel()
             | StrOutputParser())
    print(f"answer:\n{chain.invoke(args.question)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
