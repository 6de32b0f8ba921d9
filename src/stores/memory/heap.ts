/** A binary min-heap of (due time, id) entries. Entries may go stale; callers check them on pop. */
export class DueHeap {
  readonly #times: number[] = [];
  readonly #ids: string[] = [];

  get size(): number {
    return this.#times.length;
  }

  push(at: number, id: string): void {
    const times = this.#times;
    const ids = this.#ids;
    let i = times.length;
    times.push(at);
    ids.push(id);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (times[parent]! <= at) break;
      times[i] = times[parent]!;
      ids[i] = ids[parent]!;
      i = parent;
    }
    times[i] = at;
    ids[i] = id;
  }

  peekTime(): number | undefined {
    return this.#times[0];
  }

  peekId(): string | undefined {
    return this.#ids[0];
  }

  pop(): void {
    const times = this.#times;
    const ids = this.#ids;
    const lastTime = times.pop()!;
    const lastId = ids.pop()!;
    const n = times.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && times[right]! < times[left]! ? right : left;
      if (times[child]! >= lastTime) break;
      times[i] = times[child]!;
      ids[i] = ids[child]!;
      i = child;
    }
    times[i] = lastTime;
    ids[i] = lastId;
  }
}
