// Network faults shared by both backends: with host networking the same iptables rules cut the
// Docker containers and the native processes alike.
import { IPTABLES_COMMENT, ensurePackages, fail, run } from './common.mjs';

/** DROP (no RST) every packet to `port` on the loopback; healRules() removes it. */
export function blackholePort(port) {
  ensurePackages(['iptables']);
  const args = ['-I', 'INPUT', '-p', 'tcp', '--dport', String(port), '-m', 'comment', '--comment', IPTABLES_COMMENT, '-j', 'DROP'];
  const r = run('iptables', args, { timeoutMs: 15_000 });
  if (!r.ok) {
    fail(`iptables failed: ${r.stderr.trim()}\n(if this is the nf_tables variant without kernel support, try: update-alternatives --set iptables /usr/sbin/iptables-legacy)`);
  }
}

export function blackholeRules() {
  const r = run('iptables', ['-S', 'INPUT'], { timeoutMs: 15_000 });
  if (!r.ok) return [];
  return r.stdout.split('\n').filter((l) => l.includes(IPTABLES_COMMENT));
}

export function healRules() {
  const removed = [];
  for (const rule of blackholeRules()) {
    // "-A INPUT -p tcp ... -j DROP" -> delete the same spec
    const spec = rule.replace(/^-A INPUT /, '');
    const args = ['-D', 'INPUT', ...splitRule(spec)];
    const r = run('iptables', args, { timeoutMs: 15_000 });
    if (!r.ok) fail(`could not remove iptables rule "${rule}": ${r.stderr.trim()}`);
    const m = rule.match(/--dport (\d+)/);
    if (m) removed.push(Number(m[1]));
  }
  return removed;
}

export function splitRule(spec) {
  const parts = [];
  const re = /"([^"]*)"|(\S+)/g;
  let m;
  while ((m = re.exec(spec))) parts.push(m[1] ?? m[2]);
  return parts;
}