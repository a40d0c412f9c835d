"""The package version (one place; setup.py and the model files read it)."""
__version__ = "0.1.0"
