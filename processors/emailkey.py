"""The identity key of an author email (pure): the one normalisation of emails that metric rows
are keyed by.

It is Python's `str.lower` (full Unicode lower-casing), which PostgreSQL's `lower()` is not:
that one depends on the database's collation and maps some letters otherwise (U+0130, Latin
capital I with dot above, is "i" there and "i" + U+0307 here) or not at all (in the C locale it
lower-cases ASCII only). So SQL never lower-cases an email: the sink computes the key here, once
per commit, stages it for the set-based folds (processors/setfolds.py) and stores it with the
commit's facts (`commits.author_key`, migration 0031), where retraction finds an author's
commits by it. The metric functions (processors/metrics/*, the test oracles) lower-case with
the same `str.lower`; a test holds them to this function.
"""

from __future__ import annotations


def email_key(email: str) -> str:
    """The key metric rows of `email`'s author are kept under."""
    return email.lower()
