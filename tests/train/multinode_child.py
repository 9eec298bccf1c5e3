"""`python -m lmforge` for test_multinode.py, counting the prepares: each call of lmforge.prepare.prepare
appends "NODE RANK" (the test's NODE label, torchrun's global RANK) to the file $LMFORGE_TEST_PREPARES."""

import os

import lmforge.prepare

_prepare = lmforge.prepare.prepare


def counted(*args, **kwargs):
    with open(os.environ["LMFORGE_TEST_PREPARES"], "a", encoding="utf-8") as f:
        f.write(f"{os.environ['NODE']} {os.environ['RANK']}\n")
    return _prepare(*args, **kwargs)


lmforge.prepare.prepare = counted  # ensure_prepared calls it through the module

from lmforge.cli import app  # noqa: E402

app(prog_name="lmforge")
