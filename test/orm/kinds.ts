// Short, stable names for the errors an ORM hands the application, so one line per run can say
// what reached it. Every ORM wraps the driver's error its own way; the root is what tells the
// failure apart (57P01 while a statement ran, a dead connection, a refused connect, …).

const MESSAGE_KINDS: Array<[RegExp, string]> = [
  [/Connection terminated unexpectedly/i, 'conn-terminated'],
  [/Connection terminated/i, 'conn-ended'],
  [/not queryable/i, 'not-queryable'],
  [/Client was closed and is not queryable/i, 'client-closed'],
  [/timeout exceeded when trying to connect/i, 'connect-timeout'],
  [/Timeout acquiring a connection/i, 'acquire-timeout'],
  [/has already been released|already been released|QueryRunnerAlreadyReleased/i, 'runner-released'],
  [/ECONNRESET/, 'ECONNRESET'],
  [/ECONNREFUSED/, 'ECONNREFUSED'],
];

/** Codes worth naming as they are: SQLSTATEs, pg-resilient's PGR_* codes, socket errno names. */
function namedCode(code: unknown): string | undefined {
  if (typeof code !== 'string') return undefined;
  if (/^PGR_[A-Z_]+$/.test(code) || /^[0-9A-Z]{5}$/.test(code) || /^E[A-Z]+$/.test(code)) return code;
  return undefined;
}

/** The wrapped errors each ORM keeps, outermost first. */
function inner(e: Record<string, unknown>): unknown[] {
  return [
    e['driverError'], // TypeORM QueryFailedError
    e['original'], e['parent'], // Sequelize
    e['cause'], // Error.cause: pg-resilient, MikroORM, Prisma's DriverAdapterError (a plain object there)
  ].filter((x) => x !== undefined && x !== null && x !== e);
}

/** A short name for the failure at the root of `err`, e.g. `57P01`, `conn-terminated`, `PGR_STATEMENT_OUTCOME_UNKNOWN`. */
export function errorKind(err: unknown): string {
  const seen = new Set<unknown>();
  let fallback: string | undefined;
  const visit = (e: unknown, depth: number): string | undefined => {
    if (depth > 6 || seen.has(e) || typeof e !== 'object' || e === null) return undefined;
    seen.add(e);
    const r = e as Record<string, unknown>;
    // pg-resilient's own code names the outcome the application saw; its cause says why.
    const code = namedCode(r['code']) ?? namedCode(r['originalCode']);
    if (code?.startsWith('PGR_')) {
      const why = inner(r).map((c) => visit(c, depth + 1)).find((k) => k !== undefined);
      return why === undefined ? code : `${code}(${why})`;
    }
    if (code !== undefined) return code;
    for (const c of inner(r)) {
      const k = visit(c, depth + 1);
      if (k !== undefined) return k;
    }
    // Prisma's DriverAdapterError carries a plain { kind, … } as cause for errors without SQLSTATE.
    if (typeof r['kind'] === 'string' && r['kind'] !== 'postgres' && !(e instanceof Error)) return r['kind'];
    const message = typeof r['message'] === 'string' ? r['message'] : typeof r['kind'] === 'string' ? r['kind'] : '';
    for (const [re, kind] of MESSAGE_KINDS) if (re.test(message)) return kind;
    fallback ??= `${typeof r['name'] === 'string' ? r['name'] : 'Error'}: ${message.slice(0, 60)}`;
    return undefined;
  };
  return visit(err, 0) ?? fallback ?? String(err).slice(0, 60);
}
