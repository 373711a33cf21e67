/**
 * Runs the tasks of one key one after another (each starts once the one before it settled, whether it
 * resolved or failed) and the tasks of different keys side by side: appends to one log never interleave.
 */
export class SerialByKey {
  /** The last task of each key that has one running or waiting. */
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const next = (this.tails.get(key) ?? Promise.resolve()).then(task, task);
    this.tails.set(key, next);
    void next
      .finally(() => {
        if (this.tails.get(key) === next) this.tails.delete(key);
      })
      .catch(() => undefined);
    return next;
  }

  /** Settles once every task given so far has. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.tails.values()]);
  }
}
