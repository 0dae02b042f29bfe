"""Evaluation: diversity and quality proxies of what the models make (``main.py evaluate``)."""
