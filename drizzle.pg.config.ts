import { defineConfig } from "drizzle-kit";

/** PostgreSQL migrations (`bun run db:generate:pg`); drizzle.config.ts generates SQLite's from src/db/schema.ts. */
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/pg/schema.ts",
  out: "./src/db/migrations-pg",
  dbCredentials: { url: process.env.DATABASE_URL ?? "postgres://localhost:5432/easel" },
});
