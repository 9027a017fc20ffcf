"""Audit periods: a calendar year (``2025``) or an explicit date range."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from hub import outcomes


@dataclasses.dataclass(frozen=True)
class Period:
    """A closed date range ``[start, end]``; ``key`` names it in stored results."""

    start: dt.date
    end: dt.date

    @classmethod
    def year(cls, year: int) -> Period:
        return cls(dt.date(year, 1, 1), dt.date(year, 12, 31))

    @classmethod
    def parse(cls, text: str | int | None = None, start: str | None = None, end: str | None = None):
        """``"2025"``, ``"2025-01-01..2025-06-30"`` or ``start``/``end`` ISO dates."""
        try:
            if start or end:
                if not (start and end):
                    raise ValueError("give both --from and --to")
                period = cls(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
            elif text is None or str(text).strip() == "":
                raise ValueError("no period given")
            elif ".." in str(text):
                low, high = str(text).split("..", 1)
                period = cls(dt.date.fromisoformat(low), dt.date.fromisoformat(high))
            else:
                period = cls.year(int(str(text)))
        except ValueError as err:
            raise outcomes.bad_request(
                f"invalid period {text or (start, end)!r}: {err}", "period"
            ) from None
        if period.end < period.start:
            raise outcomes.bad_request("period ends before it starts", "period")
        return period

    @property
    def key(self) -> str:
        if self.is_year:
            return str(self.start.year)
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    @property
    def is_year(self) -> bool:
        return (self.start.month, self.start.day, self.end.month, self.end.day) == (
            1,
            1,
            12,
            31,
        ) and (self.start.year == self.end.year)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: dt.date | None) -> bool:
        return day is not None and self.start <= day <= self.end

    def overlap(self, start: dt.date | None, end: dt.date | None) -> Period | None:
        low = max(self.start, start or self.start)
        high = min(self.end, end or self.end)
        return Period(low, high) if low <= high else None


def required_count(per_year: int, window: Period, whole: Period) -> int:
    """Services due in ``window`` at ``per_year`` a year (pro rata, at least one).

    A window that is the whole of a one-year audit period owes exactly
    ``per_year``; another window owes its share by months, rounded up.
    """
    if window == whole and whole.is_year:
        return per_year
    return max(1, math.ceil(round(per_year * months_between(window.start, window.end) / 12, 6)))


def months_between(start: dt.date, end: dt.date) -> float:
    """Months from ``start`` to the end of day ``end`` (1 Jul-31 Dec is exactly 6)."""
    stop = end + dt.timedelta(days=1)
    whole = (stop.year - start.year) * 12 + stop.month - start.month
    anchor = add_months(start, whole)
    if anchor > stop:
        whole -= 1
        anchor = add_months(start, whole)
    following = add_months(start, whole + 1)
    return whole + (stop - anchor).days / (following - anchor).days


def due_dates(per_year: int, required: int, window: Period) -> list[dt.date]:
    """When each of ``required`` services is due: the end of each 12/per_year months.

    Quarterly services in 2025 are due on 31 March, 30 June, 30 September and
    31 December; none is due after the end of the window.
    """
    out = []
    months = 12 / per_year
    for k in range(1, required + 1):
        if months.is_integer():
            due = add_months(window.start, int(months * k)) - dt.timedelta(days=1)
        else:
            due = window.start + dt.timedelta(days=math.ceil(k * 365 / per_year) - 1)
        out.append(min(due, window.end))
    return out


def add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year = day.year + month0 // 12
    month = month0 % 12 + 1
    last = [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return dt.date(year, month, min(day.day, last))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def parse_date(value: str | None) -> dt.date | None:
    """The date part of a FHIR date/dateTime (``2025``, ``2025-03``, ``2025-03-15T..``)."""
    if not value:
        return None
    text = str(value)[:10]
    try:
        if len(text) == 4:
            return dt.date(int(text), 1, 1)
        if len(text) == 7:
            return dt.date(int(text[:4]), int(text[5:7]), 1)
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
