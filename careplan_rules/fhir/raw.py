"""Reading raw FHIR JSON before validation has checked its shapes.

Release detection, the split by patient, reference resolution, the service's prefetch handling
and ``validate``'s later checks read resources as they came. There, an element that should be a
list can be anything (a number, ``true``, an object): it holds no items for them, and the
validation that follows reports the shape with its FHIR path. Iterating it as it is made the
engine fail with TypeError instead.
"""

from __future__ import annotations

from typing import Any


def items(value: Any) -> list[Any]:
    """The items of a list element; none when the element is absent or of another shape."""
    return value if isinstance(value, list) else []
