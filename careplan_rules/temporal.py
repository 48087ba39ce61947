"""Time for clinical rules: ISO-8601 durations and FHIR's partial dates.

FHIR dates can be partial (``2025``, ``2025-03``, ``2025-03-01``) and dateTimes carry a time
zone whenever they carry a time. A partial date is an *interval*: "2025-03" is every instant
of March 2025. Rules compare instants, so each FHIR date becomes the earliest and latest
instant it can mean; which one a comparison uses is a clinical choice made by the caller
(a period end of "2025-03" must count as still running on 2025-03-20).

Date-only values have no zone; they are read as UTC, which is also what the rest of the
engine uses for ``now``.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)

_FHIR_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<frac>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True, slots=True)
class Duration:
    """An ISO-8601 duration such as ``P90D`` or ``P1Y6M``; calendar-aware for years and months."""

    text: str
    years: int = 0
    months: int = 0
    days: int = 0
    seconds: int = 0

    def before(self, instant: datetime) -> datetime:
        """The instant this duration before ``instant``."""
        return _add_months(instant, -(self.years * 12 + self.months)) - timedelta(days=self.days, seconds=self.seconds)

    def after(self, instant: datetime) -> datetime:
        """The instant this duration after ``instant``."""
        return _add_months(instant, self.years * 12 + self.months) + timedelta(days=self.days, seconds=self.seconds)

    @property
    def approx_days(self) -> float:
        return self.years * 365.25 + self.months * 30.44 + self.days + self.seconds / 86400

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """Parse an ISO-8601 duration (``P90D``, ``P1Y``, ``PT24H``, ``P2W``).

    Raises:
        ValueError: when ``text`` is not a duration; the message quotes it.
    """
    raw = text.strip() if isinstance(text, str) else text
    match = _DURATION.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as P90D, P6M, P1Y or PT24H")
    g = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
    return Duration(
        text=raw,
        years=g["years"],
        months=g["months"],
        days=g["weeks"] * 7 + g["days"],
        seconds=g["hours"] * 3600 + g["minutes"] * 60 + g["seconds"],
    )


def _add_months(instant: datetime, months: int) -> datetime:
    if months == 0:
        return instant
    total = instant.year * 12 + (instant.month - 1) + months
    year, month = divmod(total, 12)
    day = min(instant.day, calendar.monthrange(year, month + 1)[1])
    return instant.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True, slots=True)
class FhirInstant:
    """A FHIR date/dateTime as the interval of instants it may mean."""

    text: str
    earliest: datetime
    latest: datetime

    @property
    def precision_is_day_or_coarser(self) -> bool:
        return "T" not in self.text


def parse_fhir_datetime(text: str) -> FhirInstant:
    """Read a FHIR ``date``, ``dateTime`` or ``instant``.

    Raises:
        ValueError: for anything that is not a valid FHIR date (quoting the value).
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a FHIR date (expected a string such as '2025-03-01')")
    m = _FHIR_DATE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a FHIR date or dateTime")
    g = m.groupdict()
    year = int(g["y"])
    try:
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=UTC)
            end = datetime(year + 1, 1, 1, tzinfo=UTC)
        elif g["d"] is None:
            month = int(g["m"])
            start = datetime(year, month, 1, tzinfo=UTC)
            end = _add_months(start, 1)
        elif g["H"] is None:
            start = datetime(year, int(g["m"]), int(g["d"]), tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            if g["tz"] is None:
                # FHIR requires a zone when a time is given; real feeds omit it often enough
                # that rejecting would lose data, so read it as UTC (the validator flags it).
                tz = UTC
            elif g["tz"] == "Z":
                tz = UTC
            else:
                sign = 1 if g["tz"][0] == "+" else -1
                hh, mm = g["tz"][1:].split(":")
                tz = timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))
            micro = int(float(g["frac"]) * 1_000_000) if g["frac"] else 0
            start = datetime(
                year,
                int(g["m"]),
                int(g["d"]),
                int(g["H"]),
                int(g["M"]),
                int(g["S"] or 0),
                micro,
                tzinfo=tz,
            ).astimezone(UTC)
            if g["S"] is None:
                end = start + timedelta(minutes=1)
            elif g["frac"] is None:
                end = start + timedelta(seconds=1)
            else:
                end = start
    except ValueError as exc:  # impossible dates such as 2025-02-30
        raise ValueError(f"{text!r} is not a valid date: {exc}") from None
    # ``latest`` is inclusive in spirit; keep it strictly inside the interval.
    latest = end - timedelta(microseconds=1) if end > start else start
    return FhirInstant(text=text, earliest=start, latest=latest)


def try_parse_fhir_datetime(text: object) -> FhirInstant | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_fhir_datetime(text)
    except ValueError:
        return None


def parse_now(value: datetime | date | str | None) -> datetime:
    """Normalise an evaluation time to an aware UTC datetime.

    Strings may be a FHIR/ISO date or dateTime; a naive datetime is taken as UTC.

    Raises:
        ValueError: when the value is not a date or dateTime.
    """
    if value is None:
        raise ValueError("an evaluation time ('now') is required")
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    if text.endswith("z"):
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            return parse_fhir_datetime(text).earliest
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO-8601 date or dateTime (e.g. 2026-06-01 or 2026-06-01T12:00:00Z)"
            ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def age_in_years(birth: date, on: datetime) -> int:
    years = on.year - birth.year
    if (on.month, on.day) < (birth.month, birth.day):
        years -= 1
    return years


@functools.lru_cache(maxsize=1024)  # outputs stamp the same few instants (now, now + P14D) dozens of times a call
def iso(instant: datetime) -> str:
    """Render an instant the way outputs use it: UTC, seconds precision, ``+00:00``."""
    return instant.astimezone(UTC).replace(microsecond=0).isoformat()
