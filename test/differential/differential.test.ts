import { describe } from 'node:test';
import { useServer } from '../helpers/differential.ts';
import { checkoutCases } from './checkout.cases.ts';
import { clientCases } from './client.cases.ts';
import { endCases } from './end.cases.ts';
import { lifecycleCases } from './lifecycle.cases.ts';
import { optionsCases } from './options.cases.ts';
import { processCases } from './process.cases.ts';
import { queryCases } from './query.cases.ts';
import { timeoutCases } from './timeouts.cases.ts';
import { tlsCases } from './tls.cases.ts';

// The differential tier (issue #13): every case runs against node-postgres's pg.Pool and against
// pg-resilient's Pool on one real PostgreSQL started here, and compares what each observed (see
// test/helpers/differential.ts). One entry file, so the tier starts one server; the cases live in
// test/differential/*.cases.ts by subject. Deliberate differences are listed, with their reasons,
// in the README's "drop-in differences".
describe('differential: pg.Pool and pg-resilient side by side', () => {
  useServer();
  queryCases();
  checkoutCases();
  clientCases();
  endCases();
  timeoutCases();
  lifecycleCases();
  optionsCases();
  processCases();
  tlsCases();
});
