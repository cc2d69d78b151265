import {
  assert,
  assertEquals,
  assertExists,
  assertThrows,
  assertThrowsType,
} from "../../tests/helpers/assert.ts";
import {
  AbstractDatagramSocket,
  describeAddress,
  paddedAbstractAddress,
  SOCKADDR_UN_SIZE,
} from "./abstract_socket.ts";
import { ErrnoError } from "../../ffi/libc.ts";

const unique = (prefix: string) => `${prefix}-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;

Deno.test("paddedAbstractAddress() pads the name with NULs to the full sockaddr_un", () => {
  const addr = paddedAbstractAddress("tas_socket");
  assertEquals(addr.byteLength, SOCKADDR_UN_SIZE);
  assertEquals([...addr.subarray(0, 3)], [1, 0, 0]);
  assertEquals(new TextDecoder().decode(addr.subarray(3, 13)), "tas_socket");
  assert(addr.subarray(13).every((b) => b === 0));
  assertEquals(describeAddress(addr), "@tas_socket");
});

Deno.test("paddedAbstractAddress() rejects empty and overlong names", () => {
  assertThrows(() => paddedAbstractAddress(""), RangeError);
  assertThrows(() => paddedAbstractAddress("x".repeat(108)), RangeError);
  paddedAbstractAddress("x".repeat(107));
});

Deno.test("a datagram arrives with the sender's padded address and kernel credentials", async () => {
  using server = AbstractDatagramSocket.bind(unique("srv"), { passCredentials: true });
  const clientName = unique("cli");
  using client = AbstractDatagramSocket.bind(clientName);
  assertEquals(server.receive(), null);
  assert(client.send(new TextEncoder().encode("hello"), server.address));
  assert(await server.readable(1000));
  const got = server.receive();
  assertExists(got);
  assertEquals(new TextDecoder().decode(got.data), "hello");
  assertEquals(got.length, 5);
  assertEquals(got.sender.byteLength, SOCKADDR_UN_SIZE);
  assertEquals(describeAddress(got.sender), `@${clientName}`);
  assertEquals(got.credentials, { pid: Deno.pid, uid: Deno.uid(), gid: Deno.gid() });
  // The reply goes to exactly the address received from.
  assert(server.send(new TextEncoder().encode("back"), got.sender));
  assertEquals(new TextDecoder().decode(client.receive()?.data), "back");
});

Deno.test("a short-form abstract name is a different address than the padded one", () => {
  const name = unique("pad");
  using server = AbstractDatagramSocket.bind(name);
  using client = AbstractDatagramSocket.bind(null);
  const short = new Uint8Array(3 + name.length);
  short[0] = 1;
  short.set(new TextEncoder().encode(name), 3);
  const error = assertThrowsType(() => client.send(new Uint8Array([1]), short), ErrnoError);
  assertEquals(error.code, "ECONNREFUSED");
  assert(client.send(new Uint8Array([1]), server.address));
});

Deno.test("binding a name already in use fails with EADDRINUSE", () => {
  const name = unique("dup");
  using _first = AbstractDatagramSocket.bind(name);
  const error = assertThrowsType(() => AbstractDatagramSocket.bind(name), ErrnoError);
  assertEquals(error.code, "EADDRINUSE");
});

Deno.test("an oversize datagram is reported with its real length", () => {
  using server = AbstractDatagramSocket.bind(unique("big"), { receiveBufferSize: 64 });
  using client = AbstractDatagramSocket.bind(null);
  client.send(new Uint8Array(1000), server.address);
  const got = server.receive();
  assertEquals(got?.length, 1000);
  assertEquals(got?.data.byteLength, 64);
});

Deno.test("receiveMany() takes the waiting datagrams in one call, in order, each with its own sender, length and credentials", () => {
  using server = AbstractDatagramSocket.bind(unique("many"), {
    passCredentials: true,
    receiveBufferSize: 64,
    receiveBatch: 4,
  });
  const names = [unique("a"), unique("b")];
  using a = AbstractDatagramSocket.bind(names[0]);
  using b = AbstractDatagramSocket.bind(names[1]);
  assertEquals(server.receiveMany(), []);
  const encoder = new TextEncoder();
  // Six datagrams, the fifth longer than the buffer: a batch of 4, then the other 2.
  const sent = ["one", "two", "three", "four", "x".repeat(100), "six"];
  sent.forEach((text, i) => assert((i % 2 ? b : a).send(encoder.encode(text), server.address)));
  const first = server.receiveMany();
  const second = server.receiveMany();
  assertEquals(first.length, 4);
  assertEquals(second.length, 2);
  assertEquals(server.receiveMany(), []);
  const got = [...first, ...second];
  const decoder = new TextDecoder();
  assertEquals(got.map((d) => decoder.decode(d.data)), [
    ...sent.slice(0, 4),
    "x".repeat(64),
    "six",
  ]);
  assertEquals(got.map((d) => d.length), sent.map((t) => t.length));
  assertEquals(got.map((d) => describeAddress(d.sender)), sent.map((_, i) => `@${names[i % 2]}`));
  for (const d of got) {
    assertEquals(d.credentials, { pid: Deno.pid, uid: Deno.uid(), gid: Deno.gid() });
  }
  // The copies stay as they were when the slots are reused.
  assert(a.send(encoder.encode("later"), server.address));
  assertEquals(decoder.decode(server.receiveMany()[0].data), "later");
  assertEquals(decoder.decode(got[0].data), "one");
});

Deno.test("receiveMany() gives every reused slot its full name length back (a short autobound name, then a padded one)", () => {
  using server = AbstractDatagramSocket.bind(unique("slots"), { receiveBatch: 4 });
  using short = AbstractDatagramSocket.bind(null);
  const name = unique("padded");
  using padded = AbstractDatagramSocket.bind(name);
  for (const round of [0, 1]) {
    // Three short names fill slots 0 to 2, then a padded name must fit in each of them.
    for (let i = 0; i < 3; i++) assert(short.send(new Uint8Array([i]), server.address));
    assertEquals(server.receiveMany().map((d) => d.sender.byteLength), [8, 8, 8], `round ${round}`);
    for (let i = 0; i < 3; i++) assert(padded.send(new Uint8Array([i]), server.address));
    assertEquals(
      server.receiveMany().map((d) => describeAddress(d.sender)),
      [`@${name}`, `@${name}`, `@${name}`],
    );
  }
});

Deno.test("wake() interrupts a pending readable() at once", async () => {
  using server = AbstractDatagramSocket.bind(unique("wake"));
  const started = performance.now();
  const pending = server.readable(10_000);
  setTimeout(() => server.wake(), 20);
  assertEquals(await pending, false);
  assert(performance.now() - started < 5000);
});
