/**
 * Observers: interfaces of optional, synchronous notification methods (`jobQueued?(job): void` …) through
 * which a component tells the outside what it does — the one hook metrics, timelines and the autoscaler
 * attach to. A component holds one observer; `fanOut` makes one of several. An observer that throws is
 * reported to `onError` and never reaches the component or the other observers.
 */

/** An interface whose members are all optional methods returning nothing. */
export type Observer<T> = { [K in keyof T]?: (...args: never[]) => void };

/** One observer that calls each of `observers` in turn, isolating their failures. */
export function fanOut<T extends Observer<T>>(observers: ReadonlyArray<T | undefined>, onError: (err: unknown, method: string) => void): T {
  const present = observers.filter((o): o is T => o !== undefined);
  const methods = new Map<string | symbol, (...args: unknown[]) => void>();
  return new Proxy({} as T, {
    get(_target, key) {
      let method = methods.get(key);
      if (!method) {
        method = (...args: unknown[]) => {
          for (const observer of present) {
            const fn = (observer as Record<string | symbol, unknown>)[key];
            if (typeof fn !== 'function') continue;
            try {
              (fn as (...a: unknown[]) => void).apply(observer, args);
            } catch (err) {
              onError(err, String(key));
            }
          }
        };
        methods.set(key, method);
      }
      return method;
    },
  });
}
