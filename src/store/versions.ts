/**
 * Per-client versions behind the SQLite store's tokens, kept only while
 * they matter: while a token issued for the client is out, or while an
 * update of it waits for its commit. A client with neither has no entry,
 * so the store holds memory for the clients in flight, not for every
 * client it ever served; the next lookup of a client without an entry
 * starts again at version 0, which no token still out can carry (there is
 * none). Pure: no I/O.
 *
 * @module
 */

interface Entry {
  version: number;
  /** Tokens issued and not yet spent. */
  tokens: number;
  /** Updates (and expiries) waiting for their commit. */
  pending: number;
}

/** The versions of the clients in flight. */
export class Versions {
  #entries = new Map<string, Entry>();

  /** Clients with an entry (for tests). */
  get size(): number {
    return this.#entries.size;
  }

  /** The client's version now (0 for a client without an entry). */
  current(clientId: string): number {
    return this.#entries.get(clientId)?.version ?? 0;
  }

  /** A token is issued for the client: returns the version it carries. */
  issue(clientId: string): number {
    const entry = this.#entry(clientId);
    entry.tokens++;
    return entry.version;
  }

  /** A token issued by {@link issue} is spent (used by an update, refused, or released). */
  spend(clientId: string): void {
    const entry = this.#entries.get(clientId);
    if (!entry) return;
    entry.tokens--;
    this.#prune(clientId, entry);
  }

  /**
   * An update (or an expiry) of the client waits for its commit: the
   * version moves on at once, so that tokens issued before are stale.
   * Returns the version before, for {@link undo}.
   */
  bump(clientId: string): number {
    const entry = this.#entry(clientId);
    entry.pending++;
    return entry.version++;
  }

  /** The commit of a {@link bump} succeeded. */
  committed(clientId: string): void {
    const entry = this.#entries.get(clientId);
    if (!entry) return;
    entry.pending--;
    this.#prune(clientId, entry);
  }

  /** The commit of a {@link bump} failed: the client's version goes back to `previous`. */
  undo(clientId: string, previous: number): void {
    const entry = this.#entries.get(clientId);
    if (!entry) return;
    entry.version = previous;
    entry.pending--;
    this.#prune(clientId, entry);
  }

  #entry(clientId: string): Entry {
    let entry = this.#entries.get(clientId);
    if (!entry) {
      entry = { version: 0, tokens: 0, pending: 0 };
      this.#entries.set(clientId, entry);
    }
    return entry;
  }

  #prune(clientId: string, entry: Entry): void {
    if (entry.tokens <= 0 && entry.pending <= 0) this.#entries.delete(clientId);
  }
}
