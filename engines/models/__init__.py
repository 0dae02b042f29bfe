"""Models Ember knows: the embedded defaults, and (later) the catalog and the store."""
