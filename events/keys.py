"""Which data key protects a personal field: the subject, the category and the key period.

Identity and contact keys are one per subject x category (period ``""``); connection and
location keys are one per subject x category x UTC month (period ``"YYYY-MM"``), so that data
can expire month by month. The codec seals with the key these name, the key store keeps it, the
retention rules decide when it is destroyed: all three read the period from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from events.catalogue import MONTHLY_CATEGORIES


def key_month(occurred_at: datetime) -> str:
    """``YYYY-MM``, always four digits for the year (what the retention rules parse)."""
    return f"{occurred_at.year:04d}-{occurred_at.month:02d}"


def key_period(category: str, occurred_at: datetime) -> str:
    """The key period of a field: the UTC month for connection/location, else ``""``."""
    return key_month(occurred_at) if category in MONTHLY_CATEGORIES else ""


class KeyRef(NamedTuple):
    """One data key of one subject (every version of it).

    A named tuple of three strings: hashed and compared in C (a publisher looks keys up
    several times per event), and one object per key, without a ``__dict__``, in a key cache
    of many subjects."""

    subject_id: str
    category: str
    period: str

    @property
    def label(self) -> str:
        return f"{self.subject_id}/{self.category}/{self.period or '-'}"

    def key_id(self, version: int) -> str:
        """The id bound to the wrapped key (its associated data under the master key)."""
        return f"{self.label}/v{version}"
