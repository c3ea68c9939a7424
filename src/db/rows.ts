import { getTableColumns, getTableName, type InferSelectModel, type Table } from "drizzle-orm";
import { placeholders, type SqlParam } from "./sql";

type Raw = Record<string, unknown>;

/**
 * Maps raw rows of `table` (snake_case columns, JSON as text, booleans as 0/1: what a prepared bun:sqlite
 * statement returns) to its drizzle row type, with each column's own decoder. The table is the only place a
 * row is declared: hot paths keep their hand-prepared statements and still never write a row out by hand.
 * Columns whose driver value is the row value are copied as they are.
 */
export function rowMapper<T extends Table>(table: T): (raw: Raw) => InferSelectModel<T> {
  const fields = Object.entries(getTableColumns(table)).map(([key, column]) => {
    const decode = column.mapFromDriverValue.bind(column);
    return { key, name: column.name, decode: isIdentity(decode) ? null : decode };
  });
  const decoders = fields.map((f) => f.decode);
  // Compiled once per table into one object literal: a generic loop over the columns costs 4× more per row.
  const body = fields
    .map((f, i) => {
      const v = `r[${JSON.stringify(f.name)}]`;
      return `${JSON.stringify(f.key)}: ${f.decode ? `${v} == null ? null : d[${i}](${v})` : `${v} ?? null`}`;
    })
    .join(",\n");
  const build = new Function("d", "r", `return {\n${body}\n};`) as (d: unknown[], r: Raw) => unknown;
  return (raw) => build(decoders, raw) as InferSelectModel<T>;
}

/** The table's column names in declaration order, for a statement's select list or RETURNING clause. */
export function columnList(table: Table): string {
  return Object.values(getTableColumns(table))
    .map((c) => c.name)
    .join(", ");
}

function isIdentity(decode: (v: never) => unknown): boolean {
  try {
    return decode("probe" as never) === "probe" && decode(7 as never) === 7;
  } catch {
    return false; // JSON columns parse, and "probe" is not JSON
  }
}

/**
 * The row an insert leaves, built from what it wrote and the table's declared defaults (null where a column
 * has none), without reading it back: a bulk insert must not pay a read per row. Compiled once per table into
 * one object literal, as fast as a row written out by hand (a spread of defaults costs 15× more per row).
 */
export function rowAsInserted<T extends Table>(
  table: T,
): (written: Partial<InferSelectModel<T>>) => InferSelectModel<T> {
  const columns = Object.entries(getTableColumns(table));
  const defaults = columns.map(([, c]) => (c.hasDefault ? (c.default ?? null) : null));
  const body = columns
    .map(
      ([key], i) =>
        `${JSON.stringify(key)}: w[${JSON.stringify(key)}] !== undefined ? w[${JSON.stringify(key)}] : d[${i}]`,
    )
    .join(",\n");
  const build = new Function("d", "w", `return {\n${body}\n};`) as (d: unknown[], w: object) => unknown;
  return (written) => build(defaults, written) as InferSelectModel<T>;
}

/**
 * Encodes a row of `table` into the values of its columns, in declaration order (`columnList`), each with its
 * column's own encoder (JSON to text, booleans to 0/1): the inverse of `rowMapper`, for portable inserts.
 */
export function rowEncoder<T extends Table>(table: T): (row: InferSelectModel<T>) => SqlParam[] {
  const columns = Object.entries(getTableColumns(table)).map(([key, column]) => ({
    key,
    encode: column.mapToDriverValue.bind(column) as (v: unknown) => SqlParam,
  }));
  return (row) =>
    columns.map(({ key, encode }) => {
      const v = (row as Record<string, unknown>)[key];
      return v == null ? null : encode(v);
    });
}

/** `INSERT INTO <table> (<every column>) VALUES (?, …)`, to bind with `rowEncoder(table)`. */
export function insertStatement(table: Table): string {
  const names = Object.values(getTableColumns(table)).map((c) => c.name);
  return `INSERT INTO ${getTableName(table)} (${names.join(", ")}) VALUES (${placeholders(names.length)})`;
}
