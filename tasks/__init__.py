"""Prefect tasks: one per DVC stage (``tasks.stages``), run through ``dvc repro`` (``tasks.dvc``).

Layering: ``flows`` -> ``tasks`` -> ``cliper``. Nothing here runs at import time.
"""
