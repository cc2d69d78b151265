/**
 * Whom a holder believes (issue "Local trust", client side): a server's
 * reply counts only when it comes from the server name the request went
 * to and the kernel vouches (SCM_CREDENTIALS) that its sender's uid is 0
 * or a trusted server uid: those given with `--server-uid`, else the uid
 * of the system user `table-allocator` that our packaged server runs as,
 * when that user exists. Pure but for reading `/etc/passwd`.
 *
 * @module
 */

/** The system user of the packaged server, trusted by default. */
export const SERVER_USER = "table-allocator";

/** The uid of `user` in passwd(5) text, or undefined when there is no such user. */
export function uidOfUser(passwd: string, user: string): number | undefined {
  for (const line of passwd.split("\n")) {
    const fields = line.split(":");
    if (fields.length < 7 || fields[0] !== user || !/^\d+$/.test(fields[2])) continue;
    return Number(fields[2]);
  }
  return undefined;
}

function readPasswd(): string {
  try {
    return Deno.readTextFileSync("/etc/passwd");
  } catch {
    return ""; // no passwd file: only root is trusted
  }
}

/**
 * The uids whose replies a holder accepts: always 0, plus `given`
 * (`--server-uid`), or by default the uid of {@link SERVER_USER}.
 */
export function trustedServerUids(
  given: readonly number[] | undefined,
  passwd: () => string = readPasswd,
): Set<number> {
  const uids = new Set([0]);
  if (given) { for (const uid of given) uids.add(uid); }
  else {
    const uid = uidOfUser(passwd(), SERVER_USER);
    if (uid !== undefined) uids.add(uid);
  }
  return uids;
}
