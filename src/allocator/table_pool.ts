/**
 * A pool of routing table numbers, handing out the lowest free one first.
 * Pure: no clock, no I/O.
 *
 * The free set is a hierarchical bitmap: level 0 has one bit per table (1 =
 * free); each bit of level k+1 says whether a 32-bit word of level k has any
 * free bit. Finding the lowest free table walks down from the single top
 * word, so every operation costs O(log32 n): four word reads for 2^20
 * tables, whatever the pool's fill.
 *
 * @module
 */

/** No free table is left in the pool. */
export class PoolExhaustedError extends Error {
  /** Builds the error for a pool of `size` tables. */
  constructor(readonly first: number, readonly size: number) {
    super(`all ${size} tables from ${first} to ${first + size - 1} are leased`);
    this.name = "PoolExhaustedError";
  }
}

/** A table was freed that was not taken. */
export class DoubleFreeError extends Error {
  /** Builds the error for `table`. */
  constructor(readonly table: number) {
    super(`table ${table} is already free`);
    this.name = "DoubleFreeError";
  }
}

const lowestBit = (word: number) => 31 - Math.clz32(word & -word);

/** Tables `first .. first + size - 1`, lowest free first. */
export class TablePool {
  /** The first table of the pool. */
  readonly first: number;
  /** The number of tables in the pool. */
  readonly size: number;
  #levels: Uint32Array[] = [];
  #used = 0;

  /** Creates a pool with every table free. */
  constructor(first: number, size: number) {
    if (!Number.isInteger(first) || first < 0 || !Number.isInteger(size) || size < 1) {
      throw new RangeError(
        `a pool needs an integer first table >= 0 and size >= 1, got ${first} and ${size}`,
      );
    }
    this.first = first;
    this.size = size;
    let bits = size;
    for (;;) {
      const words = Math.ceil(bits / 32);
      const level = new Uint32Array(words);
      level.fill(0xffff_ffff);
      const tail = bits % 32;
      if (tail !== 0) level[words - 1] = (2 ** tail - 1) >>> 0;
      this.#levels.push(level);
      if (words === 1) break;
      bits = words;
    }
  }

  /** Tables currently taken. */
  get used(): number {
    return this.#used;
  }

  /** Tables currently free. */
  get free(): number {
    return this.size - this.#used;
  }

  /** Whether `table` belongs to this pool's range. */
  contains(table: number): boolean {
    return Number.isInteger(table) && table >= this.first && table < this.first + this.size;
  }

  /** Whether `table` is in the range and free. */
  isFree(table: number): boolean {
    if (!this.contains(table)) return false;
    const i = table - this.first;
    return (this.#levels[0][i >>> 5] & (1 << (i & 31))) !== 0;
  }

  /** The lowest free table, without taking it; undefined when none is left. */
  lowestFree(): number | undefined {
    const index = this.#lowestIndex();
    return index === undefined ? undefined : this.first + index;
  }

  /** Takes the lowest free table. Throws {@link PoolExhaustedError} when none is left. */
  allocate(): number {
    const index = this.#lowestIndex();
    if (index === undefined) throw new PoolExhaustedError(this.first, this.size);
    this.#clear(index);
    return this.first + index;
  }

  /** The bit index of the lowest free table: one word per level, top down. */
  #lowestIndex(): number | undefined {
    const levels = this.#levels;
    let index = 0;
    for (let k = levels.length - 1; k >= 0; k--) {
      const word = levels[k][index];
      if (word === 0) return undefined;
      index = (index << 5) | lowestBit(word);
    }
    return index;
  }

  /**
   * Marks a specific table taken (restoring a stored lease, or a
   * reservation). Returns false when it is outside the range or already taken.
   */
  take(table: number): boolean {
    if (!this.isFree(table)) return false;
    this.#clear(table - this.first);
    return true;
  }

  /**
   * Marks taken the tables `first` to `last` (all in the range) in one
   * tight loop: how stored leases are restored at start. `onTaken` hears
   * of tables that were taken already.
   */
  takeRange(first: number, last: number, onTaken: (table: number) => void): void {
    if (!this.contains(first) || !this.contains(last)) {
      throw new RangeError(
        `tables ${first}-${last} are not all in the pool ${this.first}-${
          this.first + this.size - 1
        }`,
      );
    }
    const level0 = this.#levels[0];
    const end = last - this.first;
    for (let bit = first - this.first; bit <= end;) {
      const word = bit >>> 5;
      if ((bit & 31) === 0 && bit + 31 <= end && level0[word] === 0xffff_ffff) {
        // 32 free tables at once: the word empties, the levels above learn it once.
        level0[word] = 0;
        this.#used += 32;
        this.#emptied(1, word);
        bit += 32;
        continue;
      }
      if ((level0[word] & (1 << (bit & 31))) === 0) onTaken(this.first + bit);
      else this.#clear(bit);
      bit++;
    }
  }

  /** Word `index` of level `k - 1` has no free bit left: clear its bit in the levels from `k` up. */
  #emptied(k: number, index: number): void {
    for (; k < this.#levels.length; k++) {
      const level = this.#levels[k];
      const word = index >>> 5;
      level[word] &= ~(1 << (index & 31));
      if (level[word] !== 0) break;
      index = word;
    }
  }

  /** Returns a table to the pool. Throws {@link DoubleFreeError} when it was free, RangeError when outside. */
  release(table: number): void {
    if (!this.contains(table)) {
      throw new RangeError(
        `table ${table} is outside the pool ${this.first}-${this.first + this.size - 1}`,
      );
    }
    if (this.isFree(table)) throw new DoubleFreeError(table);
    let index = table - this.first;
    for (const level of this.#levels) {
      const word = index >>> 5;
      const wasEmpty = level[word] === 0;
      level[word] |= 1 << (index & 31);
      if (!wasEmpty) break;
      index = word;
    }
    this.#used--;
  }

  #clear(bitIndex: number): void {
    let index = bitIndex;
    for (const level of this.#levels) {
      const word = index >>> 5;
      level[word] &= ~(1 << (index & 31));
      if (level[word] !== 0) break;
      index = word;
    }
    this.#used++;
  }
}
