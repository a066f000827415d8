"""Data: real raw catalogs (Amazon-2014 files, MMRec .inter), ingest, split, validation, image fetching.

The embedded synthetic demo catalog lives in :mod:`cliper.demo`.
"""
