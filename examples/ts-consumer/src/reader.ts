// What a consumer of the scorer's outputs must do with each record, as the contract says:
// validate it against the published JSON Schema (which accepts fields it does not know), drop a
// duplicate by its id (delivery is at-least-once), and drop a segment update whose version is not
// above the last one applied for that user. No Kafka here: see consumer.ts.
import { readFileSync } from "node:fs";
import path from "node:path";

import Ajv2020, { type ValidateFunction } from "ajv/dist/2020";
import addFormats from "ajv-formats";

import type { CsReply, SegmentUpdate } from "./generated/contract";

export type Outcome = "applied" | "duplicate" | "stale" | "invalid";
export const TOPICS = ["segment-updates", "cs-replies"] as const;
export type Topic = (typeof TOPICS)[number];

const SCHEMA_FILES: Record<Topic, string> = {
  "segment-updates": "segment-update.json",
  "cs-replies": "cs-reply.json",
};

export interface TopicCounts {
  received: number;
  applied: number;
  duplicate: number;
  stale: number;
  invalid: number;
}

export interface Summary {
  records: number;
  topics: Record<Topic, TopicCounts>;
  latestVersions: Record<string, number>;
  replyActions: Record<string, number>;
  unknownFields: string[];
  invalidReasons: string[];
}

export class Reader {
  private readonly validators: Record<Topic, ValidateFunction>;
  private readonly known: Record<Topic, Set<string>>;
  private readonly seen: Record<Topic, Set<string>> = { "segment-updates": new Set(), "cs-replies": new Set() };
  private readonly versions = new Map<string, number>();
  private readonly summary: Summary = {
    records: 0,
    topics: {
      "segment-updates": { received: 0, applied: 0, duplicate: 0, stale: 0, invalid: 0 },
      "cs-replies": { received: 0, applied: 0, duplicate: 0, stale: 0, invalid: 0 },
    },
    latestVersions: {},
    replyActions: {},
    unknownFields: [],
    invalidReasons: [],
  };

  constructor(schemaDir: string) {
    const ajv = new Ajv2020({ allErrors: true });
    addFormats(ajv);
    const load = (topic: Topic) => JSON.parse(readFileSync(path.join(schemaDir, SCHEMA_FILES[topic]), "utf8"));
    const schemas = { "segment-updates": load("segment-updates"), "cs-replies": load("cs-replies") };
    this.validators = {
      "segment-updates": ajv.compile(schemas["segment-updates"]),
      "cs-replies": ajv.compile(schemas["cs-replies"]),
    };
    this.known = {
      "segment-updates": new Set(Object.keys(schemas["segment-updates"].properties)),
      "cs-replies": new Set(Object.keys(schemas["cs-replies"].properties)),
    };
  }

  /** One record's value (`topic` without the deployment's prefix). */
  read(topic: Topic, value: Buffer | null): Outcome {
    const counts = this.summary.topics[topic];
    this.summary.records += 1;
    counts.received += 1;
    const outcome = this.decide(topic, value);
    counts[outcome] += 1;
    return outcome;
  }

  result(): Summary {
    return {
      ...this.summary,
      latestVersions: Object.fromEntries([...this.versions].sort(([a], [b]) => a.localeCompare(b))),
    };
  }

  private decide(topic: Topic, value: Buffer | null): Outcome {
    let record: unknown;
    try {
      record = JSON.parse(value?.toString("utf8") ?? "null");
    } catch (err) {
      return this.invalid(topic, `not JSON: ${(err as Error).message}`);
    }
    const validate = this.validators[topic];
    if (!validate(record)) {
      const why = (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ");
      return this.invalid(topic, why);
    }
    const fields = Object.keys(record as object).filter((k) => !this.known[topic].has(k));
    for (const name of fields) {
      if (!this.summary.unknownFields.includes(`${topic}:${name}`)) this.summary.unknownFields.push(`${topic}:${name}`);
    }
    if (topic === "segment-updates") return this.segmentUpdate(record as SegmentUpdate);
    return this.csReply(record as CsReply);
  }

  private invalid(topic: Topic, why: string): Outcome {
    this.summary.invalidReasons.push(`${topic}: ${why}`);
    return "invalid";
  }

  private segmentUpdate(update: SegmentUpdate): Outcome {
    const seen = this.seen["segment-updates"];
    if (seen.has(update.update_id)) return "duplicate";
    seen.add(update.update_id);
    const last = this.versions.get(update.user_id) ?? 0;
    if (update.version <= last) return "stale";
    this.versions.set(update.user_id, update.version);
    return "applied";
  }

  private csReply(reply: CsReply): Outcome {
    const seen = this.seen["cs-replies"];
    if (seen.has(reply.reply_id)) return "duplicate";
    seen.add(reply.reply_id);
    this.summary.replyActions[reply.action] = (this.summary.replyActions[reply.action] ?? 0) + 1;
    return "applied";
  }
}
