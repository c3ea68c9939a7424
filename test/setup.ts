/**
 * Preloaded before every test file (bunfig.toml). Bun ignores a `timeout` key in bunfig's [test] table and
 * falls back to 5 s, too short for tests that start servers and processes on a loaded 2-core machine.
 */
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(30_000);
