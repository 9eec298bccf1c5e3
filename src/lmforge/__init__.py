"""lmforge: raw text to a trained, evaluated and fine-tuned language model."""

from lmforge.errors import CheckpointError, ConfigError, DataError, LmforgeError

__version__ = "0.1.0"
__all__ = ["CheckpointError", "ConfigError", "DataError", "LmforgeError", "__version__"]
