"""Data: prepared token shards (shards.py), the batches cut from them (loader.py) and the readers of task
files (taskfiles.py)."""
