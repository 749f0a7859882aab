"""``sitecustomize`` for the Python processes of a local cluster (see sitecustomize.py)."""
