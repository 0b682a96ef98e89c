"""The data layer: dataset registry, readers, validation, labels, masks and the synthetic suite."""
