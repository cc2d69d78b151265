/**
 * The operations keys of the server config: `outputs` (what happens on
 * lease events and on a timer), `log_level` and `readiness_delay`.
 *
 * ```jsonc
 * "log_level": "info",
 * "readiness_delay": 600,
 * "outputs": [
 *   { "kind": "eventlog" },
 *   { "kind": "rt_tables", "path": "/etc/iproute2/rt_tables.d/table-allocator.conf" },
 *   { "kind": "command", "command": ["/usr/local/sbin/on-lease"], "timeout": 10, "retries": 2 },
 *   { "kind": "log", "interval": 300 },
 *   { "kind": "prometheus_textfile", "path": "/var/lib/node_exporter/table-allocator.prom" }
 * ]
 * ```
 *
 * @module
 */

import { ConfigError } from "./config_error.ts";
import { MAX_TABLE_TIMEOUT } from "./limits.ts";

/** Severity threshold of the server's log. */
export type LogLevel = "error" | "warn" | "info" | "debug";
/** The accepted `log_level` values, most severe first. */
export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];

/** Lease events an output hears of. */
export type LeaseEventKind = "granted" | "refreshed" | "moved" | "released" | "expired";
/** Every lease event, in the order of a lease's life. */
export const LEASE_EVENT_KINDS: readonly LeaseEventKind[] = [
  "granted",
  "refreshed",
  "moved",
  "released",
  "expired",
];
/** What a `command` output runs on when it names no `events`: refreshes are too frequent. */
export const DEFAULT_COMMAND_EVENTS: readonly LeaseEventKind[] = [
  "granted",
  "moved",
  "released",
  "expired",
];

/** Where `rt_tables` writes when it names no `path`: a file iproute2 reads. */
export const DEFAULT_RT_TABLES_PATH = "/etc/iproute2/rt_tables.d/table-allocator.conf";
/** The default table name template. */
export const DEFAULT_NAME_TEMPLATE = "{ifname}-{family}";
/** Placeholders a name template may use. */
export const NAME_PLACEHOLDERS = ["ifname", "family", "address", "table", "tag"] as const;

/** One configured output. */
export type OutputConfig =
  | { kind: "eventlog" }
  | { kind: "rt_tables"; path: string; name: string }
  | {
    kind: "command";
    /** argv: the program, then its arguments (no shell). */
    command: string[];
    events: LeaseEventKind[];
    /** Seconds before a run is killed. */
    timeout: number;
    /** Further runs after a failure or a timeout. */
    retries: number;
  }
  | { kind: "log"; interval: number }
  | { kind: "prometheus_textfile"; path: string; interval: number };

/** The kinds of output. */
export type OutputKind = OutputConfig["kind"];
/** Every kind, for messages. */
export const OUTPUT_KINDS: readonly OutputKind[] = [
  "eventlog",
  "rt_tables",
  "command",
  "log",
  "prometheus_textfile",
];

/** The validated operations keys. */
export interface OperationsConfig {
  /** Outputs in config order; `[eventlog]` when `outputs` is absent. */
  outputs: OutputConfig[];
  /** Lines below this level are not logged (default `info`). */
  logLevel: LogLevel;
  /**
   * Seconds a table that the kernel's rules still route through stays held
   * for its address after a start (default `table_timeout`; 0 turns it off).
   */
  readinessDelay: number;
}

/** Longest `timeout` of a command: one hour. */
const MAX_COMMAND_TIMEOUT = 3600;
/** Most `retries` of a command. */
const MAX_RETRIES = 10;
/** Longest `interval` of a periodic output: one day. */
const MAX_INTERVAL = 86_400;

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function integer(value: unknown, where: string, min: number, max: number, key = where): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `${where} must be an integer from ${min} to ${max}, got ${show(value)}`,
      key,
    );
  }
  return value;
}

function path(value: unknown, where: string, suffix: string, why: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > 4096) {
    throw new ConfigError(
      `${where} must be a file path (a non-empty string), got ${show(value)}`,
      where,
    );
  }
  if (value.endsWith("/") || !value.endsWith(suffix)) {
    throw new ConfigError(
      `${where} must name a file ending in "${suffix}" (${why}), got ${show(value)}`,
      where,
    );
  }
  return value;
}

/** Checks a name template: only known `{placeholders}`, and something to name. */
function checkNameTemplate(template: unknown, where: string): string {
  if (typeof template !== "string" || template.length === 0 || template.length > 128) {
    throw new ConfigError(
      `${where} must be a string of 1 to 128 characters, got ${show(template)}`,
      where,
    );
  }
  const rest = template.replace(/\{([^{}]*)\}/g, (_, name: string) => {
    if (!(NAME_PLACEHOLDERS as readonly string[]).includes(name)) {
      throw new ConfigError(
        `${where} uses an unknown placeholder {${name}}; known: ${
          NAME_PLACEHOLDERS.map((p) => `{${p}}`).join(", ")
        }`,
        where,
      );
    }
    return "";
  });
  if (/[{}]/.test(rest)) {
    throw new ConfigError(`${where} has an unmatched "{" or "}": ${show(template)}`, where);
  }
  return template;
}

function events(value: unknown, where: string): LeaseEventKind[] {
  if (
    !Array.isArray(value) || value.length === 0 ||
    !value.every((e) => (LEASE_EVENT_KINDS as readonly unknown[]).includes(e))
  ) {
    throw new ConfigError(
      `${where} must be a non-empty list of ${LEASE_EVENT_KINDS.join(", ")}, got ${show(value)}`,
      where,
    );
  }
  return [...new Set(value as LeaseEventKind[])];
}

function argv(value: unknown, where: string): string[] {
  if (
    !Array.isArray(value) || value.length === 0 ||
    !value.every((a) => typeof a === "string" && !a.includes("\0")) || value[0] === ""
  ) {
    throw new ConfigError(
      `${where} must be a non-empty list of strings, the program first (no shell), got ${
        show(value)
      }`,
      where,
    );
  }
  return value as string[];
}

const OPTION_KEYS: Record<OutputKind, readonly string[]> = {
  eventlog: [],
  rt_tables: ["path", "name"],
  command: ["command", "events", "timeout", "retries"],
  log: ["interval"],
  prometheus_textfile: ["path", "interval"],
};

function output(raw: unknown, where: string): OutputConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      `${where} must be an object like {"kind": "eventlog"}, got ${show(raw)}`,
      where,
    );
  }
  const obj = raw as Record<string, unknown>;
  const kind = obj.kind;
  if (!(OUTPUT_KINDS as readonly unknown[]).includes(kind)) {
    throw new ConfigError(
      `${where}.kind must be one of ${OUTPUT_KINDS.join(", ")}, got ${show(kind)}`,
      `${where}.kind`,
    );
  }
  const k = kind as OutputKind;
  for (const key of Object.keys(obj)) {
    if (key !== "kind" && !OPTION_KEYS[k].includes(key)) {
      throw new ConfigError(
        `${where}: "${key}" is not an option of kind ${k}; its options: ${
          OPTION_KEYS[k].join(", ") || "none"
        }`,
        `${where}.${key}`,
      );
    }
  }
  switch (k) {
    case "eventlog":
      return { kind: k };
    case "rt_tables":
      return {
        kind: k,
        path: obj.path === undefined ? DEFAULT_RT_TABLES_PATH : path(
          obj.path,
          `${where}.path`,
          ".conf",
          "iproute2 reads only *.conf files of rt_tables.d",
        ),
        name: obj.name === undefined
          ? DEFAULT_NAME_TEMPLATE
          : checkNameTemplate(obj.name, `${where}.name`),
      };
    case "command":
      if (obj.command === undefined) {
        throw new ConfigError(
          `${where}.command is required (a list: the program, then arguments)`,
          `${where}.command`,
        );
      }
      return {
        kind: k,
        command: argv(obj.command, `${where}.command`),
        events: obj.events === undefined
          ? [...DEFAULT_COMMAND_EVENTS]
          : events(obj.events, `${where}.events`),
        timeout: obj.timeout === undefined
          ? 30
          : integer(obj.timeout, `${where}.timeout`, 1, MAX_COMMAND_TIMEOUT),
        retries: obj.retries === undefined
          ? 0
          : integer(obj.retries, `${where}.retries`, 0, MAX_RETRIES),
      };
    case "log":
      return {
        kind: k,
        interval: obj.interval === undefined
          ? 300
          : integer(obj.interval, `${where}.interval`, 1, MAX_INTERVAL),
      };
    case "prometheus_textfile":
      if (obj.path === undefined) {
        throw new ConfigError(
          `${where}.path is required (a file ending in ".prom")`,
          `${where}.path`,
        );
      }
      return {
        kind: k,
        path: path(
          obj.path,
          `${where}.path`,
          ".prom",
          "node_exporter's textfile collector reads only *.prom files",
        ),
        interval: obj.interval === undefined
          ? 15
          : integer(obj.interval, `${where}.interval`, 1, MAX_INTERVAL),
      };
  }
}

function outputs(raw: unknown): OutputConfig[] {
  if (raw === undefined) return [{ kind: "eventlog" }];
  if (!Array.isArray(raw)) {
    throw new ConfigError(
      `"outputs" must be a list like [{"kind": "eventlog"}], got ${show(raw)}`,
      "outputs",
    );
  }
  const list = raw.map((o, i) => output(o, `outputs[${i}]`));
  list.forEach((o, i) => {
    const first = list.findIndex((p) => p.kind === o.kind);
    if (o.kind !== "command" && first !== i) {
      throw new ConfigError(
        `outputs[${i}]: kind ${o.kind} may appear once (it is outputs[${first}] too)`,
        `outputs[${i}].kind`,
      );
    }
  });
  return list;
}

/**
 * Reads `outputs`, `log_level` and `readiness_delay` from a config object
 * (unknown keys are the caller's business). Throws {@link ConfigError}.
 */
export function parseOperations(
  obj: Record<string, unknown>,
  tableTimeout: number,
): OperationsConfig {
  const level = obj.log_level;
  if (level !== undefined && !(LOG_LEVELS as readonly unknown[]).includes(level)) {
    throw new ConfigError(
      `"log_level" must be one of ${LOG_LEVELS.join(", ")}, got ${show(level)}`,
      "log_level",
    );
  }
  const readinessDelay = obj.readiness_delay === undefined
    ? tableTimeout
    : integer(obj.readiness_delay, `"readiness_delay"`, 0, MAX_TABLE_TIMEOUT, "readiness_delay");
  return {
    outputs: outputs(obj.outputs),
    logLevel: (level ?? "info") as LogLevel,
    readinessDelay,
  };
}
