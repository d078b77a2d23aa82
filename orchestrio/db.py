"""Queries that run on every request (the token, the tunnel's route, an instance, a page of the
instance list), compiled once.

Building and compiling a queryset costs Django far more than running it: the tunnel's route
lookup (a join, an EXISTS for the gateway policies) took 0.8 ms to build and compile against
0.03 ms to run on SQLite. A `CompiledQuery` builds its `values()` queryset once per database
connection, with markers in place of the parameters, keeps the SQL, and then only runs it with
new values, converting the columns as the ORM does (aware datetimes, booleans, JSON).

Parameters must be strings compared exactly (`field=value`), or lists of strings for
`field__in=values` or `field__any_of=values` (compiled once per length); None is passed through
to the queryset (`field=None` compiles to IS NULL). Each pattern of None parameters and list
lengths is compiled on its own. Besides its rows, a query gives their `count()` and, when
ordered, a `page()` of them (LIMIT and OFFSET as parameters): what a paginated list runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from weakref import WeakKeyDictionary

from django.db import connections, router
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX  # the placeholders that backend rewrites
from django.db.models import DEFERRED, CharField, Lookup, Model, QuerySet
from django.db.models.lookups import In
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init


class CompiledQuery:
    def __init__(self, model: type[Model], build: Callable[..., QuerySet]) -> None:
        """`build(**params)` returns the `values()` queryset for those parameters."""
        self.model = model
        self.build = build
        self._compiled: WeakKeyDictionary = WeakKeyDictionary()  # connection -> {(kind, pattern): plan}

    def rows(self, **params) -> list[dict]:
        return self._run("rows", params)

    def row(self, **params) -> dict | None:
        rows = self.rows(**params)
        return rows[0] if rows else None

    def page(self, limit: int, offset: int = 0, **params) -> list[dict]:
        """`rows()` from the `offset`th, at most `limit` of them (the queryset must be ordered and
        not sliced): LIMIT and OFFSET are parameters, so every page runs the same statement."""
        return self._run("page", params, [int(limit), int(offset)])

    def count(self, **params) -> int:
        """How many rows `rows()` would return."""
        return self._run("count", params)[0]["count"]

    def explain(self, kind: str = "rows", **params) -> str:
        """The database's plan for `rows()`, `count()` or `page()` (of 50 from the start)."""
        connection, (sql, slots, *_) = self._plan(kind, params)
        with connection.cursor() as cursor:
            cursor.execute(f"{connection.ops.explain_query_prefix()} {sql}", _values(slots, params, [50, 0] if kind == "page" else []))
            return "\n".join(" ".join(str(column) for column in row) for row in cursor.fetchall())

    def _plan(self, kind: str, params: dict) -> tuple:
        connection = connections[router.db_for_read(self.model)]
        pattern = tuple(
            (name, None if value is None else len(value) if isinstance(value, list | tuple) else -1) for name, value in sorted(params.items())
        )
        per_connection = self._compiled.setdefault(connection, {})
        plan = per_connection.get((kind, pattern))
        if plan is None:
            plan = per_connection[kind, pattern] = self._compile(connection, params, kind)
        return connection, plan

    def _run(self, kind: str, params: dict, extra: list | tuple = ()) -> list[dict]:
        connection, (sql, slots, names, compiler, converters) = self._plan(kind, params)
        with connection.cursor() as cursor:
            cursor.execute(sql, _values(slots, params, extra))
            rows = cursor.fetchall()
        if converters:
            rows = compiler.apply_converters(rows, converters)
        return [dict(zip(names, row)) for row in rows]

    def _compile(self, connection, params: dict, kind: str) -> tuple:
        markers: dict[str, _Param] = {}
        stand_ins = {}
        for name, value in params.items():
            if isinstance(value, list | tuple):
                if not value:
                    raise ValueError(f"{name}: an empty list matches nothing; do not run the query")
                stand_ins[name] = [f"\x00{name}\x00{i}" for i in range(len(value))]
                markers.update({marker: _Param(name, i) for i, marker in enumerate(stand_ins[name])})
            elif value is not None:
                stand_ins[name] = f"\x00{name}\x00"
                markers[stand_ins[name]] = _Param(name)
            else:
                stand_ins[name] = None
        queryset = self.build(**stand_ins)
        if kind != "rows" and queryset.query.is_sliced:
            raise ValueError(f"{kind}() of a sliced queryset")
        if kind == "count":
            queryset = queryset.order_by()
        query = queryset.query
        compiler = query.get_compiler(connection=connection)
        sql, constants = compiler.as_sql()
        lists = {tuple(stand_in): _Param(name) for name, stand_in in stand_ins.items() if isinstance(stand_in, list)}
        slots = [
            markers.get(value, value) if isinstance(value, str) else lists.get(tuple(value), value) if isinstance(value, list) else value
            for value in constants
        ]  # fmt: skip
        used = {slot for slot in slots if isinstance(slot, _Param)}
        missing = {marker for marker in markers.values() if marker not in used and _Param(marker.name) not in used}
        if missing:
            raise ValueError(f"parameters not compared exactly (field=value): {sorted({param.name for param in missing})}")
        if kind == "count":
            # As the ORM counts a queryset it cannot count in place: over it as a subquery (the
            # databases flatten it; on PostgreSQL still an index-only scan where one applies).
            return _named(f"SELECT COUNT(*) FROM ({sql}) counted", len(slots)), slots, ["count"], compiler, []
        if kind == "page":
            if not (query.order_by or query.default_ordering and query.get_meta().ordering):
                raise ValueError("page() of an unordered queryset")
            sql += " LIMIT %s OFFSET %s"
        names = list(query.selected) if query.selected else [*query.extra_select, *query.values_select, *query.annotation_select]
        converters = compiler.get_converters([select[0] for select in compiler.select[: compiler.col_count]])
        return _named(sql, len(slots) + (2 if kind == "page" else 0)), slots, names, compiler, converters


def _named(sql: str, expected: int) -> str:
    """The compiled SQL with named placeholders (`%(p0)s`, `%(p1)s`, …) for its `expected` `%s`
    ones, once: Django's SQLite backend rewrites `%s` with a regular expression on every
    execution (27 µs for the 3 KB of a page's records query); named ones it fills with one `%`
    formatting. PostgreSQL's driver takes both."""
    numbers = itertools.count()
    named = FORMAT_QMARK_REGEX.sub(lambda match: f"%(p{next(numbers)})s", sql)
    if next(numbers) != expected:
        raise ValueError(f"the compiled SQL has a different number of placeholders than parameters ({expected})")
    return named


def _values(slots: list, params: dict, extra) -> dict:
    """The parameters for `_named` SQL: each slot's value (a parameter's, or a constant the
    queryset compiled to), then `extra` (LIMIT, OFFSET)."""
    values = [slot.value(params) if isinstance(slot, _Param) else slot for slot in slots]
    values.extend(extra)
    return {f"p{i}": value for i, value in enumerate(values)}


class AnyOf(Lookup):
    """`field__any_of=values`: on PostgreSQL `field = ANY(%s)` with the list as one array
    parameter, elsewhere `field IN (%s, …)`. One statement for any number of values, so
    PostgreSQL can keep one generic plan for a prepared one: with fifty parameters in an IN list
    it planned a page's records query again on every execution (0.3 ms of its 1 ms)."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        return compiler.compile(In(self.lhs, self.rhs))

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", (*lhs_params, list(self.rhs))


CharField.register_lookup(AnyOf)


@cache
def model_fields(model: type[Model]) -> tuple[str, ...]:
    """The attnames of a model's concrete fields: what `values()` selects to rebuild it."""
    return tuple(field.attname for field in model._meta.concrete_fields)


def model_from_row(model: type[Model], row: dict, prefix: str = "", names: tuple[str, ...] | None = None) -> Model:
    """A model instance from a `values()` row that selected `names` (default: `model_fields(model)`)
    under `prefix` (for a joined model), as the ORM builds one from a database row; fields not
    selected are deferred."""
    return model_loader(model, prefix, names)(row)


@cache
def model_loader(model: type[Model], prefix: str = "", names: tuple[str, ...] | None = None) -> Callable[[dict], Model]:
    """`model_from_row` for one model, prefix and selection, prepared once: the function that
    builds an instance from a row."""
    fields = model_fields(model)
    if names is None:
        names = fields
    unknown = set(names) - set(fields)
    if unknown:
        raise ValueError(f"not fields of {model.__name__}: {sorted(unknown)}")
    keys = [prefix + name if name in names else None for name in fields]
    selected = [(attname, key) for attname, key in zip(fields, keys) if key is not None]

    def from_db(row: dict) -> Model:
        return model.from_db(router.db_for_read(model), fields, [DEFERRED if key is None else row[key] for key in keys])

    def direct(row: dict) -> Model:
        # What Model.__init__ does with positional values for a new object when nothing listens
        # for its init signals: each selected field's value in the instance's __dict__ (for a new
        # object its descriptors' __set__ does no more), the rest deferred. A page of 50
        # instances spent more time in __init__ than in its query.
        instance = model.__new__(model)
        instance._state = state = ModelState()
        state.adding = False
        state.db = router.db_for_read(model)
        instance.__dict__.update({attname: row[key] for attname, key in selected})
        return instance

    def load(row: dict) -> Model:
        if pre_init.has_listeners(model) or post_init.has_listeners(model):
            return from_db(row)
        return direct(row)

    return load


@dataclass(frozen=True)
class _Param:
    """Where a parameter's value (or, for a list, its `index`th item) goes among the compiled
    query's parameters."""

    name: str
    index: int | None = None

    def value(self, params: dict):
        value = params[self.name]
        return value if self.index is None else value[self.index]
