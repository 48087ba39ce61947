"""Reading YAML safely with positions."""

from __future__ import annotations

from pathlib import Path

from careplan_rules.loader.yaml_reader import MAX_FILE_BYTES, read_yaml_bytes, read_yaml_file, read_yaml_text


def test_positions_of_values_and_keys_are_one_based() -> None:
    doc, diags = read_yaml_text("a: 1\nb:\n  c: [x, y]\n", "f.yaml")
    assert not diags and doc is not None
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"]}}
    assert doc.location(("b", "c", 1)).render() == "f.yaml:3:10"
    assert doc.location(("b", "c"), key=True).render() == "f.yaml:3:3"
    # an unknown path falls back to the nearest known ancestor
    assert doc.location(("b", "nope")).render() == "f.yaml:3:3"


def test_duplicate_key_is_an_error_with_both_positions() -> None:
    _doc, diags = read_yaml_text("id: a\ntitle: t\nid: b\n", "f.yaml")
    assert [d.code for d in diags] == ["CPR-E003"]
    assert diags[0].render().startswith("f.yaml:3:1: error CPR-E003: duplicate key 'id' (first defined at line 1)")


def test_tab_indentation_is_reported_at_the_tab() -> None:
    doc, diags = read_yaml_text("a:\n\tb: 1\n", "f.yaml")
    assert doc is None
    assert diags[0].code == "CPR-E004"
    assert diags[0].location is not None and diags[0].location.line == 2


def test_syntax_error_carries_the_parser_position() -> None:
    doc, diags = read_yaml_text("a: [1, 2\nb: 3\n", "f.yaml")
    assert doc is None and diags[0].code == "CPR-E001"
    assert diags[0].location is not None and diags[0].location.line == 2


def test_python_tags_are_refused_not_executed() -> None:
    doc, diags = read_yaml_text("a: !!python/object/apply:os.system ['echo pwned']\n", "f.yaml")
    assert doc is None
    assert diags[0].code == "CPR-E007"
    assert "!!python/object/apply:os.system" in diags[0].message


def test_custom_tags_are_refused() -> None:
    _, diags = read_yaml_text("a: !include other.yaml\n", "f.yaml")
    assert diags[0].code == "CPR-E007"


def test_billion_laughs_fails_fast() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    doc, diags = read_yaml_text("\n".join(lines) + "\n", "bomb.yaml")
    assert doc is None
    assert diags[0].code == "CPR-E008"


def test_recursive_alias_is_refused() -> None:
    doc, diags = read_yaml_text("a: &x [1, *x]\n", "f.yaml")
    assert doc is None and diags[0].code == "CPR-E008"


def test_binary_and_non_utf8_files() -> None:
    _, diags = read_yaml_bytes(b"\x89PNG\r\n\x1a\n\x00\x00", "img.yaml")
    assert diags[0].code == "CPR-E006"
    _, diags = read_yaml_bytes(b"a: caf\xe9\n", "latin1.yaml")
    assert diags[0].code == "CPR-E006"


def test_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    doc, diags = read_yaml_file(big)
    assert doc is None and diags[0].code == "CPR-E005"


def test_yaml_11_scalars_keep_their_source_text() -> None:
    doc, diags = read_yaml_text("a: no\nb: 0012\nc: 2025-03-01\n", "f.yaml")
    assert doc is not None and not diags
    assert doc.data == {"a": False, "b": 10, "c": "2025-03-01"}  # timestamps stay text
    assert doc.raw_scalars[("a",)] == "no"
    assert doc.raw_scalars[("b",)] == "0012"


def test_merge_keys_work_and_explicit_keys_win() -> None:
    doc, diags = read_yaml_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert doc is not None and not diags
    assert doc.data["c"] == {"x": 1, "y": 3}


def test_multiple_documents_are_a_syntax_error() -> None:
    doc, diags = read_yaml_text("a: 1\n---\nb: 2\n", "f.yaml")
    assert doc is None and diags[0].code == "CPR-E001"
