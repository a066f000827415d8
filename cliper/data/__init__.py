"""Data: raw catalogs (real Amazon-2014 files or the embedded demo), ingest, split, validation."""
