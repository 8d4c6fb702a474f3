"""Ways in for frameworks that pick their loop through a class rather than a factory
(docs/integrations.md has a recipe for each framework)."""
