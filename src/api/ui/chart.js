// The RAM-copy progress chart, drawn by hand in SVG: percent of guest RAM
// sent over time (area), the stream's rate (dashed, scaled to its top, which
// the legend under the chart gives), from the
// samples the page took of GET /v1/migrations/:id while the copy ran.
import { s } from "./dom.js";

/** @typedef {{ t: number, pct: number, mbps: number, remaining: number }} Sample */

const W = 520;
const H = 150;
const PAD = { l: 38, r: 12, t: 10, b: 24 };

/** @param {number} max */
function niceStep(max) {
  const raw = max / 4;
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= raw) ?? raw;
}

/** @param {Sample[]} samples @param {string} emptyText what to say with no sample @returns {SVGElement} */
export function progressChart(samples, emptyText) {
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const tMax = Math.max(1000, ...samples.map((x) => x.t));
  const rMax = Math.max(1, ...samples.map((x) => x.mbps));
  const x = (/** @type {number} */ t) => PAD.l + (t / tMax) * iw;
  const y = (/** @type {number} */ pct) => PAD.t + ih - (pct / 100) * ih;
  const yr = (/** @type {number} */ r) => PAD.t + ih - (r / rMax) * ih;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "RAM copy progress" });
  for (const pct of [0, 25, 50, 75, 100]) {
    svg.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: y(pct), y2: y(pct), class: pct === 0 ? "axis" : "grid" }));
    svg.append(s("text", { x: PAD.l - 6, y: y(pct) + 4, class: "tick", "text-anchor": "end" }, `${pct}%`));
  }
  const step = niceStep(tMax / 1000) * 1000;
  for (let t = 0; t <= tMax + 1; t += step) {
    svg.append(s("text", { x: x(t), y: H - 6, class: "tick", "text-anchor": "middle" }, `${(t / 1000).toFixed(step < 1000 ? 1 : 0)} s`));
  }
  if (samples.length === 0) {
    svg.append(s("text", { x: PAD.l + iw / 2, y: PAD.t + ih / 2, class: "empty", "text-anchor": "middle" }, emptyText));
    return svg;
  }
  const pts = samples.map((p) => `${x(p.t).toFixed(1)},${y(p.pct).toFixed(1)}`);
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (first && last) {
    svg.append(s("path", { d: `M${x(first.t).toFixed(1)},${y(0)} L${pts.join(" L")} L${x(last.t).toFixed(1)},${y(0)} Z`, class: "area" }));
  }
  svg.append(s("polyline", { points: pts.join(" "), class: "pct" }));
  svg.append(s("polyline", { points: samples.map((p) => `${x(p.t).toFixed(1)},${yr(p.mbps).toFixed(1)}`).join(" "), class: "rate" }));
  for (const p of samples) svg.append(s("circle", { cx: x(p.t), cy: y(p.pct), r: 2.5, class: "dot" }));
  return svg;
}
