"""bench: a benchmark harness for multimodal fusion and mixture-of-experts methods."""
__version__ = "0.1.0"
