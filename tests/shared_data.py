"""Where the benchmark data sets beside the repository live (../shared/data); tests skip when absent."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
