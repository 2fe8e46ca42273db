"""Which data key protects a personal field: the subject, the category and the key period.

Identity and contact keys are one per subject x category (period ``""``); connection and
location keys are one per subject x category x UTC month (period ``"YYYY-MM"``), so that data
can expire month by month. The codec seals with the key these name, the key store keeps it, the
retention rules decide when it is destroyed: all three read the period from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from events.catalogue import MONTHLY_CATEGORIES


def key_month(occurred_at: datetime) -> str:
    """``YYYY-MM``, always four digits for the year (what the retention rules parse)."""
    return f"{occurred_at.year:04d}-{occurred_at.month:02d}"


def key_period(category: str, occurred_at: datetime) -> str:
    """The key period of a field: the UTC month for connection/location, else ``""``."""
    return key_month(occurred_at) if category in MONTHLY_CATEGORIES else ""


@dataclass(frozen=True, order=True)
class KeyRef:
    """One data key of one subject (every version of it)."""

    subject_id: str
    category: str
    period: str

    @property
    def label(self) -> str:
        return f"{self.subject_id}/{self.category}/{self.period or '-'}"

    def key_id(self, version: int) -> str:
        """The id bound to the wrapped key (its associated data under the master key)."""
        return f"{self.label}/v{version}"
