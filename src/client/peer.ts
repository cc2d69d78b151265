/**
 * Talking to whoever holds an identity's name: a running client (ours
 * answers questions on its own socket) or the server.
 *
 * - A second client for an identity that a running client holds asks the
 *   holder for its table and prints it at once; if the holder does not
 *   answer (an original C client), it asks the server once.
 * - `-r` asks a running holder to end (it deletes its rules and releases),
 *   then cleans up what is left itself: rules found in the kernel's rule
 *   dump, and the release when no holder did it.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import { AddrFamily } from "../net/family.ts";
import { Command, decodeReply, encodeRequest, type Reply } from "../protocol/v1.ts";
import { AbstractDatagramSocket, paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { type ClientOptions, identityName } from "./options.ts";
import type { Poller } from "./poller.ts";
import { describeRule, type RuleKeeper, rulesOfAddress } from "./rules.ts";
import { MAX_TRIES, RETRANSMIT_MS } from "./session.ts";

/** How long a second client waits for the running client's answer. */
export const HOLDER_ANSWER_MS = 500;
/** How long `-r` waits for a running client to delete its rules and release. */
export const HOLDER_RELEASE_MS = 3000;

/**
 * Sends one request (`cmd` 0 or 1) for the identity to `to` and waits for
 * an answer from exactly that address; retransmits every `retransmitMs`
 * up to `tries` times. Null when nobody answered.
 */
export async function ask(
  socket: AbstractDatagramSocket,
  poller: Poller,
  options: ClientOptions,
  cmd: typeof Command.REQUEST | typeof Command.RELEASE,
  to: string,
  waitMs: number,
  tries = 1,
): Promise<Reply | null> {
  const target = paddedAbstractAddress(to);
  const data = encodeRequest({
    cmd,
    identity: { family: options.family, ifname: options.ifname, address: options.address },
    tag: options.tag,
  });
  for (let attempt = 0; attempt < tries; attempt++) {
    try {
      socket.send(data, target);
    } catch {
      // Nobody bound there (yet): count it as an unanswered try.
    }
    const deadline = performance.now() + waitMs;
    while (performance.now() < deadline) {
      await poller.wait([socket.fd], deadline - performance.now());
      for (let dg = socket.receive(); dg !== null; dg = socket.receive()) {
        if (
          dg.sender.byteLength !== target.byteLength || !dg.sender.every((b, i) => b === target[i])
        ) {
          continue;
        }
        try {
          return decodeReply(dg.data);
        } catch {
          // Not an answer we understand: keep waiting.
        }
      }
    }
  }
  return null;
}

/**
 * A second client for an identity already held: the table of the running
 * client, else the server's answer, else 0. Never waits more than about
 * 1.5 s.
 */
export async function askRunningClient(
  options: ClientOptions,
  poller: Poller,
  logger: Logger,
): Promise<number> {
  const name = identityName(options);
  using socket = AbstractDatagramSocket.bind(null);
  const fromHolder = await ask(socket, poller, options, Command.REQUEST, name, HOLDER_ANSWER_MS);
  if (fromHolder?.kind === "lease") {
    logger.info("a running client holds this identity; printing its table", {
      identity: name,
      table: fromHolder.table,
    });
    return fromHolder.table;
  }
  logger.warn("the running client for this identity does not answer; asking the server", {
    identity: name,
  });
  const fromServer = await ask(socket, poller, options, Command.REQUEST, options.destination, 1000);
  return fromServer?.kind === "lease" ? fromServer.table : 0;
}

/**
 * `-r`: ends a running holder (if `holderRunning`), deletes the rules that
 * remain in the kernel for this address, and releases the lease unless the
 * holder already did. Returns the exit status.
 */
export async function releaseIdentity(parts: {
  options: ClientOptions;
  logger: Logger;
  poller: Poller;
  rules: RuleKeeper | null;
  /** Bound to the identity name, or null when a running client holds it. */
  own: AbstractDatagramSocket | null;
  /** Whether to tell the server (false when a holder has just done it). */
  releaseWithServer?: boolean;
}): Promise<number> {
  const { options, logger, poller, rules, own } = parts;
  const name = identityName(options);
  const fields = { identity: name };
  let holderReleased = false;
  using autobound = own ? null : AbstractDatagramSocket.bind(null);
  const socket = own ?? autobound!;
  if (!own) {
    const answer = await ask(socket, poller, options, Command.RELEASE, name, HOLDER_RELEASE_MS);
    if (answer?.kind === "lease") {
      holderReleased = true;
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
  if (rules && options.family !== AddrFamily.UNSPEC && options.addressBytes) {
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
      if (failures.length > 0) return 1;
    } catch (error) {
      logger.error("cannot read the routing rules", {
        ...fields,
        reason: (error as Error).message,
      });
      return 1;
    }
  }
  if (holderReleased || parts.releaseWithServer === false) return 0;
  const reply = await ask(
    socket,
    poller,
    options,
    Command.RELEASE,
    options.destination,
    RETRANSMIT_MS,
    MAX_TRIES,
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
