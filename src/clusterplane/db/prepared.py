"""Hot reads and inserts: Core statements compiled once per dialect and run on the DBAPI
cursor.

Who uses it: `services/clusters/cluster_views.py`, which answers GET of a cluster, the lists and a
create's or update's response, and the simulated host driver's fault reads (one per active
check of every worker). SQLAlchemy's execution path costs about 70 µs per statement
on top of SQLite's own 30 (the cache key, an execution context, result metadata, `Row`
objects), and a cluster takes seven statements to read; this module skips that path for
statements that are built once at import.

`Prepared(select, row)` compiles its statement for a dialect on first use: the SQL text
and the order of its bound parameters with their bind processors; its first execution
adds the result processors of its columns for the driver's column types (the conversions
SQLAlchemy's `Result` applies: text to datetimes and JSON to objects on SQLite, integers
to booleans). `Reader.all(query, **params)` runs it on one DBAPI connection, inside
whatever transaction that connection is in, and returns its rows as `row` (plain tuples,
or a NamedTuple of the selected columns). `read_snapshot(sessions)` is a read transaction
on a pooled connection with no ORM session at all, `read_once` a single statement on one;
`reader_of(session)` reads on a session's connection (after a flush, so a write
transaction reads what it wrote). `PreparedInsert(table)` is the same for the many-row
inserts of a create and a bring-up (nodes and their phases): `Reader.insert` runs it with
the driver's executemany, in the session's transaction.

Invariants:
    * A prepared statement returns what `connection.execute(select).all()` returns, value
      for value (tests/integration/test_prepared_reads.py).
    * Statements take only named bound parameters, no expanding `IN`: their SQL text is
      the same on every call, so the driver's statement cache is reused.
    * A snapshot reads one consistent state: a deferred transaction on SQLite (a WAL
      snapshot, beside the writer), REPEATABLE READ on PostgreSQL, as
      `engine.read_transaction`.
    * Every statement run here is shown to the engine's watchers (`watch_statements`),
      which is how tests count statements (SQLAlchemy's cursor events do not see them).
    * A driver error is raised as SQLAlchemy raises it (`DBAPIError` and its subclasses),
      so a deadlock or a busy database is retried like any other statement's
      (`db/retry.py`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, Table, insert
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

Processor = Callable[[Any], Any]
R = TypeVar("R", bound=tuple[Any, ...])
Watcher = Callable[[str], None]
_WATCHERS: weakref.WeakKeyDictionary[Engine, list[Watcher]] = weakref.WeakKeyDictionary()


@dataclass
class _Compiled:
    statement: Select[Any]
    sql: str
    positional: tuple[str, ...] | None  # the parameters' order, for positional drivers
    binds: tuple[tuple[str, Processor], ...]  # parameters that need converting
    # Values the statement carries itself (a literal LIMIT's or OFFSET's), by name.
    literals: dict[str, Any]
    # Driver row -> result row; made at the first execution, from the driver's column
    # types. None: the driver's rows are the result rows.
    convert: Callable[[Any], Any] | None = None
    learned: bool = False

    def parameters(self, given: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = {**self.literals, **given}
        for name, process in self.binds:
            values[name] = process(values[name])
        if self.positional is None:
            return values
        return [values[name] for name in self.positional]

    def learn_columns(
        self, dialect: Dialect, description: Sequence[Sequence[Any]], row_type: type
    ) -> None:
        """The result processors SQLAlchemy would apply, given the driver's column types."""
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            for column, described in zip(self.statement.selected_columns, description, strict=True)
        ]
        self.convert = _row_maker(processors, row_type)
        self.learned = True


class Prepared(Generic[R]):
    """One SELECT with named bound parameters, compiled on first use per dialect, whose
    rows come back as `row` (`tuple`, or a NamedTuple of the selected columns)."""

    def __init__(self, statement: Select[*tuple[Any, ...]], row: type[R]) -> None:
        self.statement = statement
        self.row = row
        self._by_dialect: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            found = self._by_dialect[dialect.name] = _compile(self.statement, dialect)
        return found


class PreparedInsert:
    """An INSERT into one table, compiled on first use per dialect and set of columns (the
    keys of the rows it is given), and run with the driver's executemany
    (`Reader.insert`): no statement to build, no execution context, no ORM flush."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._by_columns: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def compiled(self, dialect: Dialect, columns: tuple[str, ...]) -> _Compiled:
        key = (dialect.name, columns)
        found = self._by_columns.get(key)
        if found is None:
            found = self._by_columns[key] = _compile(insert(self.table), dialect, columns)
        return found


def _compile(
    statement: Any, dialect: Dialect, column_keys: Sequence[str] | None = None
) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    binds = []
    literals = {
        name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
    }
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds.append((name, process))
    positional = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return _Compiled(statement, compiled.string, positional, tuple(binds), literals)


def _row_maker(
    processors: Sequence[Processor | None], row_type: type
) -> Callable[[Any], Any] | None:
    """One expression from a driver row to a result row, such as
    `lambda row: new(cls, (row[0], p1(row[1])))`: generated, as `namedtuple` generates its
    methods, because a loop over the columns costs twice as much per row, and a list of
    thousands of phase transitions is read row by row."""
    if row_type is tuple and not any(processors):
        return None
    values = ", ".join(
        f"row[{i}]" if process is None else f"p{i}(row[{i}])"
        for i, process in enumerate(processors)
    )
    scope: dict[str, Any] = {f"p{i}": p for i, p in enumerate(processors) if p is not None}
    body = f"({values},)"
    if row_type is not tuple:
        scope |= {"new": tuple.__new__, "cls": row_type}
        body = f"new(cls, {body})"
    maker: Callable[[Any], Any] = eval(f"lambda row: {body}", scope)
    return maker


class Reader:
    """Runs prepared SELECTs on one DBAPI connection."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect, engine: Engine) -> None:
        self._cursor = dbapi_connection.cursor()
        self.dialect = dialect
        self._watchers = _WATCHERS.get(engine)

    def all(self, query: Prepared[R], **params: Any) -> list[R]:
        compiled = query.compiled(self.dialect)
        self.run(compiled.sql, compiled.parameters(params))
        if not compiled.learned:
            compiled.learn_columns(self.dialect, self._cursor.description, query.row)
        rows: list[Any] = self._cursor.fetchall()
        convert = compiled.convert
        return rows if convert is None else [convert(row) for row in rows]

    def run(self, sql: str, parameters: Any = (), *, many: bool = False) -> None:
        if self._watchers:
            for watcher in self._watchers:
                watcher(sql)
        try:
            if many:
                self._cursor.executemany(sql, parameters)
            else:
                self._cursor.execute(sql, parameters)
        except self.dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy raises it, so callers (db/retry.py) tell the causes apart.
            raise DBAPIError.instance(
                sql, None, exc, self.dialect.loaded_dbapi.Error, hide_parameters=True
            ) from exc

    def insert(self, statement: PreparedInsert, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows` (each with the same keys) in one executemany."""
        if rows:
            compiled = statement.compiled(self.dialect, tuple(rows[0]))
            self.run(compiled.sql, [compiled.parameters(row) for row in rows], many=True)

    def close(self) -> None:
        self._cursor.close()


@contextmanager
def read_snapshot(factory: sessionmaker[Session]) -> Iterator[Reader]:
    """A read transaction on a pooled connection of the factory's engine, without an ORM
    session."""
    engine: Engine = factory.kw["bind"]
    pooled = engine.raw_connection()
    try:
        reader = Reader(pooled.driver_connection, engine.dialect, engine)
        if engine.dialect.name == "postgresql":  # a transaction begins with the first statement
            reader.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        else:
            reader.run("BEGIN")  # deferred: a WAL snapshot once the first SELECT runs
        try:
            yield reader
        finally:
            reader.close()
            pooled.rollback()
    finally:
        pooled.close()


def read_once(factory: sessionmaker[Session], query: Prepared[R], **params: Any) -> list[R]:
    """One prepared SELECT on a pooled connection, outside any explicit transaction: a
    single statement reads one consistent state by itself, and skips BEGIN and its end."""
    engine: Engine = factory.kw["bind"]
    pooled = engine.raw_connection()
    try:
        reader = Reader(pooled.driver_connection, engine.dialect, engine)
        try:
            return reader.all(query, **params)
        finally:
            reader.close()
            pooled.rollback()  # PostgreSQL's driver began one implicitly
    finally:
        pooled.close()


def reader_of(session: Session) -> Reader:
    """A reader on the session's connection and transaction; pending changes are flushed
    first, so a write transaction reads what it wrote."""
    session.flush()
    connection = session.connection()
    return Reader(connection.connection.driver_connection, connection.dialect, connection.engine)


@contextmanager
def watch_statements(engine: Engine, watcher: Watcher) -> Iterator[None]:
    """Show `watcher` the SQL of every statement readers of `engine` run, while open."""
    watchers = _WATCHERS.setdefault(engine, [])
    watchers.append(watcher)
    try:
        yield
    finally:
        watchers.remove(watcher)
