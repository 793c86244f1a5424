// TypeScript types for every message payload of the AsyncAPI document, from the document alone:
// each channel's message payload is a component schema, and json-schema-to-typescript compiles
// them with their shared definitions. Usage: node generate-types.mjs ASYNCAPI.yaml OUT.ts
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

import yaml from "js-yaml";
import { compile } from "json-schema-to-typescript";

const [docPath, outPath] = process.argv.slice(2);
if (!docPath || !outPath) {
  console.error("usage: node generate-types.mjs ASYNCAPI.yaml OUT.ts");
  process.exit(2);
}
const doc = yaml.load(await readFile(docPath, "utf8"));
const payloads = new Set();
for (const channel of Object.values(doc.channels)) {
  for (const message of Object.values(channel.messages ?? {})) {
    const ref = message.payload?.$ref;
    if (ref?.startsWith("#/components/schemas/")) payloads.add(ref.split("/").pop());
  }
}
// One root that refers to every payload, with the document's components beside it so that the
// `#/components/schemas/...` references resolve as they do in the document.
const root = {
  title: "ContractPayloads",
  type: "object",
  properties: Object.fromEntries([...payloads].map((name) => [name, { $ref: `#/components/schemas/${name}` }])),
  additionalProperties: false,
  components: { schemas: doc.components.schemas },
};
const source = await compile(root, "ContractPayloads", {
  bannerComment: `/* Generated from ${path.basename(docPath)} (AsyncAPI ${doc.asyncapi}, contract version ${doc.info.version}) by scripts/generate-types.mjs: do not edit. */`,
  unreachableDefinitions: false,
});
await mkdir(path.dirname(outPath), { recursive: true });
await writeFile(outPath, source);
console.log(`${outPath}: ${payloads.size} payload types from ${docPath}`);
