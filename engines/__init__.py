"""Ember's engines: inference, the job queue, the output pipeline and the stores.

Nothing in this package imports Qt; the desktop window and the command line are
both thin clients of it.
"""
