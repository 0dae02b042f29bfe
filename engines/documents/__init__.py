"""Chat with your documents: a person's folders of .txt, .md and .pdf files, searchable by words and meaning.

As GPT4All's LocalDocs does, everything lives in the Studio's SQLite file: the files seen
(size, mtime, SHA-256, how far indexing got), their passages with character offsets and PDF
pages, an FTS5 index over the passages (BM25 for keywords) and one all-MiniLM-L6-v2 vector a
passage (for meaning). A question finds passages both ways, the two rankings are fused, and
the best passages go into the chat message with numbered citations that open the source at
the passage.

- :mod:`engines.documents.extract`: a file's text (PDF pages with pypdf), or a reason why not.
- :mod:`engines.documents.chunking`: text to passages of 150-230 embedder tokens, with overlap.
- :mod:`engines.documents.store`: :class:`~engines.documents.store.DocumentIndex`, the tables.
- :mod:`engines.documents.indexing`: ``index_folder``: resumable, incremental, with progress.
- :mod:`engines.documents.search`: BM25, embeddings and the hybrid of both.
- :mod:`engines.documents.grounding`: passages into the prompt, citations, what a click opens.
- :mod:`engines.documents.service`: :class:`~engines.documents.service.Documents`, what the
  Studio holds (its index job, the chat hook); :mod:`engines.documents.commands`: ``main.py docs``.

Nothing here imports Qt, and the heavy libraries (onnxruntime, tokenizers, pypdf) load on first
use, on the worker that indexes or searches.
"""
