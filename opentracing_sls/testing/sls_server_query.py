"""The search part of the SLS query language, as far as trace lookups need it.

A query is ``<search> [| <SQL analysis>]``. This module evaluates the search part against
stored rows (dicts of string values with ``__time__``, ``__source__``, ``__topic__``,
``__tag__:<k>`` and the log's contents):

- ``*`` or nothing: every row.
- ``key: value`` / ``key: "quoted value"`` / ``key = value``: on a key indexed as text with an
  empty token list (ids, exact tags) the whole value must match; with tokens, every token of
  the query value must be a token of the field; a trailing ``*`` matches a prefix. Case is
  ignored unless the index says ``caseSensitive``. ``__tag__:type:service`` is key
  ``__tag__:type``, value ``service`` (the last colon separates key and value).
- ``key > n``, ``>=``, ``<``, ``<=``, ``=`` (numbers), ``key in [a b]`` (inclusive range).
- A bare word or quoted string: full-text, a token of any value.
- ``and`` (also implied between terms), ``or``, ``not``, parentheses; keywords in any case.

The analysis part (after ``|``) is not evaluated here: :class:`~.sls_server.SlsServer` passes
it to its ``sql`` hook, or answers that SQL is not supported.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

Row = Mapping[str, str]
Predicate = Callable[[Row], bool]

DEFAULT_TOKENS = (",", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<",
                  ">", "/", ":", "\n", "\t", "\r", " ")

_TOKEN = re.compile(r'''\s*(?:
    (?P<quoted>"(?:[^"\\]|\\.)*")
  | (?P<op>>=|<=|!=|>|<|=|:|\(|\)|\[|\])
  | (?P<word>[^\s()"\[\]:=<>!]+)
)''', re.VERBOSE)


class QueryError(ValueError):
    """The query cannot be parsed; answered as 400 ``ParameterInvalid``."""


def split_query(query: str) -> Tuple[str, str]:
    """(search, analysis) at the first ``|`` outside quotes."""
    in_quotes = escaped = False
    for i, ch in enumerate(query):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == "|" and not in_quotes:
            return query[:i].strip(), query[i + 1:].strip()
    return query.strip(), ""


def _tokens(text: str) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise QueryError("cannot parse the query at %r" % text[pos:pos + 20])
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "quoted":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
    return out


class _Parser:
    def __init__(self, text: str, index: Optional[Mapping[str, Any]]) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.index = index or {}

    def peek(self, offset: int = 0) -> Tuple[str, str]:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else ("end", "")

    def take(self) -> Tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def keyword(self, name: str) -> bool:
        kind, value = self.peek()
        return kind == "word" and value.lower() == name

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda row: True
        predicate = self.or_expr()
        if self.peek()[0] != "end":
            raise QueryError("unexpected %r in the query" % self.peek()[1])
        return predicate

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.keyword("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while True:
            if self.keyword("and"):
                self.take()
            elif self.peek()[0] == "end" or self.keyword("or") or self.peek() == ("op", ")"):
                break
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def not_expr(self) -> Predicate:
        if self.keyword("not"):
            self.take()
            inner = self.not_expr()
            return lambda row: not inner(row)
        if self.peek() == ("op", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("op", ")"):
                raise QueryError("missing ) in the query")
            return inner
        return self.term()

    def term(self) -> Predicate:
        kind, value = self.take()
        if kind == "op":
            raise QueryError("unexpected %r in the query" % value)
        if kind == "word" and value == "*":
            return lambda row: True
        key = value
        # key:part:part: value -> the last colon separates the key from the value
        while self.peek() == ("op", ":") and self.peek(1)[0] in ("word", "quoted") and \
                self.peek(2) == ("op", ":"):
            key += ":" + self.peek(1)[1]
            self.pos += 2
        op_kind, op = self.peek()
        if op_kind == "op" and op in (":", "="):
            self.take()
            vkind, operand = self.take()
            if vkind not in ("word", "quoted"):
                raise QueryError("a value must follow %s%s" % (key, op))
            return self.match(key, operand, vkind == "quoted")
        if op_kind == "op" and op in (">", ">=", "<", "<=", "!="):
            self.take()
            number = _number(self.take()[1])
            return _compare(key, op, number)
        if kind == "word" and op_kind == "word" and op.lower() == "in" and \
                self.peek(1) == ("op", "["):
            self.pos += 2
            low, high = _number(self.take()[1]), _number(self.take()[1])
            if self.take() != ("op", "]"):
                raise QueryError("missing ] in the range")
            return lambda row: _in_range(row.get(key), low, high)
        return self.full_text(value)

    def match(self, key: str, operand: str, quoted: bool) -> Predicate:
        config = (self.index.get("keys") or {}).get(key)
        if config is not None and config.get("type") in ("long", "double"):
            number = _number(operand)
            return _compare(key, "=", number)
        line = self.index.get("line") or {}
        tokens = tuple((config or line).get("token", DEFAULT_TOKENS)) if (config or line) \
            else DEFAULT_TOKENS
        case = bool((config or line).get("caseSensitive", False)) if (config or line) else False
        prefix = operand.endswith("*") and not quoted
        wanted = operand[:-1] if prefix else operand
        wanted = wanted if case else wanted.lower()
        if not tokens:
            def whole(row: Row) -> bool:
                value = row.get(key)
                if value is None:
                    return False
                value = value if case else value.lower()
                return value.startswith(wanted) if prefix else value == wanted
            return whole
        parts = split_tokens(wanted, tokens)

        def tokenized(row: Row) -> bool:
            value = row.get(key)
            if value is None:
                return False
            have = split_tokens(value if case else value.lower(), tokens)
            if prefix:
                return bool(parts) and all(p in have for p in parts[:-1]) and any(
                    h.startswith(parts[-1]) for h in have)
            return bool(parts) and all(p in have for p in parts)
        return tokenized

    def full_text(self, word: str) -> Predicate:
        line = self.index.get("line") or {}
        tokens = tuple(line.get("token", DEFAULT_TOKENS)) or DEFAULT_TOKENS
        wanted = split_tokens(word.lower(), tokens)

        def anywhere(row: Row) -> bool:
            have = set()
            for key, value in row.items():
                if not key.startswith("__"):
                    have.update(split_tokens(value.lower(), tokens))
            return bool(wanted) and all(w in have for w in wanted)
        return anywhere


def split_tokens(text: str, tokens: Sequence[str]) -> List[str]:
    if not tokens:
        return [text]
    pattern = "[" + re.escape("".join(tokens)) + "]+"
    return [part for part in re.split(pattern, text) if part]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise QueryError("%r is not a number" % text) from None


def _as_number(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _compare(key: str, op: str, number: float) -> Predicate:
    def check(row: Row) -> bool:
        value = _as_number(row.get(key))
        if value is None:
            return False
        return {"=": value == number, "!=": value != number, ">": value > number,
                ">=": value >= number, "<": value < number, "<=": value <= number}[op]
    return check


def _in_range(value: Optional[str], low: float, high: float) -> bool:
    number = _as_number(value)
    return number is not None and low <= number <= high


def compile_search(search: str, index: Optional[Mapping[str, Any]] = None) -> Predicate:
    """A predicate over rows for the search part of a query (raises :class:`QueryError`)."""
    return _Parser(search, index).parse()


def select(rows: Sequence[Dict[str, str]], search: str, start: int, end: int,
           index: Optional[Mapping[str, Any]] = None) -> List[Dict[str, str]]:
    """Rows with ``start <= __time__ < end`` matching ``search``, oldest first."""
    predicate = compile_search(search, index)
    hits = [row for row in rows if start <= int(row["__time__"]) < end and predicate(row)]
    hits.sort(key=lambda row: int(row["__time__"]))
    return hits
