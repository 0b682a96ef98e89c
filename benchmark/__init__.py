"""msabench: a reproducible benchmark harness for multimodal sentiment analysis."""

__version__ = "0.1.0"


def major_minor() -> str:
    """The version part that enters run ids: a patch release never invalidates a store."""
    return ".".join(__version__.split(".")[:2])
