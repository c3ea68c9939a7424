import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import { type Recipe, recipes } from "../../db/schema";
import { allStatements, inPowersOfTwo, type Sql } from "../../db/sql";

const COLUMNS = columnList(recipes);
const toRecipe = rowMapper(recipes);
const encode = rowEncoder(recipes);
const INSERT = `${insertStatement(recipes)} ON CONFLICT DO NOTHING`;
/** Every column but the key and the creation time, which an update never changes. */
const UPDATABLE = COLUMNS.split(", ").filter((c) => c !== "id" && c !== "created_at");
const UPDATE = `UPDATE recipes SET ${UPDATABLE.map((c) => `${c} = ?`).join(", ")} WHERE id = ?`;

export type UsageRow = { variable: string; value: string; count: number };

/** The `recipes` and `recipe_usage` tables. */
export class RecipeRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  async list(includeInactive: boolean): Promise<Recipe[]> {
    const rows = await this.#sql.all(
      `SELECT ${COLUMNS} FROM recipes${includeInactive ? "" : " WHERE active"} ORDER BY id`,
    );
    return rows.map(toRecipe);
  }

  async get(id: string): Promise<Recipe | null> {
    const row = await this.#sql.get(`SELECT ${COLUMNS} FROM recipes WHERE id = ?`, [id]);
    return row ? toRecipe(row) : null;
  }

  /** Inserts `r`; false when a recipe with its id exists. */
  async insert(r: Recipe): Promise<boolean> {
    const { changes } = await this.#sql.run(INSERT, encode(r));
    return changes === 1;
  }

  /** Writes every column of `r` but its id and creation time. */
  async update(r: Recipe): Promise<void> {
    const values = encode(r);
    const names = COLUMNS.split(", ");
    await this.#sql.run(UPDATE, [...UPDATABLE.map((c) => values[names.indexOf(c)]!), r.id]);
  }

  /** Counts one choice of `value` for a recipe's variable. */
  async countUsage(recipeId: string, variable: string, value: string): Promise<void> {
    await this.#sql.run(
      `INSERT INTO recipe_usage (recipe_id, variable, value, count) VALUES (?, ?, ?, 1)
       ON CONFLICT (recipe_id, variable, value) DO UPDATE SET count = recipe_usage.count + 1`,
      [recipeId, variable, value],
    );
  }

  /** `countUsage` for many values at once, each counted `n` times (a statement per power-of-two run, db/sql.ts). */
  async countUsageMany(rows: readonly { recipeId: string; variable: string; value: string; n: number }[]) {
    await allStatements(
      inPowersOfTwo(rows).map((run) =>
        this.#sql.run(
          `INSERT INTO recipe_usage (recipe_id, variable, value, count)
           VALUES ${Array(run.length).fill("(?, ?, ?, ?)").join(", ")}
           ON CONFLICT (recipe_id, variable, value) DO UPDATE SET count = recipe_usage.count + excluded.count`,
          run.flatMap((r) => [r.recipeId, r.variable, r.value, r.n]),
        ),
      ),
    );
  }

  usage(recipeId: string): Promise<UsageRow[]> {
    return this.#sql.all<UsageRow>(
      "SELECT variable, value, count FROM recipe_usage WHERE recipe_id = ? AND count > 0",
      [recipeId],
    );
  }
}
