"""The embedded demo catalog: a deterministic synthetic shop in the Amazon-2014 raw formats.

Kept apart from :mod:`cliper.data` (real catalogs: ingest, split, validation, image fetching);
the two packages never import each other. Entry point: :func:`cliper.demo.catalog.write_demo_catalog`.
"""
