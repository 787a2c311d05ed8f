/**
 * Group commit: items submitted while a batch is running (or in the same tick) are handled
 * together by one call of `run`, at most `maxBatch` at a time and `maxConcurrent` calls at
 * once. Under load the batches grow by themselves; alone, an item waits one tick.
 */
export class Batcher<I, O> {
  private readonly waiting: {
    item: I;
    resolve: (o: O) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private running = 0;
  private scheduled = false;

  constructor(
    /** Handles a batch; resolves with one result per item, in order. */
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly maxBatch = 64,
    private readonly maxConcurrent = 2,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule() {
    if (this.scheduled || this.running >= this.maxConcurrent) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush() {
    while (this.running < this.maxConcurrent && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.maxBatch);
      this.running++;
      this.run(batch.map((b) => b.item))
        .then(
          (results) => batch.forEach((b, i) => b.resolve(results[i])),
          (error: unknown) => batch.forEach((b) => b.reject(error)),
        )
        .finally(() => {
          this.running--;
          if (this.waiting.length > 0) this.schedule();
        });
    }
  }
}
