/**
 * The command line of `table-allocator-ctl`, checked once here and turned
 * into the control operation to send (its wire `op` and keys). Pure: no
 * I/O, so every bad-argument case is a unit test.
 *
 * @module
 */

import type { parseArgs } from "node:util";
import { AddrFamily, parseFamilyWord } from "../net/family.ts";
import { parseCommandLine, UsageError } from "../cli/cli.ts";
import {
  MAX_ADDRESS_BYTES,
  MAX_IFNAME_BYTES,
  ProtocolError,
  validateIdentity,
} from "../protocol/v1.ts";
import { LEASE_STATES, type LeaseState } from "../store/lease_store.ts";
import { type ControlArgs, DEFAULT_SOCKET, DEFAULT_TIMEOUT_MS } from "./client.ts";
import { kernelTableMessage, MAX_LIST_LIMIT } from "./protocol.ts";
import { RESERVED_TABLES } from "../../config/limits.ts";

/** The program's name, in messages and usage. */
export const PROGRAM = "table-allocator-ctl";

/** Longest server socket name (the server's `socket_path` limit). */
export const MAX_SOCKET_BYTES = 106;
/** Longest `--timeout`: one hour. */
export const MAX_TIMEOUT_MS = 3_600_000;
/** Largest routing table number. */
const MAX_TABLE = 0xffff_ffff;

/** Usage text: on stdout for `-h`, on stderr after a bad argument. */
export const USAGE = `Usage: ${PROGRAM} [-d SOCKET] [--json] [--timeout MS] COMMAND [ARGS]

Inspects and administers the leases of a running table-allocator server
over its control socket. The server answers root only.

Commands:
  status                   server version, pid, uptime, store, lease counts, pools
  pools                    one row per pool: ranges, selectors, size, bound,
                           reserved, free
  leases [--family F] [--ifname NAME] [--state STATE] [--limit N]
         [--after CURSOR] [--all]
                           leases, one page of up to N (default 100, at most
                           ${MAX_LIST_LIMIT}); --all follows every page to the end
  show --family F (TABLE | --ifname NAME --address ADDR)
                           the leases of a table, or of an identity
  release --family F (TABLE | --ifname NAME --address ADDR)
                           ends a bound lease now: the table is free again
  reserve TABLE --ifname NAME [--family F [--address ADDR]]
                           holds TABLE for the interface (or one address of
                           it); without --family in every enabled family
  unreserve TABLE [--family F]
                           removes the reservations of TABLE
  metrics                  the server's metrics, Prometheus text format
  reload                   re-reads the config file (as SIGHUP does); a bad
                           file is refused and the running config kept
  genpsk                   prints a new random key for message authentication
                           (64 hex digits; no server involved)

Options:
  -d, --socket SOCKET      abstract socket name of the server (default ${DEFAULT_SOCKET})
      --json               print the server's result as one JSON object
      --timeout MS         wait at most MS milliseconds for the reply
                           (default ${DEFAULT_TIMEOUT_MS})
  -h, --help               print this help and exit
  -V, --version            print the version and exit

Families: inet (also 4 or 2), inet6 (6 or 10), unspec (0).
States: ${LEASE_STATES.join(", ")}.
Exit status: 0 done; 1 the server refused, is not running or did not answer;
2 bad arguments.
`;

/** The commands, in usage order. */
export const COMMANDS = [
  "status",
  "pools",
  "leases",
  "show",
  "release",
  "reserve",
  "unreserve",
  "metrics",
  "reload",
  "genpsk",
] as const;
/** One of {@link COMMANDS}. */
export type CommandName = typeof COMMANDS[number];

/** A checked command: the control operation to send and its keys. */
export type CtlCommand =
  | { name: "status"; op: "status"; args: ControlArgs["status"] }
  | { name: "pools"; op: "pools"; args: ControlArgs["pools"] }
  | { name: "leases"; op: "list"; args: ControlArgs["list"]; all: boolean }
  | { name: "show"; op: "show"; args: ControlArgs["show"] }
  | { name: "release"; op: "release"; args: ControlArgs["release"] }
  | { name: "reserve"; op: "reserve"; args: ControlArgs["reserve"] }
  | { name: "unreserve"; op: "unreserve"; args: ControlArgs["unreserve"] }
  | { name: "metrics"; op: "metrics"; args: ControlArgs["metrics"] }
  | { name: "reload"; op: "reload"; args: ControlArgs["reload"] };

/** Options that apply to every command. */
export interface CtlOptions {
  /** The server's abstract socket name (without `@`). */
  socket: string;
  json: boolean;
  timeoutMs: number;
}

/** The result of reading the command line. */
export type CtlInvocation =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "genpsk" }
  | { kind: "run"; options: CtlOptions; command: CtlCommand };

const byteLength = (s: string) => new TextEncoder().encode(s).byteLength;

/**
 * Reads a family given by name (`inet`, `inet6`, `unspec`, any case), by
 * IP version (`4`, `6`) or by number (`2`, `10`, `0`). Throws a
 * {@link UsageError} for anything else.
 */
export function parseFamily(text: string): AddrFamily {
  const family = parseFamilyWord(text);
  if (family === undefined) {
    throw new UsageError(
      `--family must be inet (4, 2), inet6 (6, 10) or unspec (0), got "${text}"`,
    );
  }
  return family;
}

function parseInteger(what: string, text: string, min: number, max: number): number {
  const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`${what} must be an integer from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

function parseTable(text: string): number {
  return parseInteger("TABLE", text, 1, MAX_TABLE);
}

function checkIfname(ifname: string): string {
  if (byteLength(ifname) > MAX_IFNAME_BYTES) {
    throw new UsageError(
      `--ifname must be 1 to ${MAX_IFNAME_BYTES} bytes, got "${ifname}"`,
    );
  }
  try {
    validateIdentity(AddrFamily.UNSPEC, ifname, "*");
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    throw new UsageError(`--ifname is not a valid interface name: "${ifname}"`, { cause: error });
  }
  return ifname;
}

/** The canonical form of `address` in `family`, or a UsageError naming it. */
function checkAddress(family: AddrFamily, ifname: string, address: string): string {
  if (byteLength(address) > MAX_ADDRESS_BYTES) {
    throw new UsageError(`--address must be 1 to ${MAX_ADDRESS_BYTES} bytes, got "${address}"`);
  }
  try {
    return validateIdentity(family, ifname, address).address;
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    const kind = family === AddrFamily.INET
      ? "an IPv4"
      : family === AddrFamily.INET6
      ? "an IPv6"
      : "a valid";
    throw new UsageError(`--address is not ${kind} address: "${address}"`, { cause: error });
  }
}

/** Options every command accepts. */
const GLOBAL_OPTIONS: readonly string[] = ["socket", "json", "timeout", "help", "version"];

/** Options each command accepts, besides the global ones. */
const COMMAND_OPTIONS: Record<CommandName, readonly string[]> = {
  status: [],
  pools: [],
  leases: ["family", "ifname", "state", "limit", "all", "after"],
  show: ["family", "ifname", "address"],
  release: ["family", "ifname", "address"],
  reserve: ["ifname", "address", "family"],
  unreserve: ["family"],
  metrics: [],
  reload: [],
  genpsk: [],
};

const PARSE_OPTIONS = {
  socket: { type: "string", short: "d" },
  json: { type: "boolean" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
  family: { type: "string" },
  ifname: { type: "string" },
  address: { type: "string" },
  state: { type: "string" },
  limit: { type: "string" },
  all: { type: "boolean" },
  after: { type: "string" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof PARSE_OPTIONS }>>["values"];

/**
 * Reads the command line. Global options may come before or after the
 * command. Throws a {@link UsageError} for anything ctl cannot run with;
 * `-h` anywhere wins over every other argument.
 */
export function parseCtlArgs(args: readonly string[]): CtlInvocation {
  if (args.includes("-h") || args.includes("--help")) return { kind: "help" };
  const parsed = parseCommandLine({
    args: [...args],
    allowPositionals: true,
    options: PARSE_OPTIONS,
    tokens: true,
  });
  const v = parsed.values;
  if (v.version) return { kind: "version" };

  const [name, ...operands] = parsed.positionals;
  if (name === undefined) throw new UsageError(`missing COMMAND (one of ${COMMANDS.join(", ")})`);
  if (!(COMMANDS as readonly string[]).includes(name)) {
    throw new UsageError(`unknown command "${name}" (one of ${COMMANDS.join(", ")})`);
  }
  const command = name as CommandName;
  for (const token of parsed.tokens) {
    if (token.kind !== "option" || GLOBAL_OPTIONS.includes(token.name)) continue;
    if (!COMMAND_OPTIONS[command].includes(token.name)) {
      throw new UsageError(`${command} does not take ${token.rawName}`);
    }
  }

  if (command === "genpsk") {
    noOperands(command, operands);
    return { kind: "genpsk" };
  }
  const socket = v.socket ?? DEFAULT_SOCKET;
  if (socket.length === 0 || byteLength(socket) > MAX_SOCKET_BYTES) {
    throw new UsageError(
      `-d/--socket must be 1 to ${MAX_SOCKET_BYTES} bytes, got "${socket}"`,
    );
  }
  const timeoutMs = v.timeout === undefined
    ? DEFAULT_TIMEOUT_MS
    : parseInteger("--timeout", v.timeout, 1, MAX_TIMEOUT_MS);
  return {
    kind: "run",
    options: { socket, json: v.json ?? false, timeoutMs },
    command: parseCommand(command, operands, v),
  };
}

function noOperands(command: CommandName, operands: string[]): void {
  if (operands.length > 0) {
    throw new UsageError(`${command} takes no operand, got "${operands[0]}"`);
  }
}

/** The optional TABLE operand. */
function tableOperand(command: CommandName, operands: string[]): number | undefined {
  if (operands.length > 1) {
    throw new UsageError(`${command} takes one TABLE, got "${operands.join(" ")}"`);
  }
  return operands.length === 0 ? undefined : parseTable(operands[0]);
}

/** The TABLE operand, required. */
function requiredTable(command: CommandName, operands: string[]): number {
  const table = tableOperand(command, operands);
  if (table === undefined) throw new UsageError(`${command} needs a TABLE`);
  return table;
}

/** The lease a `show` or `release` names: a TABLE, or --ifname and --address. */
function selector(
  command: "show" | "release",
  operands: string[],
  family: AddrFamily | undefined,
  v: Values,
): ControlArgs["show"] {
  const table = tableOperand(command, operands);
  if (family === undefined) throw new UsageError(`${command} needs --family`);
  if (table !== undefined) {
    if (v.ifname !== undefined || v.address !== undefined) {
      throw new UsageError(`${command} selects by TABLE or by --ifname and --address, not both`);
    }
    return { family, table };
  }
  if (v.ifname === undefined || v.address === undefined) {
    throw new UsageError(`${command} needs a TABLE, or --ifname and --address`);
  }
  const ifname = checkIfname(v.ifname);
  return { family, ifname, address: checkAddress(family, ifname, v.address) };
}

function parseCommand(
  command: Exclude<CommandName, "genpsk">,
  operands: string[],
  v: Values,
): CtlCommand {
  const family = v.family === undefined ? undefined : parseFamily(v.family);
  switch (command) {
    case "status":
      noOperands(command, operands);
      return { name: command, op: command, args: {} };
    case "pools":
      noOperands(command, operands);
      return { name: command, op: command, args: {} };
    case "metrics":
      noOperands(command, operands);
      return { name: command, op: command, args: {} };
    case "reload":
      noOperands(command, operands);
      return { name: command, op: command, args: {} };
    case "leases": {
      noOperands(command, operands);
      const args: ControlArgs["list"] = {};
      if (v.after !== undefined) {
        if (v.after.length === 0) throw new UsageError(`--after needs a cursor, got ""`);
        args.after = v.after;
      }
      if (v.limit !== undefined) args.limit = parseInteger("--limit", v.limit, 1, MAX_LIST_LIMIT);
      if (family !== undefined) args.family = family;
      if (v.ifname !== undefined) args.ifname = checkIfname(v.ifname);
      if (v.state !== undefined) {
        if (!(LEASE_STATES as readonly string[]).includes(v.state)) {
          throw new UsageError(
            `--state must be one of ${LEASE_STATES.join(", ")}, got "${v.state}"`,
          );
        }
        args.state = v.state as LeaseState;
      }
      return { name: command, op: "list", args, all: v.all ?? false };
    }
    case "show":
    case "release": {
      const args = selector(command, operands, family, v);
      return command === "show" ? { name: command, op: command, args } : {
        name: command,
        op: command,
        args,
      };
    }
    case "reserve": {
      const table = requiredTable(command, operands);
      if (RESERVED_TABLES.includes(table)) throw new UsageError(kernelTableMessage(table));
      if (v.ifname === undefined) throw new UsageError(`reserve needs --ifname`);
      const args: ControlArgs["reserve"] = { table, ifname: checkIfname(v.ifname) };
      if (v.address !== undefined) {
        if (family === undefined) {
          throw new UsageError(`reserve --address needs --family (the address's family)`);
        }
        args.address = checkAddress(family, args.ifname, v.address);
      }
      if (family !== undefined) args.family = family;
      return { name: command, op: command, args };
    }
    case "unreserve": {
      const table = requiredTable(command, operands);
      const args: ControlArgs["unreserve"] = { table };
      if (family !== undefined) args.family = family;
      return { name: command, op: command, args };
    }
  }
}
