/**
 * The ids of the last ended leases (between `limit / 2` and `limit` of them), so that a late
 * renew says LEASE_LOST rather than NOT_FOUND and a used id (a retried acquire) is never granted
 * again. Every acquire looks its new id up and every release adds one, so both are on the hot
 * path; a `Set` of 100,000 strings made each of them cost several cache misses and its growth
 * rehashed it again and again.
 *
 * The ids are kept in a ring of `limit` strings (adding one overwrites the oldest) and found
 * through two generations of open-addressing tables of 32-bit hashes and ring positions, each
 * table holding `limit / 2` entries at under half load. A lookup compares the id itself at the
 * positions whose hash matches, so answers are exact. When the newer table is full the older
 * one is cleared and becomes the newer: at least the last `limit / 2` ids are always found.
 */
function hashOf(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** Slots per entry at most: probe runs stay short. */
const SLOTS_PER_ENTRY = 2.5;
const MIN_CAPACITY = 1024;
/** Filter bits per slot: at 50,000 entries 4.7% of absent ids pass the filter. */
const FILTER_BITS_PER_SLOT = 8;

/**
 * One generation. A lookup of an absent id (every acquire's) first reads one bit of a filter an
 * eighth of the table's size, set for every hash in it: at this size the slots' probes are cache
 * misses, the filter's one read mostly not.
 */
class Table {
  /** Ring position + 1 (0: free slot). */
  positions: Int32Array;
  hashes: Int32Array;
  filter: Int32Array;
  capacity = MIN_CAPACITY;
  count = 0;

  constructor() {
    this.positions = new Int32Array(this.capacity);
    this.hashes = new Int32Array(this.capacity);
    this.filter = new Int32Array((this.capacity * FILTER_BITS_PER_SLOT) >>> 5);
  }

  add(hash: number, position: number): void {
    if ((this.count + 1) * SLOTS_PER_ENTRY > this.capacity) this.#grow();
    this.#put(hash, position + 1);
    this.count++;
  }

  /** The filter bit of `hash`, from other bits than its slot's. */
  #bit(hash: number): number {
    return (hash >>> 11) & (this.capacity * FILTER_BITS_PER_SLOT - 1);
  }

  #put(hash: number, stored: number): void {
    const mask = this.capacity - 1;
    let slot = hash & mask;
    while (this.positions[slot] !== 0) slot = (slot + 1) & mask;
    this.positions[slot] = stored;
    this.hashes[slot] = hash;
    const bit = this.#bit(hash);
    this.filter[bit >>> 5]! |= 1 << (bit & 31);
  }

  #grow(): void {
    const { positions, hashes } = this;
    this.capacity *= 2;
    this.positions = new Int32Array(this.capacity);
    this.hashes = new Int32Array(this.capacity);
    this.filter = new Int32Array((this.capacity * FILTER_BITS_PER_SLOT) >>> 5);
    for (let i = 0; i < positions.length; i++) if (positions[i] !== 0) this.#put(hashes[i]!, positions[i]!);
  }

  find(hash: number, id: string, ring: readonly string[]): boolean {
    const bit = this.#bit(hash);
    if ((this.filter[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    const mask = this.capacity - 1;
    for (let slot = hash & mask; this.positions[slot] !== 0; slot = (slot + 1) & mask) {
      if (this.hashes[slot] === hash && ring[this.positions[slot]! - 1] === id) return true;
    }
    return false;
  }

  /** Empties it, keeping its size (it will fill as far again). */
  clear(): void {
    this.positions.fill(0);
    this.filter.fill(0);
    this.count = 0;
  }
}

export class EndedIds {
  /** Grows to `#size` ids, then each new one overwrites the oldest. */
  readonly #ring: string[] = [];
  readonly #size: number;
  #next = 0;
  readonly #perTable: number;
  #current: Table;
  #before: Table;

  /** Remembers at least the last `limit / 2` ids, at most `limit`. */
  constructor(limit: number) {
    this.#size = Math.max(2, Math.floor(limit));
    this.#perTable = Math.floor(this.#size / 2);
    this.#current = new Table();
    this.#before = new Table();
  }

  add(id: string): void {
    if (this.#current.count >= this.#perTable) {
      const cleared = this.#before;
      cleared.clear();
      this.#before = this.#current;
      this.#current = cleared;
    }
    const position = this.#next;
    if (position === this.#ring.length) this.#ring.push(id);
    else this.#ring[position] = id;
    this.#next = (position + 1) % this.#size;
    this.#current.add(hashOf(id), position);
  }

  has(id: string): boolean {
    const hash = hashOf(id);
    return this.#current.find(hash, id, this.#ring) || this.#before.find(hash, id, this.#ring);
  }
}
