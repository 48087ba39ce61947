"""Product → ingredient code maps (RxNorm SCD/SBD/… → IN), shipped as TSV data with a pack.

EHR data usually carries product-level RxNorm codes ("Sertraline 100 MG Oral Tablet",
"Acetaminophen 325 MG / HYDROcodone Bitartrate 5 MG Oral Tablet") while value sets are kept
at ingredient level, so a coding matches an ingredient concept through this map. The map is
offline data: the engine never calls a terminology server at evaluation time.

File format (tab-separated, UTF-8, ``#`` comments)::

    product	ingredients	name
    328670	36437	sertraline 100 MG
    856980	161|5489	Acetaminophen 325 MG / Hydrocodone Bitartrate 7.5 MG Oral Tablet
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True, slots=True)
class IngredientMap:
    """Product code → ingredient codes, for one code system (RxNorm)."""

    system: str = RXNORM
    products: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def ingredients(self, system: str | None, code: str) -> tuple[str, ...]:
        if system != self.system:
            return ()
        return self.products.get(code, ())

    def merged(self, other: IngredientMap) -> IngredientMap:
        combined: dict[str, tuple[str, ...]] = dict(self.products)
        for product, ingredients in other.products.items():
            existing = combined.get(product, ())
            combined[product] = tuple(sorted(set(existing) | set(ingredients)))
        return IngredientMap(self.system, combined, self.sources + other.sources)

    def __len__(self) -> int:
        return len(self.products)


class IngredientMapError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def parse_ingredient_map(lines: Iterable[str], source: str) -> IngredientMap:
    """Parse the TSV format above.

    Raises:
        IngredientMapError: with the 1-based line of a malformed row.
    """
    products: dict[str, set[str]] = {}
    header_seen = False
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        if not header_seen:
            header_seen = True
            if cols[0].strip().lower() == "product":
                continue
        if len(cols) < 2:
            raise IngredientMapError("expected 'product<TAB>ingredients[<TAB>name]'", number)
        product = cols[0].strip()
        ingredients = [c.strip() for c in cols[1].split("|") if c.strip()]
        if not product or not ingredients:
            raise IngredientMapError("empty product or ingredient code", number)
        if not all(c.isdigit() for c in [product, *ingredients]):
            raise IngredientMapError(f"RxNorm codes are numeric: {line.strip()!r}", number)
        products.setdefault(product, set()).update(ingredients)
    return IngredientMap(RXNORM, {k: tuple(sorted(v)) for k, v in products.items()}, (source,))


def format_ingredient_map(rows: Mapping[str, tuple[Iterable[str], str]], header_comment: str = "") -> str:
    """Render rows ``product -> (ingredients, name)`` in the TSV format (sorted, stable)."""
    out = []
    for line in header_comment.splitlines():
        out.append(f"# {line}".rstrip())
    out.append("product\tingredients\tname")
    for product in sorted(rows, key=lambda c: (len(c), c)):
        ingredients, name = rows[product]
        out.append(f"{product}\t{'|'.join(sorted(set(ingredients), key=lambda c: (len(c), c)))}\t{name}")
    return "\n".join(out) + "\n"
