import { settingKey } from '../classify/session-state.ts';

/**
 * The session settings (SET / RESET outside a transaction, or inside one that committed) a
 * checked-out client runs again on a connection swapped in underneath it: the last text per
 * setting (`settingKey`), in the order they were last run, so the list stays as long as the
 * number of settings the application uses, however often it sets them. RESET ALL empties it (a
 * new connection already has every setting as RESET ALL leaves it).
 */
export class SessionSettings {
  readonly #byKey = new Map<string, string>();

  add(text: string): void {
    const key = settingKey(text);
    if (key === '*') {
      this.#byKey.clear();
      return;
    }
    // Delete first: the text moves to the end, after every setting run before it.
    this.#byKey.delete(key);
    this.#byKey.set(key, text);
  }

  addAll(texts: readonly string[]): void {
    for (const t of texts) this.add(t);
  }

  clear(): void {
    this.#byKey.clear();
  }

  get size(): number {
    return this.#byKey.size;
  }

  /** The texts to run on a new connection, in order. */
  texts(): IterableIterator<string> {
    return this.#byKey.values();
  }
}
