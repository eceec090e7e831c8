// Hand-written SVG chart of a demo run: per scenario, the frontend's p99 latency (log scale) and
// its errors per second, raw pg.Pool against pg-resilient, with the fault moments marked.
// No dependency: the chart must render wherever the demo runs.
import type { SecondPoint } from './frontend.ts';

export interface ChartMarker {
  /** Seconds since the scenario's origin. */
  t: number;
  label: string;
}

export interface ChartSeries {
  label: string;
  color: string;
  points: readonly SecondPoint[];
}

export interface ChartScenario {
  title: string;
  series: readonly ChartSeries[];
  markers: readonly ChartMarker[];
}

const W = 1200;
const LEFT = 80;
const RIGHT = 30;
const PLOT_W = W - LEFT - RIGHT;
const LAT_H = 190;
const ERR_H = 120;
const GAP = 38;
const SCENARIO_H = 36 + LAT_H + GAP + ERR_H + 58;
const HEADER_H = 96;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f = (n: number): string => (Math.round(n * 10) / 10).toString();

function fmtMs(ms: number): string {
  if (ms >= 1000) return `${ms / 1000} s`;
  return `${ms} ms`;
}

export function renderChart(title: string, subtitle: string, scenarios: readonly ChartScenario[]): string {
  const H = HEADER_H + scenarios.length * SCENARIO_H + 10;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${LEFT}" y="28" font-size="20" font-weight="bold" fill="#222">${esc(title)}</text>`);
  out.push(`<text x="${LEFT}" y="50" font-size="13" fill="#555">${esc(subtitle)}</text>`);
  // Legend, top right.
  const legend = scenarios[0]?.series ?? [];
  let x = LEFT;
  for (const s of legend) {
    out.push(`<rect x="${x}" y="67" width="26" height="6" fill="${s.color}"/>`);
    out.push(`<text x="${x + 34}" y="75" font-size="14" fill="#222">${esc(s.label)}</text>`);
    // Room for the label (about 7.5 px a character at 14 px) before the next one.
    x += Math.max(200, 34 + Math.ceil(s.label.length * 7.5) + 30);
  }
  scenarios.forEach((sc, i) => out.push(renderScenario(sc, HEADER_H + i * SCENARIO_H)));
  out.push('</svg>');
  return out.join('\n');
}

function renderScenario(sc: ChartScenario, top: number): string {
  const out: string[] = [];
  const duration = Math.max(10, ...sc.series.map((s) => s.points.length));
  const x = (t: number): number => LEFT + (t / duration) * PLOT_W;
  out.push(`<text x="${LEFT}" y="${top + 16}" font-size="16" font-weight="bold" fill="#222">${esc(sc.title)}</text>`);

  // ---- p99 latency, log scale: loopback latencies are ~ms, failover waits are ~10 s.
  const latTop = top + 36;
  const maxP99 = Math.max(1, ...sc.series.flatMap((s) => s.points.map((p) => p.p99)));
  const decadeMax = Math.max(2, Math.ceil(Math.log10(maxP99)));
  const decadeMin = 0; // 1 ms
  const yLat = (ms: number): number => {
    const v = Math.log10(Math.max(ms, 10 ** decadeMin));
    return latTop + LAT_H - ((v - decadeMin) / (decadeMax - decadeMin)) * LAT_H;
  };
  out.push(`<rect x="${LEFT}" y="${latTop}" width="${PLOT_W}" height="${LAT_H}" fill="#fafafa" stroke="#ccc"/>`);
  for (let d = decadeMin; d <= decadeMax; d++) {
    const y = yLat(10 ** d);
    out.push(`<line x1="${LEFT}" x2="${LEFT + PLOT_W}" y1="${f(y)}" y2="${f(y)}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${LEFT - 8}" y="${f(y + 4)}" font-size="12" text-anchor="end" fill="#444">${fmtMs(10 ** d)}</text>`);
  }
  out.push(`<text x="18" y="${latTop + LAT_H / 2}" font-size="13" fill="#222" transform="rotate(-90 18 ${latTop + LAT_H / 2})" text-anchor="middle">p99 latency (log)</text>`);

  // ---- errors per second, as side-by-side bars per second.
  const errTop = latTop + LAT_H + GAP;
  const maxErr = Math.max(1, ...sc.series.flatMap((s) => s.points.map((p) => p.errors)));
  const errStep = niceStep(maxErr);
  const errMax = Math.ceil(maxErr / errStep) * errStep;
  const yErr = (n: number): number => errTop + ERR_H - (n / errMax) * ERR_H;
  out.push(`<rect x="${LEFT}" y="${errTop}" width="${PLOT_W}" height="${ERR_H}" fill="#fafafa" stroke="#ccc"/>`);
  for (let v = 0; v <= errMax; v += errStep) {
    const y = yErr(v);
    out.push(`<line x1="${LEFT}" x2="${LEFT + PLOT_W}" y1="${f(y)}" y2="${f(y)}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${LEFT - 8}" y="${f(y + 4)}" font-size="12" text-anchor="end" fill="#444">${v}</text>`);
  }
  out.push(`<text x="18" y="${errTop + ERR_H / 2}" font-size="13" fill="#222" transform="rotate(-90 18 ${errTop + ERR_H / 2})" text-anchor="middle">errors / s</text>`);

  // x axis ticks (shared)
  const tickEvery = duration > 120 ? 20 : 10;
  for (let t = 0; t <= duration; t += tickEvery) {
    out.push(`<line x1="${f(x(t))}" x2="${f(x(t))}" y1="${errTop + ERR_H}" y2="${errTop + ERR_H + 5}" stroke="#888"/>`);
    out.push(`<text x="${f(x(t))}" y="${errTop + ERR_H + 18}" font-size="12" text-anchor="middle" fill="#444">${t} s</text>`);
  }
  out.push(`<text x="${LEFT + PLOT_W / 2}" y="${errTop + ERR_H + 36}" font-size="12" text-anchor="middle" fill="#444">seconds since the load started (requests counted in the second they were sent)</text>`);

  // Fault markers across both plots, labels staggered on three rows so close ones stay legible.
  sc.markers.forEach((m, i) => {
    const mx = f(x(m.t));
    out.push(`<line x1="${mx}" x2="${mx}" y1="${latTop}" y2="${errTop + ERR_H}" stroke="#333" stroke-dasharray="5,4" stroke-width="1.3"/>`);
    const ly = latTop + 14 + (i % 3) * 15;
    const anchor = x(m.t) > LEFT + PLOT_W - 160 ? 'end' : 'start';
    const dx = anchor === 'end' ? -4 : 4;
    out.push(`<text x="${f(x(m.t) + dx)}" y="${ly}" font-size="12" font-weight="bold" fill="#333" text-anchor="${anchor}" stroke="#fafafa" stroke-width="3" paint-order="stroke">${esc(m.label)}</text>`);
  });

  // Series: latency lines and error bars.
  const n = sc.series.length;
  const slot = PLOT_W / duration;
  const barW = Math.max(1, (slot * 0.8) / n);
  sc.series.forEach((s, si) => {
    const pts = s.points.filter((p) => p.requests > 0).map((p) => `${f(x(p.t + 0.5))},${f(yLat(p.p99))}`);
    if (pts.length > 0) out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"/>`);
    for (const p of s.points) {
      if (p.errors === 0) continue;
      const bx = x(p.t) + slot * 0.1 + si * barW;
      out.push(`<rect x="${f(bx)}" y="${f(yErr(p.errors))}" width="${f(barW)}" height="${f(errTop + ERR_H - yErr(p.errors))}" fill="${s.color}"/>`);
    }
  });
  return out.join('\n');
}

function niceStep(max: number): number {
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return Math.max(1, m * mag);
  return Math.max(1, 10 * mag);
}
