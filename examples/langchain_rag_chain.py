"""A LangChain RAG chain over BGE-M3 hybrid retrieval: retriever | format | prompt | chat model.

``BGEM3Retriever`` ranks passages by BGE-M3's dense, sparse and ColBERT scores together. The
chat model here is langchain-core's ``ParrotFakeChatModel``, which answers with the prompt it
receives, so the script runs offline and shows exactly what an LLM would be given; swap in any
LangChain chat model (``ChatOpenAI``, ``ChatOllama``, ...) for real answers.

Usage:
    python examples/langchain_rag_chain.py                 # BAAI/bge-m3 from the hub
    python examples/langchain_rag_chain.py --tiny          # offline, tiny random model

Needs ``pip install bge-integrations[langchain]``.
"""

from __future__ import annotations

import argparse

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

from bge_integrations.langchain import BGEM3Retriever
from bge_integrations.offline import tiny_model

DOCUMENTS = [
    Document("BGE-M3 supports more than 100 languages and inputs of up to 8192 tokens.",
             metadata={"topic": "bge"}, id="m3-languages"),
    Document("BGE-M3 returns dense, sparse and multi-vector (ColBERT) representations.",
             metadata={"topic": "bge"}, id="m3-outputs"),
    Document("The giant panda is a bear species endemic to China.",
             metadata={"topic": "animals"}, id="panda"),
    Document("Reciprocal rank fusion merges rankings by summing 1 / (60 + rank).",
             metadata={"topic": "search"}, id="rrf"),
]

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer the question using only the context."),
    ("human", "Context:\n{context}\n\nQuestion: {question}"),
])


def format_docs(docs: list[Document]) -> str:
    """Join retrieved documents into one context string, each tagged with its id."""
    return "\n".join(f"[{doc.id}] {doc.page_content}" for doc in docs)


def main(argv: list[str] | None = None) -> int:
    """Build the retriever and the chain, then answer one question."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-m3", help="BGE-M3 hub id or directory.")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random BGE-M3-shaped model (offline; rankings are noise)")
    parser.add_argument("--question", default="How many languages does BGE-M3 support?")
    parser.add_argument("-k", type=int, default=2, help="passages put in the prompt")
    args = parser.parse_args(argv)

    model = tiny_model("xlm-roberta") if args.tiny else args.model
    retriever = BGEM3Retriever.from_documents(DOCUMENTS, model_name=model, k=args.k,
                                              filter={"topic": {"$ne": "animals"}})
    chain = ({"context": retriever | format_docs, "question": RunnablePassthrough()}
             | PROMPT | ParrotFakeChatModel() | StrOutputParser())
    for doc in retriever.invoke(args.question):
        scores = ", ".join(f"{name}={value:.3f}" for name, value in
                           doc.metadata["bge_m3_scores"].items())
        print(f"{doc.metadata['bge_m3_score']:.4f} [{doc.id}] ({scores})")
    answer = chain.invoke(args.question)
    print(f"answer:\n{answer}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
