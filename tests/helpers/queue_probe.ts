/**
 * Measures kernel queues of unix datagram sockets, from inside a network
 * namespace (`ip netns exec NS deno run -A queue_probe.ts ...`), since an
 * abstract name is only reachable from its own namespace:
 *
 *     queue_probe.ts fill NAME COUNT   # COUNT senders, one datagram each, to @NAME
 *     queue_probe.ts fresh             # the queue of a socket made now
 *
 * Each prints how many datagrams the kernel accepted before it refused a
 * sender (EAGAIN), as JSON: `{"accepted": N}`. The kernel accepts one
 * datagram beyond a socket's queue. Every datagram comes from a socket of
 * its own, so that no sender's own buffer limits the count.
 *
 * @module
 */

import { AbstractDatagramSocket } from "../../src/unix/abstract_socket.ts";

/** Sends one datagram from each of up to `count` fresh sockets to `name`; how many the kernel took. */
function fill(name: string, count: number): number {
  const senders: AbstractDatagramSocket[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const sender = AbstractDatagramSocket.bind(null);
      senders.push(sender);
      if (!sender.sendToName(new TextEncoder().encode("{}"), name)) return i;
    }
    return count;
  } finally {
    for (const s of senders) s.close();
  }
}

if (import.meta.main) {
  const [mode, name, count] = Deno.args;
  let accepted: number;
  if (mode === "fill" && name && Number(count) > 0) {
    accepted = fill(name, Number(count));
  } else if (mode === "fresh") {
    const own = `ta-probe-${crypto.randomUUID().slice(0, 8)}`;
    using _socket = AbstractDatagramSocket.bind(own);
    accepted = fill(own, 100_000);
  } else {
    console.error("usage: queue_probe.ts fill NAME COUNT | fresh");
    Deno.exit(2);
  }
  console.log(JSON.stringify({ accepted }));
}
