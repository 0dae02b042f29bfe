"""Watermarks, metadata and provenance records on every output, and the verifier."""
