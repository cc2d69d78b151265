/**
 * An identity whose name another process holds: an original C client, a
 * foreground client of ours, or a squatter. Its table is believed only
 * when the name's owner is root, by the kernel's word: the socket's owner
 * uid from NETLINK_SOCK_DIAG (a holder that never answers has no
 * SCM_CREDENTIALS to show), and the uid of the answer itself.
 *
 * @module
 */

import { Errno, ErrnoError } from "../../ffi/libc.ts";
import { NetlinkSocket } from "../netlink/connection.ts";
import { decodeUnixDiag, encodeUnixDiagDump, NETLINK_SOCK_DIAG } from "../netlink/unix_diag.ts";
import { paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { ask, askingSocket } from "../client/peer.ts";
import type { HoldingCore } from "./core.ts";
import type { Holding } from "./holding.ts";
import type { HoldOutcome } from "./lease.ts";
import { Command, identityName, isLeasableTable } from "../protocol/v1.ts";
import type { HoldSpec } from "./protocol.ts";
import { trustedServerUids } from "./trust.ts";
import { authenticatorFor } from "./identity_socket.ts";
import type { Fields, Level } from "../log/logger.ts";
import { sameBytes } from "../util/bytes.ts";
import { errorMessage } from "../util/errors.ts";

/** How long the holder of an identity has to answer with its table. */
export const HOLDER_ANSWER_MS = 500;
/** How long the server has to answer the one request made for a silent holder. */
export const SERVER_ANSWER_MS = 1000;

/** Only root's holder of a name is believed. */
const ROOT: ReadonlySet<number> = new Set([0]);

/**
 * The uid that owns the unix socket bound to the padded abstract `name`
 * in this network namespace: null when nothing is bound there, undefined
 * when the kernel does not say (before Linux 5.3).
 */
export async function boundNameUid(name: string): Promise<number | null | undefined> {
  const path = paddedAbstractAddress(name).subarray(2);
  using netlink = NetlinkSocket.open(0, NETLINK_SOCK_DIAG);
  const answers = await netlink.dump(
    "dump of the unix sockets",
    encodeUnixDiagDump({ seq: netlink.nextSeq(), portid: netlink.portid }),
  );
  for (const answer of answers) {
    const info = decodeUnixDiag(answer);
    if (info?.path && sameBytes(info.path, path)) return info.uid;
  }
  return null;
}

/**
 * What a second holder learns about an identity held elsewhere: the
 * holder's table when its owner is root and it answers (our foreground
 * client does); else, for root's holder that does not answer (a C
 * client), the server's answer to one request; nothing from a holder of
 * another uid. `"unbound"` when the name was let go meanwhile (try to
 * bind it again).
 */
export async function askForeignHolder(
  spec: HoldSpec,
  log: (level: Level, message: string, fields?: Fields) => void,
): Promise<HoldOutcome | "unbound"> {
  const name = identityName(spec.identity);
  const fields = { identity: name };
  let owner: number | null | undefined;
  try {
    owner = await boundNameUid(name);
  } catch (error) {
    log("warn", "cannot ask the kernel who holds the identity's name", {
      ...fields,
      reason: errorMessage(error),
    });
  }
  if (owner === null) return "unbound";
  if (owner !== undefined && owner !== 0) {
    log("error", "the identity's name is held by a process that is not root: not trusted", {
      ...fields,
      uid: owner,
    });
    return { kind: "none", reason: `@${name} is bound by uid ${owner}, not root` };
  }
  using socket = askingSocket();
  const holder = await ask(
    socket,
    spec.identity,
    spec.tag,
    Command.REQUEST,
    name,
    ROOT,
    HOLDER_ANSWER_MS,
  );
  if (holder?.kind === "lease" && isLeasableTable(holder.table)) {
    log("info", "a running client holds this identity; printing its table", {
      ...fields,
      table: holder.table,
    });
    return { kind: "lease", table: holder.table };
  }
  if (holder?.kind === "lease" && holder.table === 0) {
    return { kind: "none", reason: "the running client for this identity has no lease yet" };
  }
  log("warn", "the running client for this identity does not answer; asking the server", fields);
  const server = await ask(
    socket,
    spec.identity,
    spec.tag,
    Command.REQUEST,
    spec.server,
    trustedServerUids(spec.serverUids),
    SERVER_ANSWER_MS,
    1,
    authenticatorFor(spec),
  );
  if (server?.kind === "lease" && isLeasableTable(server.table)) {
    return { kind: "lease", table: server.table };
  }
  if (server?.kind === "error") {
    return { kind: "refused", error: server.code, message: server.message };
  }
  return { kind: "none", reason: `no answer from the holder of @${name} or from @${spec.server}` };
}

/**
 * Starts holding `spec` in `core`, or, when another process holds the
 * identity's name, what that holder (or its server) says: the outcome to
 * answer with. A name let go meanwhile is tried once more.
 */
export async function holdOrAsk(
  core: HoldingCore,
  spec: HoldSpec,
  ifindex: number,
  log: (level: Level, message: string, fields?: Fields) => void,
): Promise<Holding | HoldOutcome> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return core.add(spec, ifindex);
    } catch (error) {
      if (!(error instanceof ErrnoError && error.errno === Errno.EADDRINUSE)) throw error;
    }
    const outcome = await askForeignHolder(spec, log);
    if (outcome !== "unbound") return outcome;
  }
  return {
    kind: "none",
    reason: `@${identityName(spec.identity)} is taken and let go again and again`,
  };
}
