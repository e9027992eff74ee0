// The TypeScript snippet of the repository's README runs as written.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const readme = readFileSync(join(packageRoot, "..", "..", "README.md"), "utf8");

test("the README agent flow runs and prints what it says", () => {
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]);
  const snippets = blocks.filter((block) => block.startsWith('import { Client, FINISHED } from "@airt/client";'));
  assert.equal(snippets.length, 1);
  assert.ok(snippets[0].trim().split("\n").length <= 15);
  // Inside the package, `@airt/client` resolves to this build (a package may import itself by name).
  const file = join(packageRoot, "dist", "readme-snippet.mjs");
  writeFileSync(file, snippets[0]);
  const output = execFileSync(process.execPath, [file], { encoding: "utf8", timeout: 120_000 });
  assert.deepEqual(output.trim().split("\n"), ["PAUSED", "COMPLETED", "true"]);
});
