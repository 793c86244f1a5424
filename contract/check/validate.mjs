// Validates the contract: the AsyncAPI document with the official parser (@asyncapi/parser, the
// one behind the AsyncAPI CLI), then every message example against the standalone JSON Schema
// its message names in `x-json-schema`, with ajv (draft 2020-12, the dialect pydantic writes).
// Usage: node validate.mjs [path/to/asyncapi.yaml]. Exits 1 on any error or warning.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { fromFile, Parser } from "@asyncapi/parser";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const here = path.dirname(fileURLToPath(import.meta.url));
const docPath = path.resolve(process.argv[2] ?? path.join(here, "..", "asyncapi.yaml"));
const root = path.dirname(docPath);
const SEVERITY = ["error", "warning", "info", "hint"];

const problems = [];
const { document, diagnostics } = await fromFile(new Parser(), docPath).parse();
for (const d of diagnostics) {
  const where = d.path.join(".") || "<root>";
  const line = `${SEVERITY[d.severity]} ${d.code} at ${where}: ${d.message}`;
  if (d.severity <= 1) problems.push(line);
  else console.log(line);
}
if (document === undefined) {
  console.error(problems.join("\n"));
  process.exit(1);
}

const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);
const compiled = new Map();
async function validator(file) {
  if (!compiled.has(file)) {
    const schema = JSON.parse(await readFile(path.join(root, file), "utf8"));
    compiled.set(file, ajv.compile(schema));
  }
  return compiled.get(file);
}

let checked = 0;
const raw = document.json();
for (const [channelId, channel] of Object.entries(raw.channels)) {
  for (const [messageId, message] of Object.entries(channel.messages ?? {})) {
    const files = message["x-json-schema"] ?? {};
    const examples = message.examples ?? [];
    if (Object.keys(files).length > 0 && examples.length === 0) {
      problems.push(`${channelId}/${messageId}: no example`);
    }
    for (const example of examples) {
      for (const [part, file] of Object.entries(files)) {
        const validate = await validator(file);
        if (!validate(example[part])) {
          problems.push(
            `${channelId}/${messageId} example ${example.name}: ${part} fails ${file}: ${ajv.errorsText(validate.errors)}`,
          );
        }
        checked += 1;
      }
    }
  }
}

if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(
  `${path.basename(docPath)}: valid AsyncAPI ${raw.asyncapi}; ${checked} example parts valid against ${compiled.size} JSON Schemas`,
);
