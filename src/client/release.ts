/**
 * `-r`: end the lease of an identity, whoever holds it. The agent is asked
 * first (it removes the rules, releases and answers once the server
 * acknowledged); else the holder of the identity's name (a foreground
 * client of ours) is asked to end, believed only when root answers. Then
 * whatever rules of the address remain in the kernel are deleted, and the
 * lease is released with the server unless a holder did it already
 * (5 tries 2 s apart). Prints nothing on stdout; resolves with the exit status.
 *
 * @module
 */

import { Errno, ErrnoError } from "../../ffi/libc.ts";
import type { Logger } from "../log/logger.ts";
import { AddrFamily } from "../net/family.ts";
import { NetlinkSocket } from "../netlink/connection.ts";
import { Command, identityName } from "../protocol/v1.ts";
import { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { MAX_TRIES, RETRANSMIT_MS } from "../agent/lease.ts";
import { describeRule, rulesOfAddress } from "../protocol/lease_rules.ts";
import { RuleKeeper } from "../agent/rules.ts";
import { trustedServerUids } from "../agent/trust.ts";
import { Authenticator } from "../protocol/auth.ts";
import { readPskFile } from "../../config/psk_file.ts";
import type { ClientOptions } from "./options.ts";
import { AgentLink } from "./agent_link.ts";
import { ask } from "./peer.ts";
import { errorMessage } from "../util/errors.ts";

/** How long `-r` waits for the agent or a holder to delete its rules and release. */
export const HOLDER_RELEASE_MS = 3000;

const ROOT: ReadonlySet<number> = new Set([0]);

/** Runs `-r` for `options`; resolves with the exit status. */
export async function runRelease(options: ClientOptions, logger: Logger): Promise<number> {
  const fields = { identity: identityName(options) };
  let released = await askAgent(options, logger);
  let own: AbstractDatagramSocket | null = null;
  if (!released) {
    try {
      own = AbstractDatagramSocket.bind(identityName(options), { passCredentials: true });
    } catch (error) {
      if (!(error instanceof ErrnoError && error.errno === Errno.EADDRINUSE)) throw error;
    }
  }
  using _own = own;
  using autobound = own ? null : AbstractDatagramSocket.bind(null, { passCredentials: true });
  const socket = own ?? autobound!;
  const identity = idOf(options);
  const { tag } = options;
  if (!released && !own) {
    // A holder that is not the agent: our foreground client, or a C client (which never answers).
    const name = identityName(options);
    const answer = await ask(socket, identity, tag, Command.RELEASE, name, ROOT, HOLDER_RELEASE_MS);
    if (answer?.kind === "lease") {
      released = true;
      logger.info("the running client deleted its rules and released the lease", fields);
    } else if (answer?.kind === "error") {
      logger.warn("the running client could not finish the release", {
        ...fields,
        error: answer.code,
        reason: answer.message,
      });
    } else {
      logger.warn("the running client did not answer the release request", fields);
    }
  }
  if (!await deleteLeftoverRules(options, logger)) return 1;
  if (released) return 0;
  const reply = await ask(
    socket,
    identity,
    tag,
    Command.RELEASE,
    options.destination,
    trustedServerUids(options.serverUids),
    RETRANSMIT_MS,
    MAX_TRIES,
    options.pskFile === undefined ? undefined : new Authenticator(readPskFile(options.pskFile)),
  );
  if (reply?.kind === "lease") {
    logger.info("lease released", fields);
    return 0;
  }
  if (reply?.kind === "error") {
    logger.error("the server refused the release", {
      ...fields,
      error: reply.code,
      reason: reply.message,
    });
    return 1;
  }
  logger.error(`no answer from @${options.destination} after ${MAX_TRIES} tries`, fields);
  return 1;
}

function idOf(options: ClientOptions) {
  return { family: options.family, ifname: options.ifname, address: options.address };
}

/** Asks the agent to release; true when it held the identity and it is done. */
async function askAgent(options: ClientOptions, logger: Logger): Promise<boolean> {
  const fields = { identity: identityName(options) };
  using link = new AgentLink();
  if (link.send({ op: "release", identity: idOf(options) }) !== "sent") return false;
  const deadline = performance.now() + HOLDER_RELEASE_MS;
  while (performance.now() < deadline) {
    await link.readable(deadline - performance.now());
    for (const reply of link.replies()) {
      if (reply.op === "release" && reply.result === "released") {
        logger.info("the host agent deleted the rules and released the lease", fields);
        return true;
      }
      if (reply.op === "release" && reply.result === "not_held") return false;
      logger.warn("the host agent could not finish the release", {
        ...fields,
        answer: reply.op === "release" ? reply.result : JSON.stringify(reply),
      });
      return false;
    }
  }
  logger.warn("the host agent did not answer the release request", fields);
  return false;
}

/** Deletes the rules of the address still in the kernel; false when that failed. */
async function deleteLeftoverRules(options: ClientOptions, logger: Logger): Promise<boolean> {
  if (options.family === AddrFamily.UNSPEC || !options.addressBytes) return true;
  const fields = { identity: identityName(options) };
  using rules = new RuleKeeper(NetlinkSocket.open());
  try {
    const leftover = rulesOfAddress(
      await rules.dump(options.family),
      options.family,
      options.addressBytes,
    );
    const failures = await rules.remove(leftover);
    for (const rule of leftover) {
      if (!failures.some((f) => f.rule === rule)) {
        logger.info("rule deleted", { ...fields, table: rule.table, rule: describeRule(rule) });
      }
    }
    for (const f of failures) {
      logger.error("cannot delete rule", {
        ...fields,
        rule: describeRule(f.rule),
        reason: f.error.message,
      });
    }
    return failures.length === 0;
  } catch (error) {
    logger.error("cannot read the routing rules", { ...fields, reason: errorMessage(error) });
    return false;
  }
}
