"""sweeplab.yaml_files: safe, bounded YAML reading with issues instead of tracebacks."""

from __future__ import annotations

import textwrap
import tracemalloc

import pytest

from sweeplab.spaces import Issue
from sweeplab.yaml_files import MAX_BYTES, MAX_DEPTH, MAX_NODES, parse_yaml, read_yaml


def billion_laughs() -> str:
    """Nine levels of nine aliases: a few hundred bytes that stand for 9**9 values."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def only_issue(issues: list[Issue]) -> Issue:
    assert len(issues) == 1, issues
    return issues[0]


# -- files that read ------------------------------------------------------------------


def test_valid_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("name: demo\nseed: 0\nmethods:\n  ce: {num_samples: 4}\nlr: 1.0e-3\n")
    data, issues = read_yaml(path)
    assert issues == []
    assert data == {"name": "demo", "seed": 0, "methods": {"ce": {"num_samples": 4}}, "lr": 1e-3}


def test_path_may_be_a_string(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("a: 1\n")
    assert read_yaml(str(path)) == ({"a": 1}, [])


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + "name: caf\u00e9\n".encode())
    assert read_yaml(path) == ({"name": "caf\u00e9"}, [])
    assert parse_yaml("\ufeffa: 1", "text") == ({"a": 1}, [])


def test_empty_file_is_none(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    assert read_yaml(path) == (None, [])


def test_ordinary_anchors_and_merge_keys_still_work():
    text = textwrap.dedent("""\
        defaults: &defaults {epochs: 4, lr: 0.01, nested: {a: 1}}
        methods:
          ce: {<<: *defaults, lr: 0.1}
          gce:
            <<: *defaults
            q: 0.7
          sce: {overrides: *defaults}
          both: {<<: [*defaults, {extra: true}]}
        choices: &choices [32, 64]
        again: *choices
        """)
    data, issues = parse_yaml(text, "sweep.yaml")
    assert issues == []
    defaults = {"epochs": 4, "lr": 0.01, "nested": {"a": 1}}
    assert data["defaults"] == defaults
    assert data["methods"]["ce"] == {"epochs": 4, "lr": 0.1, "nested": {"a": 1}}
    assert data["methods"]["gce"] == {**defaults, "q": 0.7}
    assert data["methods"]["sce"] == {"overrides": defaults}
    assert data["methods"]["both"] == {**defaults, "extra": True}
    assert data["again"] == [32, 64]


@pytest.mark.parametrize("text, value", [("4", 4), ("0.1", 0.1), ("[1, 2]", [1, 2]), ("adam", "adam"),
                                         ("{a: 1}", {"a": 1}), ("", None), ("null", None)])
def test_set_values(text, value):
    assert parse_yaml(text, "--set") == (value, [])


def test_a_password_list_reads_as_one_string(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    data, issues = read_yaml(path)
    assert issues == []
    assert isinstance(data, str)  # the caller reports "must be a mapping"


# -- encoding ------------------------------------------------------------------------


def test_non_utf8_bytes_report_offset_and_byte(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: demo\nx: \xff\xfe\n")
    data, issues = read_yaml(path)
    issue = only_issue(issues)
    assert data is None
    assert issue.file == str(path)
    assert issue.key == "line 2"
    assert issue.message == "not UTF-8 text: byte 0xff at offset 14; save the file as UTF-8"


def test_latin1_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    data, issues = read_yaml(path)
    issue = only_issue(issues)
    assert data is None
    assert issue.message.startswith("not UTF-8 text: byte 0xe9 at offset 9;")
    assert "caf" not in issue.message


def test_control_character_is_an_issue():
    data, issues = parse_yaml("a: 1\nb: \x00\n", "f.yaml")
    issue = only_issue(issues)
    assert data is None and issue.key == "line 2"
    assert issue.message.startswith("invalid YAML: character #x0000")


# -- files that cannot be read ------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    data, issues = read_yaml(path)
    assert data is None
    assert issues == [Issue(str(path), "(file)", "cannot read: No such file or directory")]


def test_directory(tmp_path):
    data, issues = read_yaml(tmp_path)
    assert data is None
    assert only_issue(issues).message.startswith("cannot read: ")


def test_file_over_the_size_limit(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    data, issues = read_yaml(path)
    assert data is None
    assert only_issue(issues).message == "refused: larger than 1 MiB; a sweep file is a few KiB"
    assert only_issue(parse_yaml("x" * (MAX_BYTES + 1), "text")[1]).message.startswith("refused: larger")


# -- bounds on what the loader expands --------------------------------------------------------


def test_billion_laughs_is_refused_without_expanding(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 500
    tracemalloc.start()
    try:
        data, issues = read_yaml(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data is None
    issue = only_issue(issues)
    assert issue.file == str(path)
    assert issue.message == (f"refused: its aliases (*name) expand to more than {MAX_NODES} values; "
                             "sweep files and search spaces are small, write the values out")
    assert peak < 20 * 1024 * 1024  # 9**9 values were never built


def test_billion_laughs_through_merge_keys_is_refused():
    lines = ["a: &a {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x}"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    lines.append("z: {<<: *i}")
    data, issues = parse_yaml("\n".join(lines), "merge.yaml")
    assert data is None
    assert only_issue(issues).message.startswith("refused: its aliases (*name) expand to more than")


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {x: 1, y: *a}\n", "- &a [1, [2, *a]]\n"])
def test_recursive_alias_is_refused(text):
    data, issues = parse_yaml(text, "loop.yaml")
    assert data is None
    issue = only_issue(issues)
    assert issue.file == "loop.yaml"
    assert issue.message.startswith("refused: an alias refers to itself")


def test_deep_nesting_is_refused():
    data, issues = parse_yaml("[" * 100_000, "deep.yaml")
    assert data is None
    assert only_issue(issues).message.startswith(f"refused: nested more than {MAX_DEPTH} levels deep")
    assert parse_yaml("[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1), "ok.yaml")[1] == []


def test_deep_nesting_through_aliases_is_refused():
    inner = "[" * 40 + "1" + "]" * 40
    text = f"a: &a {inner}\nb: &b {'[' * 39}*a{']' * 39}\n"
    data, issues = parse_yaml(text, "deep.yaml")
    assert data is None
    assert only_issue(issues).message.startswith("refused: nested more than")


def test_too_many_plain_values_are_refused():
    data, issues = parse_yaml("[" + "1," * (MAX_NODES + 1) + "]", "many.yaml")
    assert data is None
    assert only_issue(issues).message.startswith(f"refused: holds more than {MAX_NODES} values")


# -- documents and syntax ----------------------------------------------------------------------


def test_several_documents_are_refused():
    data, issues = parse_yaml("a: 1\n---\nb: 2\n", "two.yaml")
    assert data is None
    issue = only_issue(issues)
    assert issue.key == "line 2"
    assert issue.message.startswith("holds several YAML documents; a sweep file is one")


def test_one_explicit_document_is_fine():
    assert parse_yaml("---\na: 1\n...\n", "one.yaml") == ({"a": 1}, [])


def test_invalid_yaml_reports_a_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: demo\nseed: 0\nsearch: [tpe, random\n")
    data, issues = read_yaml(path)
    assert data is None
    issue = only_issue(issues)
    assert issue.file == str(path)
    assert issue.key == "line 4"
    assert issue.message.startswith("invalid YAML: while parsing a flow sequence: expected ',' or ']'")


def test_tab_indentation_reports_the_line():
    issue = only_issue(parse_yaml("a:\n\tb: 1\n", "tabs.yaml")[1])
    assert issue.key == "line 2"
    assert "found character '\\t' that cannot start any token" in issue.message


def test_python_tags_are_not_constructed():
    issue = only_issue(parse_yaml("a: !!python/object/apply:os.system [echo hi]\n", "evil.yaml")[1])
    assert issue.message.startswith("invalid YAML: a tag that safe YAML does not read")


# -- messages never echo the file's content ------------------------------------------------------

SECRET = "hunter2secret"
LEAKY = [
    f"root:x:0:0:{SECRET}:/root:/bin/bash\nuser: {SECRET}: nested\n",  # mapping values not allowed
    f"password: !!int {SECRET}\n",  # ValueError quoting the value
    f"password: !!bool {SECRET}\n",  # KeyError quoting the value
    f"password: !!timestamp {SECRET}\n",
    f"password: !!float {SECRET}\n",
    f"password: !{SECRET}!x value\n",  # undefined tag handle
    f"password: !{SECRET} value\n",  # unknown tag
    f"password: *{SECRET}\n",  # undefined alias
    f"a: &{SECRET} 1\nb: &{SECRET} 2\n",  # duplicate anchor
    f"password: &{SECRET} [*{SECRET}]\n",  # recursive alias
    f'password: "{SECRET}\\q"\n',  # bad escape
    f"password: [{SECRET}\n",  # unclosed flow sequence
    f"{SECRET}: 1\n---\n{SECRET}: 2\n",  # several documents
    f"password: {SECRET}\n\t{SECRET}\n",  # tab
    f"? [{SECRET}]\n: 1\n",  # unhashable key
    f"password: {SECRET}\n{SECRET}\x01\n",  # control character
    "x: " + "9" * 5000 + "\n",  # int longer than Python converts
    billion_laughs().replace("x", SECRET),
]


@pytest.mark.parametrize("text", LEAKY)
def test_issue_messages_never_echo_content(tmp_path, text):
    path = tmp_path / "leaky.yaml"
    path.write_bytes(text.encode())
    for data, issues in (read_yaml(path), parse_yaml(text, "leaky.yaml")):
        assert data is None
        issue = only_issue(issues)
        assert issue.message.startswith(("invalid YAML: ", "refused: ", "holds several")), issue
        assert SECRET not in issue.message and SECRET not in issue.key
        assert "9999" not in issue.message
        assert "\n" not in issue.message  # no PyYAML snippet of the text


def test_non_utf8_message_does_not_echo_content(tmp_path):
    path = tmp_path / "leaky.bin"
    path.write_bytes(f"password: {SECRET}\n".encode() + b"\x80" + SECRET.encode())
    issue = only_issue(read_yaml(path)[1])
    assert SECRET not in issue.message
    assert issue.message == f"not UTF-8 text: byte 0x80 at offset {len(SECRET) + 11}; save the file as UTF-8"
