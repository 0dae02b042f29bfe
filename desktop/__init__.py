"""Ember's Qt window: widgets, layouts and the bridge to the engines. No inference here."""
