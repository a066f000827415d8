"""Prefect flows: ``flows.pipeline.cliper_pipeline`` and its scheduled deployment (``flows.serve``)."""
