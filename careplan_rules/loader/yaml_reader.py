"""Read YAML safely, remembering the line and column of every key and value.

Rule files come from people and from repositories, so reading them must never execute
anything, hang or blow up memory:

* PyYAML only *composes* the node graph here; we build plain Python values ourselves, so a
  ``!!python/object`` tag is data we reject, never code we run (CPR-E007);
* aliases are expanded under a node budget, so a "billion laughs" file fails fast (CPR-E008),
  and recursive aliases are refused;
* files over a size cap, binary files and tab indentation get their own clear errors;
* duplicate keys, which PyYAML silently resolves to "last one wins", are errors (CPR-E003).

YAML 1.1 turns ``2025-03-01`` into a date and ``0012`` into the octal number 10. Timestamps
stay strings here (the models parse them), and codes are declared as strings in the models so
an unquoted numeric code is reported rather than mangled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.model.common import YamlPath

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NODES = 50_000
MAX_DEPTH = 64

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp", "merge")}
_TAB_INDENT = re.compile(r"^[ ]*\t", re.MULTILINE)


@dataclass(slots=True)
class YamlDocument:
    """A parsed YAML file: plain data plus the position of every value and key."""

    file: str
    data: Any
    value_positions: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    # the source text of scalars YAML turned into something else (no -> False, 0012 -> 10)
    raw_scalars: dict[YamlPath, str] = field(default_factory=dict)

    def location(self, path: YamlPath = (), *, key: bool = False) -> SourceLocation:
        """The location of the value (or key) at ``path``, or of its nearest known ancestor."""
        table = self.key_positions if key else self.value_positions
        probe = tuple(path)
        while True:
            pos = table.get(probe)
            if pos is None and key:
                pos = self.value_positions.get(probe)
            if pos is not None:
                return SourceLocation(self.file, pos[0], pos[1])
            if not probe:
                return SourceLocation(self.file, 1, 1)
            probe = probe[:-1]


class _Budget(Exception):
    pass


class _Problem(Exception):
    def __init__(self, code: str, message: str, node: Node) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.node = node


def read_yaml_file(path: str | Path, display_name: str | None = None) -> tuple[YamlDocument | None, list[Diagnostic]]:
    """Read a YAML file from disk; see :func:`read_yaml_text`."""
    name = display_name or str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        return None, [_diag("CPR-E009", f"cannot read file: {exc.strerror or exc}", name)]
    if size > MAX_FILE_BYTES:
        return None, [
            _diag(
                "CPR-E005",
                f"file is {size / 1_048_576:.1f} MB; rule pack files are limited to {MAX_FILE_BYTES // 1_048_576} MB",
                name,
            )
        ]
    try:
        raw = p.read_bytes()
    except OSError as exc:
        return None, [_diag("CPR-E009", f"cannot read file: {exc.strerror or exc}", name)]
    return read_yaml_bytes(raw, name)


def read_yaml_bytes(raw: bytes, name: str) -> tuple[YamlDocument | None, list[Diagnostic]]:
    if len(raw) > MAX_FILE_BYTES:
        return None, [_diag("CPR-E005", f"file is larger than {MAX_FILE_BYTES // 1_048_576} MB", name)]
    if b"\x00" in raw:
        return None, [_diag("CPR-E006", "file is binary (contains NUL bytes), not YAML text", name)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [_diag("CPR-E006", f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x})", name, line)]
    return read_yaml_text(text, name)


def read_yaml_text(text: str, name: str) -> tuple[YamlDocument | None, list[Diagnostic]]:
    """Parse one YAML document into plain data with positions.

    Returns:
        ``(document, diagnostics)``; the document is None when the text is not usable YAML.
    """
    tab = _TAB_INDENT.search(text)
    if tab is not None:
        line = text.count("\n", 0, tab.start()) + 1
        col = tab.end() - tab.start()
        return None, [
            _diag(
                "CPR-E004",
                "tab character used for indentation; YAML allows only spaces",
                name,
                line,
                col,
            )
        ]
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        return None, [
            _diag(
                "CPR-E001",
                f"YAML syntax error: {problem}",
                name,
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
            )
        ]
    except yaml.YAMLError as exc:
        return None, [_diag("CPR-E001", f"YAML syntax error: {exc}", name)]
    except RecursionError:
        return None, [_diag("CPR-E008", "YAML nesting is too deep", name)]
    doc = YamlDocument(file=name, data=None)
    if node is None:
        return doc, []
    builder = _Builder(doc)
    try:
        doc.data = builder.build(node, (), 0)
    except _Budget:
        return None, [
            _diag(
                "CPR-E008",
                f"YAML aliases expand to more than {MAX_NODES} nodes (an alias bomb?); refusing to load",
                name,
            )
        ]
    except _Problem as exc:
        mark = exc.node.start_mark
        return None, [_diag(exc.code, exc.message, name, mark.line + 1, mark.column + 1)]
    return doc, builder.diagnostics


# libyaml's composer is ~15x faster than PyYAML's pure-Python one (the bundled pack's 46 files:
# 8 s -> 0.5 s) and reports the same line/column marks; PyYAML wheels ship it on every platform
# we support, the pure-Python loader is the fallback for source builds without libyaml.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Builder:
    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.count = 0
        self.active: set[int] = set()
        self.diagnostics: list[Diagnostic] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def build(self, node: Node, path: YamlPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Budget
        if depth > MAX_DEPTH:
            raise _Problem("CPR-E008", f"YAML nesting deeper than {MAX_DEPTH} levels", node)
        if node.tag not in _ALLOWED_TAGS:
            raise _Problem(
                "CPR-E007",
                f"unsupported YAML tag {_short_tag(node.tag)!r}; rule files may contain only plain data",
                node,
            )
        mark = node.start_mark
        self.doc.value_positions.setdefault(path, (mark.line + 1, mark.column + 1))
        if id(node) in self.active:
            raise _Problem("CPR-E008", "recursive YAML alias", node)
        if isinstance(node, ScalarNode):
            value = self._scalar(node)
            if not isinstance(value, str):
                self.doc.raw_scalars.setdefault(path, node.value)
            return value
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))
        raise _Problem("CPR-E001", "unexpected YAML node", node)  # pragma: no cover

    def _scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag == _CORE + "str" or tag == _CORE + "timestamp":
            return node.value
        if tag == _CORE + "null":
            return None
        if tag == _CORE + "bool":
            return self._scalars.construct_yaml_bool(node)
        if tag == _CORE + "int":
            return self._scalars.construct_yaml_int(node)
        if tag == _CORE + "float":
            return self._scalars.construct_yaml_float(node)
        return node.value

    def _mapping(self, node: MappingNode, path: YamlPath, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        explicit: set[str] = set()
        merges: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                merges.append((key_node, value_node))
                continue
            if not isinstance(key_node, ScalarNode):
                raise _Problem("CPR-E001", "mapping keys must be plain text", key_node)
            key = str(key_node.value)
            child = (*path, key)
            if key in explicit:
                first = self.doc.key_positions.get(child)
                where = f" (first defined at line {first[0]})" if first else ""
                self.diagnostics.append(
                    _diag(
                        "CPR-E003",
                        f"duplicate key {key!r}{where}; YAML would silently keep only the last one",
                        self.doc.file,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                    )
                )
                continue
            explicit.add(key)
            self.doc.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, child, depth + 1)
        for _key_node, value_node in merges:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise _Problem("CPR-E001", "'<<' merge needs a mapping or a list of mappings", source)
                merged = self.build(source, path, depth + 1)
                for k, v in merged.items():
                    out.setdefault(k, v)
        return out


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _diag(code: str, message: str, file: str, line: int | None = None, col: int | None = None) -> Diagnostic:
    return Diagnostic(code=code, message=message, location=SourceLocation(file, line, col))
