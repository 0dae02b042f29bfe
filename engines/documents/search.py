"""Finding passages: by keywords (FTS5's BM25), by meaning (cosine of MiniLM vectors), or both fused.

Hybrid ranking takes the best :data:`CANDIDATES` of each and fuses the two rankings with
reciprocal rank fusion (Cormack et al. 2009: score = sum of 1 / (60 + rank)). RRF needs no
calibration between BM25's unbounded scores and cosines; a weighted sum of min-max normalised
scores is here too (``fusion="weighted"``), because the evaluation measured both. Recall@5 on 56
questions about the project's own docs (683 passages; tests/engines/documents/test_retrieval_quality.py),
first measurement:

    BM25 alone 0.786 (44/56) · embeddings alone 0.661 (37/56) ·
    hybrid RRF 0.875 (49/56) · hybrid weighted 0.5/0.5 0.839 (47/56)

so hybrid search is RRF. Passages of at most 120 word pieces instead of 230 gave 0.696 / 0.714 /
0.786 (measured after, on the same questions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engines.documents.store import DocumentIndex, StoredChunk
from engines.safety.semantic import Embed

Mode = Literal["hybrid", "keywords", "meaning"]
Fusion = Literal["rrf", "weighted"]
CANDIDATES = 50  # from each retriever, before fusion
RRF_K = 60
WEIGHT_MEANING = 0.5  # the weighted fusion's share for the cosine (the rest is BM25's)

# Words that say nothing about which passage answers (BM25's idf would weigh them near zero anyway,
# but each would match almost every passage and make the OR query slow).
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her
    here hers him his how i if in into is it its itself just me more most my no nor not now of off on once
    only or other our ours out over own same she should so some such than that the their theirs them then
    there these they this those through to too under until up very was we were what when where which while
    who whom why will with would you your yours""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Passage:
    """A passage found for a query: where it is, its text, its score, and which retrievers found it."""

    chunk_id: int
    path: str
    title: str
    kind: str  # "text", "markdown", "pdf"
    heading: str
    text: str
    start: int  # character offsets into the document's text
    end: int
    page: int | None
    line: int
    tokens: int  # embedder word pieces
    score: float  # the fused score (hybrid), BM25 (keywords) or cosine (meaning); higher is better
    found_by: tuple[str, ...]  # "keywords", "meaning"
    keyword_rank: int | None = None  # 1-based, among the candidates
    meaning_rank: int | None = None


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression for a question in plain words: any of its telling words ("" when none)."""
    words = [w.lower() for w in _WORD.findall(text)]
    terms = [w for w in dict.fromkeys(words) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]
    if not terms:
        terms = list(dict.fromkeys(words))
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def keyword_ranking(
    index: DocumentIndex, query: str, limit: int, folder_ids: Sequence[int] | None = None
) -> list[tuple[int, float]]:
    """(chunk id, BM25) of the best keyword matches, best first."""
    return index.keyword_search(fts_query(query), limit, folder_ids)


def meaning_ranking(
    index: DocumentIndex, query: str, embed: Embed, limit: int, folder_ids: Sequence[int] | None = None
) -> list[tuple[int, float]]:
    """(chunk id, cosine) of the passages nearest in meaning, best first. Raises EmberError when embedding fails."""
    ids, folders, matrix = index.vectors()
    if folder_ids is not None:
        keep = np.isin(folders, np.asarray(list(folder_ids), dtype=np.int64))
        ids, matrix = ids[keep], matrix[keep]
    if not len(ids) or not query.strip():
        return []
    vector = np.asarray(embed([query]), dtype=np.float32)[0]
    scores = matrix @ vector
    top = np.argsort(-scores, kind="stable")[:limit]
    return [(int(ids[i]), float(scores[i])) for i in top]


def search(
    index: DocumentIndex,
    query: str,
    embed: Embed | None,
    *,
    k: int = 5,
    mode: Mode = "hybrid",
    fusion: Fusion = "rrf",
    folder_ids: Sequence[int] | None = None,
    candidates: int = CANDIDATES,
) -> list[Passage]:
    """The ``k`` best passages for ``query``, best first.

    ``mode`` "keywords" is BM25 alone, "meaning" the embeddings alone, "hybrid" both fused
    (``fusion``). Without ``embed`` every mode is keywords. ``folder_ids`` limits the search to
    those folders. Raises EmberError when the embedder fails.
    """
    if embed is None:
        mode = "keywords"
    keywords = keyword_ranking(index, query, candidates, folder_ids) if mode != "meaning" else []
    meaning = meaning_ranking(index, query, embed, candidates, folder_ids) if mode != "keywords" and embed else []
    keyword_rank = {cid: r for r, (cid, _) in enumerate(keywords, 1)}
    meaning_rank = {cid: r for r, (cid, _) in enumerate(meaning, 1)}
    if mode == "keywords":
        scored = keywords
    elif mode == "meaning":
        scored = meaning
    elif fusion == "rrf":
        fused: dict[int, float] = {}
        for ranking in (keywords, meaning):
            for rank, (cid, _) in enumerate(ranking, 1):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        scored = sorted(fused.items(), key=lambda item: -item[1])
    else:
        kw, mn = _normalised(keywords), _normalised(meaning)
        fused = {cid: (1 - WEIGHT_MEANING) * kw.get(cid, 0.0) + WEIGHT_MEANING * mn.get(cid, 0.0) for cid in {*kw, *mn}}
        scored = sorted(fused.items(), key=lambda item: -item[1])
    best = scored[:k]
    chunks = index.chunks([cid for cid, _ in best])
    return [
        _passage(chunks[cid], score, keyword_rank.get(cid), meaning_rank.get(cid))
        for cid, score in best
        if cid in chunks  # a file dropped by a concurrent index run
    ]


def _normalised(ranking: list[tuple[int, float]]) -> dict[int, float]:
    if not ranking:
        return {}
    values = [s for _, s in ranking]
    low, high = min(values), max(values)
    span = high - low
    return {cid: (s - low) / span if span > 0 else 1.0 for cid, s in ranking}


def _passage(chunk: StoredChunk, score: float, keyword_rank: int | None, meaning_rank: int | None) -> Passage:
    found_by = tuple(name for name, rank in (("keywords", keyword_rank), ("meaning", meaning_rank)) if rank)
    return Passage(
        chunk_id=chunk.id,
        path=chunk.path,
        title=chunk.title,
        kind=chunk.kind,
        heading=chunk.heading,
        text=chunk.text,
        start=chunk.start,
        end=chunk.end,
        page=chunk.page,
        line=chunk.line,
        tokens=chunk.tokens,
        score=score,
        found_by=found_by,
        keyword_rank=keyword_rank,
        meaning_rank=meaning_rank,
    )
