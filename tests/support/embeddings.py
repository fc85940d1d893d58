"""Deterministic embeddings for store tests: each text as counts of a few letter classes,
so similar texts score close and the same text always gives the same vector."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

DIMS = 8
_CLASSES = ("aeiou", "bcdfg", "hjklm", "npqrs", "tvwxyz", "0123456789", " ", "-_.,:")


def vector(text: str) -> list[float]:
    low = text.lower()
    counts = [float(sum(low.count(c) for c in chars)) for chars in _CLASSES]
    counts[-1] += float(len(text) % 3)  # keeps short texts apart
    return counts


class LetterEmbeddings(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return vector(text)
