"""Event producers and load generators for the scorer's input topics."""
