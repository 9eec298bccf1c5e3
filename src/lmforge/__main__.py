"""`python -m lmforge ...` (also `torchrun -m lmforge train ...`)."""

from lmforge.cli import app

app(prog_name="lmforge")
