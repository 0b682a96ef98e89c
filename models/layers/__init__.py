"""Building blocks shared by two or more model plugins (one topic per module)."""
