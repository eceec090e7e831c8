// Small helpers of the benchmark: command-line flags, progress lines, quantiles and medians.

const argv = process.argv.slice(2);

export function hasFlag(name: string): boolean {
  return argv.includes(`--${name}`);
}

export function flagNumber(name: string, dflt: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

/** `--name a,b,c` as a list, checked against the allowed values; `dflt` when absent. */
export function flagList<T extends string>(name: string, allowed: readonly T[], dflt: readonly T[]): readonly T[] {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const items = (argv[i + 1] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const it of items) {
    if (!(allowed as readonly string[]).includes(it)) throw new Error(`--${name}: unknown "${it}" (one of ${allowed.join(', ')})`);
  }
  if (items.length === 0) throw new Error(`--${name} needs a comma-separated list`);
  return items as T[];
}

const t0 = Date.now();
export const startedAt = t0;

export function progress(msg: string): void {
  const s = Math.round((Date.now() - t0) / 1000);
  process.stderr.write(`[bench ${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}

export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? 0;
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
