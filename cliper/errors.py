"""Exceptions with messages meant for the person running the pipeline."""

from __future__ import annotations


class CliperError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class DataError(CliperError):
    """Input data that does not match what a stage expects (names file, line or field)."""


class FileFormatError(DataError, ValueError):
    """A file whose content cannot be parsed (names the file); a ValueError for older callers."""


class ValidationFailed(CliperError):
    """The validate stage rejected the data; downstream stages must not run."""


class OutputError(CliperError):
    """An output could not be written (disk full, quota, file-size limit); nothing partial is left."""
