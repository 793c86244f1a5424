// An example consumer of the scorer's outputs in a second language: it reads segment-updates and
// cs-replies from the beginning, applies each record as the contract says (reader.ts), and prints
// a JSON summary on stdout. Bounded: it stops after --max-records records or --timeout-s seconds.
//
//   node dist/consumer.js --bootstrap 127.0.0.1:9092 [--prefix PREFIX] [--max-records N]
//                         [--timeout-s 60] [--schemas ../../contract/schemas]
import path from "node:path";
import { parseArgs } from "node:util";

import { Kafka, logLevel, type LogEntry } from "kafkajs";

import { Reader, TOPICS, type Topic } from "./reader";

const { values: args } = parseArgs({
  options: {
    bootstrap: { type: "string", default: process.env.KAFKA_BOOTSTRAP ?? "127.0.0.1:9092" },
    prefix: { type: "string", default: "" },
    "max-records": { type: "string" },
    "timeout-s": { type: "string", default: "60" },
    schemas: { type: "string", default: path.resolve(__dirname, "..", "..", "..", "contract", "schemas") },
    group: { type: "string", default: `example-consumer-${process.pid}-${Date.now()}` },
  },
});
const maxRecords = args["max-records"] === undefined ? Infinity : Number(args["max-records"]);
const timeoutMs = Number(args["timeout-s"]) * 1000;

// kafkajs logs to stdout by default; the summary owns stdout.
const toStderr = () => (entry: LogEntry) => {
  const { message, ...extra } = entry.log;
  process.stderr.write(`kafkajs ${entry.label} ${entry.namespace}: ${message} ${JSON.stringify(extra)}\n`);
};

async function main(): Promise<number> {
  const reader = new Reader(args.schemas);
  const kafka = new Kafka({
    clientId: "marketing-scorer-example-consumer",
    brokers: args.bootstrap.split(","),
    logLevel: logLevel.WARN,
    logCreator: toStderr,
  });
  const consumer = kafka.consumer({ groupId: args.group, allowAutoTopicCreation: false });
  const byName = new Map<string, Topic>(TOPICS.map((t) => [`${args.prefix}${t}`, t]));

  let finish: (timedOut: boolean) => void = () => {};
  const finished = new Promise<boolean>((resolve) => (finish = resolve));
  const timer = setTimeout(() => finish(true), timeoutMs);

  await consumer.connect();
  await consumer.subscribe({ topics: [...byName.keys()], fromBeginning: true });
  let taken = 0;
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      if (taken >= maxRecords) return; // stopping: past the bound
      taken += 1;
      reader.read(byName.get(topic) as Topic, message.value);
      if (taken >= maxRecords) finish(false);
    },
  });
  const timedOut = await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  process.stdout.write(JSON.stringify({ ...reader.result(), timedOut }) + "\n");
  return timedOut && maxRecords !== Infinity ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`example consumer failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(2);
  },
);
