"""Ember's local OpenAI-compatible API: an HTTP server in front of the same Studio as the window.

Off by default; ``python main.py serve`` starts it. Every request becomes a Studio job (the same
queue, the same OutputPipeline: safety, watermark, provenance, library) and its result is written
back in OpenAI's shapes. No Qt here.
"""
