"""Build a product → ingredient map from an RxNorm full release (``RXNCONSO.RRF`` + ``RXNREL.RRF``).

Sites that license nothing more than the free RxNorm release can regenerate the pack's ingredient map
(:mod:`careplan_rules.terminology.ingredient_map`) for every product code in their data, instead of
relying on the rows shipped with the pack. Both files are read line by line (a full release is a few
hundred MB); only ``SAB=RXNORM`` rows are used, since they carry RxNorm's normalised concepts and the
relationships between them.

File formats (pipe-delimited, one trailing ``|``; RxNorm Technical Documentation §12)::

    RXNCONSO.RRF  RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF|
    RXNREL.RRF    RXCUI1|RXAUI1|STYPE1|REL|RXCUI2|RXAUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|DIR|RG|SUPPRESS|CVF|

An ``RXNREL`` row states "RXCUI2 *RELA* RXCUI1" (the relationship the second concept has to the first,
as in the UMLS ``MRREL`` table): ``RXCUI1=161 (acetaminophen) RELA=has_ingredient RXCUI2=<an SCDC>``
reads "the SCDC has_ingredient acetaminophen".

Relationships followed from a product towards its ingredients (and why)::

    SCD/SBD   --consists_of-->          SCDC/SBDC   a clinical drug is made of its strength components
    SCD       --has_ingredients-->      MIN         multi-ingredient drugs name their ingredient set
    SCD/SBD   --isa-->                  SCDF/SBDF   the drug's dose-form concept carries the ingredient too
    SBD/SBDC/SBDF/BPCK --tradename_of-> SCD/SCDC/SCDF/GPCK, BN --tradename_of--> IN   branded → generic
    GPCK/BPCK --contains-->             SCD/SBD     a pack holds clinical drugs
    SCD       --quantified_form_of-->   SCD         "12 HR ... 60 MG" forms point at the unquantified drug
    SCDC/SCDF/SCDG/SBDF --has_ingredient--> IN/BN   the ingredient itself (or its brand name)
    SCDC      --has_precise_ingredient--> PIN, PIN --form_of--> IN     a salt resolves to its base
    MIN       --has_part-->             IN          the members of a multi-ingredient set

The inverse names (``constitutes``, ``ingredient_of``, ``has_tradename``, ``contained_in``…) are read
as the same edge in the other direction, so a release or subset that ships only one direction of a pair
still maps. The walk stops at ``IN`` concepts; nothing is followed away from an ingredient, so a
product can never pick up the ingredients of a sibling product.

Suppressed and obsolete content (``SUPPRESS`` ``O`` or ``Y``) is skipped by default: obsolete atoms do
not name current concepts and their relationships are not maintained. ``E`` (editorial) and ``N`` rows
are kept.

Deterrent ingredients: naloxone (7242) in buprenorphine/naloxone or pentazocine/naloxone only deters
misuse. Mapping it would make a MOUD product count as *rescue* naloxone and silence a naloxone offer
(the worst kind of error for this engine), so by default a deterrent is dropped from a row whenever the
product also has another mapped ingredient; a naloxone-only product keeps it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from careplan_rules.diagnostics import Diagnostic, Severity, SourceLocation
from careplan_rules.errors import TerminologyError
from careplan_rules.terminology.ingredient_map import RXNORM
from careplan_rules.terminology.systems import canonical_system

if TYPE_CHECKING:
    from careplan_rules.loader.pack import Pack

RXNCONSO_COLUMNS = (
    "RXCUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "RXAUI", "SAUI",
    "SCUI", "SDUI", "SAB", "TTY", "CODE", "STR", "SRL", "SUPPRESS", "CVF",
)  # fmt: skip
RXNREL_COLUMNS = (
    "RXCUI1", "RXAUI1", "STYPE1", "REL", "RXCUI2", "RXAUI2", "STYPE2", "RELA",
    "RUI", "SRUI", "SAB", "SL", "DIR", "RG", "SUPPRESS", "CVF",
)  # fmt: skip
_C = {name: i for i, name in enumerate(RXNCONSO_COLUMNS)}
_R = {name: i for i, name in enumerate(RXNREL_COLUMNS)}

INGREDIENT_TTY = "IN"
# concepts that get a row: drugs, packs, components and forms, and the salt/multi/brand name concepts
# that EHR data sometimes carries instead of a drug code
SOURCE_TTYS = frozenset(
    {"SCD", "SBD", "GPCK", "BPCK", "SCDC", "SBDC", "SCDF", "SBDF", "SCDG", "SBDG", "PIN", "MIN", "BN"}
)
KNOWN_TTYS = SOURCE_TTYS | {INGREDIENT_TTY}

# "RXCUI2 RELA RXCUI1" with RELA here: walk RXCUI2 -> RXCUI1 (towards the ingredient)
FORWARD_RELAS = frozenset(
    {
        "consists_of",
        "has_ingredients",
        "isa",
        "tradename_of",
        "contains",
        "quantified_form_of",
        "has_ingredient",
        "has_precise_ingredient",
        "form_of",
        "has_part",
    }
)
# the inverse of each forward relationship: walk RXCUI1 -> RXCUI2
INVERSE_RELAS = frozenset(
    {
        "constitutes",
        "ingredients_of",
        "inverse_isa",
        "has_tradename",
        "contained_in",
        "has_quantified_form",
        "ingredient_of",
        "precise_ingredient_of",
        "has_form",
        "part_of",
    }
)
SKIPPED_SUPPRESS = frozenset({"O", "Y"})
NALOXONE = "7242"
DEFAULT_DETERRENTS = (NALOXONE,)


@dataclass(frozen=True, slots=True)
class Concept:
    rxcui: str
    tty: str
    name: str


@dataclass(slots=True)
class BuildReport:
    """What a build read and wrote, for the command's summary line."""

    conso_rows: int = 0
    rel_rows: int = 0
    concepts: int = 0
    edges: int = 0
    suppressed_skipped: int = 0
    products: int = 0
    mapped: int = 0
    deterrents_dropped: int = 0
    ingredients: set[str] = field(default_factory=set)


def _rrf_rows(path: Path, width: int) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` of a pipe-delimited RRF file, one line at a time.

    Raises:
        TerminologyError: when the file is missing or a line has too few fields.
    """
    if not path.is_file():
        diag = Diagnostic(
            "CPR-E090",
            f"{path.name} not found (expected an RxNorm release 'rrf' folder)",
            location=SourceLocation(str(path)),
        )
        raise TerminologyError(diag.render(), [diag])
    with path.open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("|")
            if len(fields) < width:
                diag = Diagnostic(
                    "CPR-E091",
                    f"expected {width} '|'-separated fields, found {len(fields)}",
                    location=SourceLocation(str(path), number),
                )
                raise TerminologyError(diag.render(), [diag])
            yield number, fields


def read_concepts(path: Path, report: BuildReport, include_suppressed: bool = False) -> dict[str, Concept]:
    """RxNorm-normalised concepts of RXNCONSO.RRF with a TTY the walk needs, by RXCUI.

    Raises:
        TerminologyError: when the file is missing or malformed.
    """
    concepts: dict[str, Concept] = {}
    for _, f in _rrf_rows(path, len(RXNCONSO_COLUMNS)):
        report.conso_rows += 1
        if f[_C["SAB"]] != "RXNORM" or f[_C["TTY"]] not in KNOWN_TTYS:
            continue  # synonyms (SY, TMSY, PSN) and other sources do not define concept types
        if not include_suppressed and f[_C["SUPPRESS"]] in SKIPPED_SUPPRESS:
            report.suppressed_skipped += 1
            continue
        rxcui = f[_C["RXCUI"]]
        concepts.setdefault(rxcui, Concept(rxcui, f[_C["TTY"]], f[_C["STR"]]))
    report.concepts = len(concepts)
    return concepts


def read_edges(
    path: Path, concepts: Mapping[str, Concept], report: BuildReport, include_suppressed: bool = False
) -> dict[str, set[str]]:
    """Directed edges "towards the ingredient" between known concepts, from RXNREL.RRF.

    Raises:
        TerminologyError: when the file is missing or malformed.
    """
    edges: dict[str, set[str]] = {}
    for _, f in _rrf_rows(path, len(RXNREL_COLUMNS)):
        report.rel_rows += 1
        rela = f[_R["RELA"]]
        if f[_R["SAB"]] != "RXNORM" or (rela not in FORWARD_RELAS and rela not in INVERSE_RELAS):
            continue
        if not include_suppressed and f[_R["SUPPRESS"]] in SKIPPED_SUPPRESS:
            report.suppressed_skipped += 1
            continue
        first, second = f[_R["RXCUI1"]], f[_R["RXCUI2"]]
        if first not in concepts or second not in concepts:
            continue  # atom-level rows, or a concept skipped as suppressed
        start, end = (second, first) if rela in FORWARD_RELAS else (first, second)
        targets = edges.setdefault(start, set())
        if end not in targets:
            targets.add(end)
            report.edges += 1
    return edges


def ingredients_of(rxcui: str, concepts: Mapping[str, Concept], edges: Mapping[str, set[str]]) -> set[str]:
    """All IN concepts reachable from ``rxcui`` (breadth first, never walking on from an IN)."""
    found: set[str] = set()
    seen = {rxcui}
    queue = deque([rxcui])
    while queue:
        current = queue.popleft()
        for nxt in edges.get(current, ()):
            if nxt in seen:
                continue
            seen.add(nxt)
            if concepts[nxt].tty == INGREDIENT_TTY:
                found.add(nxt)
            else:
                queue.append(nxt)
    return found


def build_ingredient_rows(
    rrf_dir: Path,
    allowed_ingredients: Collection[str] | None = None,
    deterrents: Iterable[str] = DEFAULT_DETERRENTS,
    include_suppressed: bool = False,
) -> tuple[dict[str, tuple[list[str], str]], BuildReport]:
    """Map every RxNorm drug concept to its ingredients (rows for ``format_ingredient_map``).

    Args:
        rrf_dir: the ``rrf`` folder of an RxNorm full release.
        allowed_ingredients: keep only these ingredient RXCUIs (e.g. those the pack's value sets list);
            products left with none get no row. ``None`` keeps every ingredient.
        deterrents: ingredients dropped from a row when the product has another mapped ingredient.
        include_suppressed: also use obsolete/suppressed (``O``/``Y``) rows.

    Returns:
        ``{product: (ingredients, name)}`` and a report of what was read.

    Raises:
        TerminologyError: when a file is missing or malformed.
    """
    report = BuildReport()
    concepts = read_concepts(rrf_dir / "RXNCONSO.RRF", report, include_suppressed)
    edges = read_edges(rrf_dir / "RXNREL.RRF", concepts, report, include_suppressed)
    allowed = None if allowed_ingredients is None else frozenset(allowed_ingredients)
    deterrent_set = frozenset(deterrents)
    rows: dict[str, tuple[list[str], str]] = {}
    for rxcui, concept in concepts.items():
        if concept.tty not in SOURCE_TTYS:
            continue
        report.products += 1
        found = ingredients_of(rxcui, concepts, edges)
        if allowed is not None:
            found &= allowed
        if len(found) > 1 and found & deterrent_set:
            report.deterrents_dropped += 1
            found -= deterrent_set
        if found:
            rows[rxcui] = (sorted(found, key=lambda c: (len(c), c)), concept.name)
            report.ingredients |= found
    report.mapped = len(rows)
    return rows, report


def load_pack_terminology(pack_dir: Path) -> Pack:
    """Load a pack for its terminology only: value sets, ingredient maps and manifest must be valid,
    rule files may be broken (a terminology build should not wait for a rule author's fix).

    Raises:
        TerminologyError: when the manifest, a value set or an ingredient map does not load.
    """
    # imported here: the loader pulls in the rule model, which plain RRF builds do not need
    from careplan_rules.loader.pack_loader import load_pack_with_diagnostics

    pack, diagnostics = load_pack_with_diagnostics(pack_dir)
    broken = [d for d in diagnostics if d.severity is Severity.ERROR and _is_terminology_problem(d)]
    if pack is None or broken:
        first = broken[0].render() if broken else f"{pack_dir}: not a rule pack"
        raise TerminologyError(first, broken)
    return pack


def _is_terminology_problem(diag: Diagnostic) -> bool:
    if diag.location is None:
        return True
    path = Path(diag.location.file)
    return not path.name.endswith(".rule.yaml") and not path.name.endswith(".test.yaml")


def pack_ingredient_codes(pack_dir: Path) -> dict[str, str]:
    """RxNorm ingredient codes (code → display) listed by the value sets of a rule pack.

    Raises:
        TerminologyError: when the pack's terminology does not load.
    """
    codes: dict[str, str] = {}
    for loaded in load_pack_terminology(pack_dir).valuesets.values():
        for inc in loaded.model.include:
            if inc.level != "ingredient" or canonical_system(inc.system) != RXNORM:
                continue
            for concept in inc.concepts:
                if concept.code is not None:
                    codes.setdefault(concept.code, concept.display or concept.code)
    return codes
