"""Reading YAML: the one place sweeplab turns YAML text into Python data.

Sweep files, search-space files, the resolved ``sweep.yaml`` read back on resume and
the values of ``--set key=value`` all come through ``read_yaml`` / ``parse_yaml``.
Both return ``(data, issues)``: a problem is an ``Issue`` naming the file and the line,
never a traceback, so the CLI can report every problem of a file at once.

Why not plain ``yaml.safe_load``:

* ``safe_load`` builds only plain values (no ``!!python/object``), and so does this
  module: the loader is a ``yaml.SafeLoader`` subclass. But ``safe_load`` still expands
  aliases without bound: a few hundred bytes of nested anchors ("billion laughs",
  ``b: &b [*a, *a, ...]`` nine levels deep) stand for hundreds of millions of values,
  which anything that walks, copies or logs the data (``copy.deepcopy``, MLflow params,
  ``yaml.safe_dump``) then expands. So the node graph is composed first, its expanded
  size and depth are measured (memoised by node, so shared anchors cost nothing), and
  only then are Python objects built. An alias inside its own anchor (``&a [*a]``) is
  refused too. Ordinary anchors and merge keys (``<<: *defaults``) keep working.
* The text is bounded: files over ``MAX_BYTES``, more than ``MAX_NODES`` composed values
  or nesting deeper than ``MAX_DEPTH`` are refused while composing, before PyYAML's
  recursive composer or our consumers can run out of stack or memory.
* Files are decoded as UTF-8 (a BOM is accepted) by us, so a Latin-1 or binary file
  gets a message with the offset of its first bad byte instead of a decode traceback.
* One document per file: a second ``---`` document is an issue, not silently dropped.
* Messages say what is wrong and where (file, line); they never quote the file's text
  (someone may point a sweep at a file of secrets): PyYAML's snippets are left out
  and names it quotes (aliases, tags, ...) are replaced by "(not shown)".
"""

from __future__ import annotations

import ast
import os
import re
from typing import Any, Iterator

import yaml
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, SequenceNode

from sweeplab.spaces import Issue

MAX_BYTES = 1024 * 1024  # a sweep file is a few KiB
MAX_NODES = 100_000  # values, counting each alias as the values it stands for
MAX_DEPTH = 64  # nesting levels of mappings and lists

FILE_KEY = "(file)"
_TOO_LARGE = f"refused: larger than {MAX_BYTES // (1024 * 1024)} MiB; a sweep file is a few KiB"
_TOO_DEEP = f"refused: nested more than {MAX_DEPTH} levels deep; a sweep file is a few levels deep"
_TOO_MANY = f"refused: holds more than {MAX_NODES} values; sweep files and search spaces are small"
_ALIASES_TOO_MANY = (f"refused: its aliases (*name) expand to more than {MAX_NODES} values; "
                     "sweep files and search spaces are small, write the values out")
_SELF_ALIAS = ("refused: an alias refers to itself (*name inside the value of its own &name); "
               "write the values out")
_SEVERAL_DOCUMENTS = "holds several YAML documents; a sweep file is one (remove the extra '---' documents)"


class _Refused(Exception):
    """The text is refused by one of this module's bounds (not a PyYAML error)."""

    def __init__(self, message: str, mark: Mark | None = None):
        super().__init__(message)
        self.message = message
        self.mark = mark


# -- public API -------------------------------------------------------------------


def read_yaml(path: str | os.PathLike[str]) -> tuple[Any, list[Issue]]:
    """The data of one YAML file and ``[]``, or ``None`` and the issues found."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        return None, [Issue(file, FILE_KEY, f"cannot read: {error.strerror or error}")]
    if len(raw) > MAX_BYTES:
        return None, [Issue(file, FILE_KEY, _TOO_LARGE)]
    text, issue = _decode(raw, file)
    if issue is not None:
        return None, [issue]
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> tuple[Any, list[Issue]]:
    """The data of YAML text already in memory (a ``--set`` value, a test); same rules.

    ``file`` names the text in issues (a path, or e.g. ``"--set"``).
    """
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return None, [Issue(file, FILE_KEY, _TOO_LARGE)]
    return _load(text.removeprefix("\ufeff"), file)


# -- decoding ---------------------------------------------------------------------


def _decode(raw: bytes, file: str) -> tuple[str, Issue | None]:
    """UTF-8 text without its BOM, or an issue naming the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff"), None
    except UnicodeDecodeError as error:
        offset = error.start
        line = raw.count(b"\n", 0, offset) + 1
        message = f"not UTF-8 text: byte 0x{raw[offset]:02x} at offset {offset}; save the file as UTF-8"
        return "", Issue(file, f"line {line}", message)


# -- loading ----------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses deep nesting and too many values while composing."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)  # no new value: measured later
        self._nodes += 1
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(_TOO_DEEP, self.peek_event().start_mark)
            if self._nodes > MAX_NODES:
                raise _Refused(_TOO_MANY, self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        self.last_node = node  # where a failing constructor (e.g. ``!!int abc``) was
        return super().construct_object(node, deep)


def _load(text: str, file: str) -> tuple[Any, list[Issue]]:
    try:
        loader = _BoundedLoader(text)  # the reader checks the characters here
    except yaml.YAMLError as error:
        return None, [Issue(file, _error_where(error, text), f"invalid YAML: {_describe(error)}")]
    try:
        node = _single_node(loader)
        if node is None:  # an empty file, like safe_load
            return None, []
        _measure(node)
        return loader.construct_document(node), []
    except _Refused as refused:
        return None, [Issue(file, _where(refused.mark), refused.message)]
    except yaml.YAMLError as error:
        return None, [Issue(file, _error_where(error, text), f"invalid YAML: {_describe(error)}")]
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
        # PyYAML's constructors raise these for values that do not fit their tag
        # (``!!int abc``, ``!!bool maybe``, a 5000-digit int); their text quotes the value.
        node = getattr(loader, "last_node", None)
        message = ("invalid YAML: a value cannot be read as its type "
                   "(a tagged value such as !!int or !!timestamp, or a number too long)")
        return None, [Issue(file, _where(node.start_mark if node else None), message)]
    finally:
        loader.dispose()


def _single_node(loader: _BoundedLoader) -> Node | None:
    """The node of the stream's only document (``None`` if there is none)."""
    if not loader.check_node():
        return None
    node = loader.get_node()
    if loader.check_node():
        raise _Refused(_SEVERAL_DOCUMENTS, loader.peek_event().start_mark)
    return node


# -- measuring the node graph ------------------------------------------------------


def _measure(root: Node) -> None:
    """Refuse a graph whose aliases expand past ``MAX_NODES`` values or ``MAX_DEPTH`` levels.

    A node reached again through an alias costs a lookup (memoised by identity), so
    nine levels of ``[*a, *a, ...]`` are measured in microseconds, not expanded.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, expanded depth)
    active: set[int] = set()  # nodes being measured: reaching one again is a cycle
    shared = [False]  # whether any node was reached twice (through an alias)

    def measure(node: Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            shared[0] = True
            return sizes[key]
        if key in active:
            raise _Refused(_SELF_ALIAS, node.start_mark)
        active.add(key)
        size, depth = 1, 1
        for child in _children(node):
            child_size, child_depth = measure(child)
            size += child_size
            depth = max(depth, child_depth + 1)
            if size > MAX_NODES:
                raise _Refused(_ALIASES_TOO_MANY if shared[0] else _TOO_MANY, node.start_mark)
            if depth > MAX_DEPTH:
                raise _Refused(_TOO_DEEP, node.start_mark)
        active.discard(key)
        sizes[key] = (size, depth)
        return size, depth

    measure(root)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


# -- describing errors --------------------------------------------------------------

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_REWRITES = (
    (re.compile(r"could not determine a constructor for the tag .*"),
     "a tag that safe YAML does not read (e.g. !!python/...); write plain values"),
    (re.compile(r"found undefined alias .*"),
     "an alias (*name) has no anchor (&name) before it"),
    (re.compile(r"found duplicate anchor .*"),
     "an anchor name (&name) is defined twice"),
)


def _describe(error: yaml.YAMLError) -> str:
    """PyYAML's context and problem, without its snippet of the text or quoted names."""
    if isinstance(error, yaml.reader.ReaderError):
        return f"character #x{error.character:04x} is not allowed in YAML ({error.reason})"
    context = getattr(error, "context", None)
    problem = getattr(error, "problem", None)
    if problem == "second occurrence":  # duplicate anchor: the context holds the news
        context, problem = None, context
    parts = [_redact(str(part)) for part in (context, problem) if part]
    return ": ".join(parts) or type(error).__name__


def _redact(text: str) -> str:
    for pattern, replacement in _REWRITES:
        if pattern.fullmatch(text):
            return replacement
    return _QUOTED.sub(_keep_if_harmless, text)


def _keep_if_harmless(match: re.Match[str]) -> str:
    """Keep a quoted single character (``'\\t'``) or token name (``'<stream end>'``)."""
    quoted = match.group(0)
    try:
        value = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        return "(not shown)"
    if isinstance(value, str) and (len(value) == 1 or re.fullmatch(r"<[a-z ]+>", value)):
        return quoted
    return "(not shown)"


def _error_where(error: yaml.YAMLError, text: str) -> str:
    if isinstance(error, yaml.reader.ReaderError):
        return f"line {text.count(chr(10), 0, error.position) + 1}"
    return _where(getattr(error, "problem_mark", None) or getattr(error, "context_mark", None))


def _where(mark: Mark | None) -> str:
    return f"line {mark.line + 1}" if mark is not None else FILE_KEY
