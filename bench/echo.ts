/**
 * The socket floor: the load generator against a process that only sends
 * each datagram back to its sender (recvmmsg, sendto, nothing else), so
 * that a server's figure can be read against what the sockets, the load
 * generator and the machine's wake-ups cost by themselves, measured in the
 * same run. One client's request and release cost two such round trips
 * and the grant's fsync: with echo rate E and fsync floor F, it cannot
 * beat 2 / (2 / E + 1 / F) operations per second.
 *
 * Run as a script, this is the echo process: `deno run -A bench/echo.ts NAME`.
 *
 * @module
 */

import { MAX_REQUEST_BYTES } from "../src/protocol/v1.ts";
import { RECEIVE_BATCH } from "../src/server/receiver.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";

/** An echo process bound to an abstract name, until disposed. */
export interface Echo extends AsyncDisposable {
  socketName: string;
}

/** Starts the echo process and waits until its name is bound. */
export async function startEcho(): Promise<Echo> {
  const socketName = `ta-echo-${crypto.randomUUID().slice(0, 8)}`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, socketName],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  if (!value || !new TextDecoder().decode(value).startsWith("ready")) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error("the echo process did not start");
  }
  reader.releaseLock();
  return {
    socketName,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.stdout.cancel().catch(() => {});
      await child.status;
    },
  };
}

if (import.meta.main) {
  // The server's socket options (server.ts).
  const socket = AbstractDatagramSocket.bind(Deno.args[0], {
    passCredentials: true,
    receiveBufferSize: MAX_REQUEST_BYTES,
    receiveBatch: RECEIVE_BATCH,
  });
  console.log("ready");
  for (;;) {
    socket.readableNow(1000);
    for (const datagram of socket.receiveMany()) {
      try {
        socket.send(datagram.data, datagram.sender);
      } catch { /* the client has gone (a run ended): as the server, drop the reply */ }
    }
  }
}
