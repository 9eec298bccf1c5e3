"""Token data: prepared shards (shards.py) and the batches cut from them (loader.py)."""
