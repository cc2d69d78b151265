/**
 * The client's command line: the original's flags (`-4 -6 -a -n -i -d -t
 * -r -f -l -s -h`) plus `--version`, `--server-uid`, `--psk-file` and `--agent`, checked
 * once here and turned into a typed {@link ClientOptions}. Pure: no I/O,
 * so every bad-argument case is a unit test.
 *
 * @module
 */

import { type FlagSpec, parseFlags } from "../cli/flags.ts";
import { UsageError } from "../cli/usage.ts";
import { formatIP, parseIP, parsePrefixLength } from "../net/ip.ts";
import { AddrFamily } from "../net/family.ts";
import { VERSION } from "../version.ts";
import {
  MAX_IFNAME_BYTES,
  MAX_TAG_BYTES,
  ProtocolError,
  validateIdentity,
} from "../protocol/v1.ts";

/** Most `--server-uid` values (besides root, always trusted). */
const MAX_SERVER_UIDS = 16;
/** Largest uid (`(uid_t) -1` means "no uid"). */
const MAX_UID = 0xffff_fffe;

/** Printed by `--version`. */
export const CLIENT_VERSION = `table-allocator-client ${VERSION} (protocol v1)`;

/** Longest server name: `sun_path` less the leading NUL and the original's terminator. */
export const MAX_DESTINATION_BYTES = 105;
/** Identifiers of family 0 are limited like the original's (INET6_ADDRSTRLEN - 1). */
const MAX_UNSPEC_ADDRESS_BYTES = 45;

/** The client's name, as the original's: in messages, log lines and the syslog ident. */
export const PROGRAM = "table_allocator_client";

/** Usage text: on stdout for `-h`, on stderr after a bad argument. */
export const USAGE = `Usage: ${PROGRAM} [options ...]
Asks the table_allocator server for a routing table for an interface address,
prints the table (0 when no lease was obtained) and keeps the lease and its
routing rules in the background until the address or the link goes away.
The host agent (one process per network namespace, started on demand) holds
every lease; -f holds this one in the foreground instead.

Required arguments are marked with <r>
  -4                     set address family to IPv4 (default is UNSPEC)
  -6                     set address family to IPv6
  -a, --address ADDR     address to allocate table for <r>
  -n, --netmask MASK     netmask (255.255.255.0) or prefix length (24) of the
                         address <r with -4 and -6, except with -r>
  -i, --ifname IFNAME    interface to allocate table for (must exist) <r>
  -d, --destination NAME abstract socket name of the server <r>
  -t, --tag TAG          optional tag to send to the server
  -r, --release          release the lease and remove its rules, then exit
  -f, --foreground       stay in the foreground after printing the table
  -l, --log_path PATH    append log lines to a file (default stderr)
  -s, --syslog           log to syslog (facility daemon)
      --server-uid UID   also trust replies sent by this uid (repeatable, or a
                         comma list; default: the user table-allocator)
      --psk-file PATH    sign requests with this key and accept only signed
                         replies (the server's "auth"; the file as
                         table-allocator-ctl genpsk writes it, mode 600)
      --agent            run the host agent (its own log: -l or -s)
  -h, --help             this information
      --version          print the version and exit
`;

/** What the client was asked to do, validated. */
export interface ClientOptions {
  family: AddrFamily;
  /** Canonical address text (IPv6 compressed, lower case), or the identifier for family 0. */
  address: string;
  /** Address bytes for IPv4 and IPv6; null for family 0. */
  addressBytes: Uint8Array | null;
  /** Prefix length of the network; null for family 0 and when not given with -r. */
  prefix: number | null;
  ifname: string;
  destination: string;
  tag: string | undefined;
  release: boolean;
  foreground: boolean;
  logPath: string | undefined;
  syslog: boolean;
  /** `--server-uid`: uids trusted besides 0; undefined for the default. */
  serverUids: number[] | undefined;
  /** `--psk-file`: the key of message authentication, or undefined. */
  pskFile: string | undefined;
}

/** The result of reading the command line. */
export type Invocation =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "agent"; logPath: string | undefined; syslog: boolean }
  | { kind: "run"; options: ClientOptions };

const byteLength = (s: string) => new TextEncoder().encode(s).byteLength;

/** The flags, as node's parseArgs would be given them (see `src/cli/flags.ts`). */
const FLAGS = {
  inet: { type: "boolean", short: "4" },
  inet6: { type: "boolean", short: "6" },
  address: { type: "string", short: "a" },
  netmask: { type: "string", short: "n" },
  ifname: { type: "string", short: "i" },
  destination: { type: "string", short: "d" },
  tag: { type: "string", short: "t" },
  release: { type: "boolean", short: "r" },
  foreground: { type: "boolean", short: "f" },
  log_path: { type: "string", short: "l" },
  syslog: { type: "boolean", short: "s" },
  "server-uid": { type: "string", multiple: true },
  "psk-file": { type: "string" },
  agent: { type: "boolean" },
  version: { type: "boolean" },
} as const satisfies Record<string, FlagSpec>;

/** What {@link parseFlags} gives for {@link FLAGS}. */
type FlagsGiven = {
  [K in keyof typeof FLAGS]?: (typeof FLAGS)[K] extends { multiple: true } ? string[]
    : (typeof FLAGS)[K]["type"] extends "string" ? string
    : boolean;
};

/**
 * Reads the command line. Throws a {@link UsageError} for anything the
 * client cannot run with; `-h` anywhere wins over every other argument.
 */
export function parseClientArgs(args: readonly string[]): Invocation {
  if (args.includes("-h") || args.includes("--help")) return { kind: "help" };
  const v = parseFlags(args, FLAGS) as FlagsGiven;
  if (v.version) return { kind: "version" };
  if (v.log_path !== undefined && v.log_path.length === 0) {
    throw new UsageError("log path must not be empty");
  }
  if (v.agent) {
    const others = Object.keys(v).filter((k) => !["agent", "log_path", "syslog"].includes(k));
    if (others.length > 0) {
      throw new UsageError(`--agent takes only -l and -s, got ${others.map((k) => `--${k}`)}`);
    }
    return { kind: "agent", logPath: v.log_path, syslog: v.syslog === true };
  }
  if (v.inet && v.inet6) throw new UsageError("-4 and -6 exclude each other");
  const family = v.inet ? AddrFamily.INET : v.inet6 ? AddrFamily.INET6 : AddrFamily.UNSPEC;
  const missing = [
    v.address === undefined && "-a/--address",
    v.ifname === undefined && "-i/--ifname",
    v.destination === undefined && "-d/--destination",
    family !== AddrFamily.UNSPEC && !v.release && v.netmask === undefined && "-n/--netmask",
  ].filter((x): x is string => typeof x === "string");
  if (missing.length > 0) throw new UsageError(`missing required argument ${missing.join(", ")}`);
  const ifname = v.ifname as string;
  const destination = v.destination as string;
  const rawAddress = v.address as string;

  if (ifname.length === 0 || byteLength(ifname) > MAX_IFNAME_BYTES) {
    throw new UsageError(
      `interface name must be 1 to ${MAX_IFNAME_BYTES} bytes, got "${ifname}"`,
    );
  }
  if (destination.length === 0 || byteLength(destination) > MAX_DESTINATION_BYTES) {
    throw new UsageError(
      `destination must be 1 to ${MAX_DESTINATION_BYTES} bytes, got ${byteLength(destination)}`,
    );
  }
  if (v.tag !== undefined && (v.tag.length === 0 || byteLength(v.tag) > MAX_TAG_BYTES)) {
    throw new UsageError(`tag must be 1 to ${MAX_TAG_BYTES} bytes, got ${byteLength(v.tag)}`);
  }
  const serverUids = parseServerUids(v["server-uid"]);
  if (v["psk-file"] !== undefined && v["psk-file"].length === 0) {
    throw new UsageError("--psk-file must name a file");
  }

  let addressBytes: Uint8Array | null = null;
  let address = rawAddress;
  if (family === AddrFamily.UNSPEC) {
    if (rawAddress.length === 0 || byteLength(rawAddress) > MAX_UNSPEC_ADDRESS_BYTES) {
      throw new UsageError(
        `address must be 1 to ${MAX_UNSPEC_ADDRESS_BYTES} bytes, got "${rawAddress}"`,
      );
    }
  } else {
    addressBytes = parseIP(family, rawAddress);
    if (!addressBytes) {
      throw new UsageError(
        `address is not a valid IPv${family === AddrFamily.INET ? 4 : 6} address: "${rawAddress}"`,
      );
    }
    address = formatIP(addressBytes);
  }
  try {
    validateIdentity(family, ifname, address);
  } catch (error) {
    if (error instanceof ProtocolError) throw new UsageError(error.message, { cause: error });
    throw error;
  }

  let prefix: number | null = null;
  if (family !== AddrFamily.UNSPEC && v.netmask !== undefined) {
    prefix = parsePrefixLength(family, v.netmask);
    const kind = family === AddrFamily.INET
      ? "a dotted netmask or a prefix length from 1 to 32"
      : "a prefix length from 1 to 128 or a netmask";
    if (prefix === null) throw new UsageError(`netmask must be ${kind}, got "${v.netmask}"`);
    if (prefix === 0) {
      throw new UsageError(
        `netmask "${v.netmask}" has prefix length 0: the network rule would match every destination`,
      );
    }
  }

  return {
    kind: "run",
    options: {
      family,
      address,
      addressBytes,
      prefix,
      ifname,
      destination,
      tag: v.tag,
      release: v.release === true,
      foreground: v.foreground === true,
      logPath: v.log_path,
      syslog: v.syslog === true,
      serverUids,
      pskFile: v["psk-file"],
    },
  };
}

/** `--server-uid` values (each a uid or a comma list of them), deduplicated. */
function parseServerUids(values: string[] | undefined): number[] | undefined {
  if (values === undefined) return undefined;
  const uids = new Set<number>();
  for (const item of values.flatMap((value) => value.split(","))) {
    if (!/^\d{1,10}$/.test(item) || Number(item) > MAX_UID) {
      throw new UsageError(`--server-uid must be uids from 0 to ${MAX_UID}, got "${item}"`);
    }
    uids.add(Number(item));
  }
  if (uids.size > MAX_SERVER_UIDS) {
    throw new UsageError(`--server-uid takes at most ${MAX_SERVER_UIDS} uids, got ${uids.size}`);
  }
  return [...uids];
}
