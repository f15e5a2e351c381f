"""annotate: customer-service transcripts in, validated research variables out."""

__version__ = "0.1.0"
