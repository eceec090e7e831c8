// Which backend runs the cluster: PG_CLUSTER_BACKEND=docker (default), native, or auto (docker,
// falling back loudly to native when the engine cannot start).
import { fail } from './common.mjs';
import { docker } from './docker.mjs';
import { dockerWorks, ensureDockerEngine } from './image.mjs';
import { native } from './native.mjs';

function loudFallback(reason) {
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n[cluster] DOCKER ENGINE UNAVAILABLE: ${reason}\n[cluster] PG_CLUSTER_BACKEND=auto: FALLING BACK TO THE NATIVE BACKEND (local processes)\n${bar}\n\n`);
}

export async function chooseBackend(verb) {
  const want = (process.env.PG_CLUSTER_BACKEND || 'docker').toLowerCase();
  if (want === 'docker') return docker;
  if (want === 'native') return native;
  if (want !== 'auto') fail(`PG_CLUSTER_BACKEND must be docker, native or auto (got "${want}")`);
  if (verb !== 'up') {
    // use whichever is running
    if (native.isRunning()) return native;
    if (dockerWorks()) return docker;
    return native;
  }
  try {
    await ensureDockerEngine();
    return docker;
  } catch (e) {
    loudFallback(e.message.split('\n')[0]);
    return native;
  }
}
