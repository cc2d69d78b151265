/**
 * Signed v1 messages built by hand, the way another implementation would
 * build them: string operations for the JSON and `openssl dgst -mac HMAC`
 * for the MAC. The tests check the server against this second signer, not
 * only against our own `src/protocol/auth.ts`.
 *
 * @module
 */

const decoder = new TextDecoder();

/** The lower-case hex HMAC-SHA256 of `message` with the hex key `keyHex`, by openssl. */
export async function opensslHmac(keyHex: string, message: string | Uint8Array): Promise<string> {
  const child = new Deno.Command("openssl", {
    args: ["dgst", "-sha256", "-mac", "HMAC", "-macopt", `hexkey:${keyHex}`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(typeof message === "string" ? new TextEncoder().encode(message) : message);
  await writer.close();
  const out = await child.output();
  const text = decoder.decode(out.stdout).trim();
  const mac = /([0-9a-f]{64})$/.exec(text)?.[1];
  if (!out.success || !mac) {
    throw new Error(`openssl dgst failed (${out.code}): ${text} ${decoder.decode(out.stderr)}`);
  }
  return mac;
}

/**
 * Signs a JSON object's text: `"ts"` and `"nonce"` appended as members,
 * then `,"hmac":"<openssl's MAC of that text>"` before the closing brace.
 */
export async function handSign(
  keyHex: string,
  json: string,
  ts = Math.floor(Date.now() / 1000),
  nonce = randomNonce(),
): Promise<string> {
  const body = `${json.slice(0, -1)},"ts":${ts},"nonce":"${nonce}"}`;
  return `${body.slice(0, -1)},"hmac":"${await opensslHmac(keyHex, body)}"}`;
}

/** 16 random lower-case hex digits. */
export function randomNonce(): string {
  return [...crypto.getRandomValues(new Uint8Array(8))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}
