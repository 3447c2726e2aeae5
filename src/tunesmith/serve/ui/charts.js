// SVG charts drawn from numbers already in the page: line charts over training steps and a histogram of
// token lengths, each with ticked and labelled axes. No library: the page loads nothing from the network.
const MARGIN = { left: 62, right: 12, top: 12, bottom: 36 };

function niceStep(span, count) {  // 1, 2 or 5 times a power of ten, giving about `count` intervals
  const raw = span / Math.max(count, 1), power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
}

export function ticks(lo, hi, count = 5) {
  if (hi === lo) return [lo];
  const step = niceStep(hi - lo, count), first = Math.ceil(lo / step - 1e-9) * step, out = [];
  for (let v = first; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function label(v) {
  const a = Math.abs(v);
  if (v === 0) return "0";
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

function frame(svg) {
  const { width: W, height: H } = svg.viewBox.baseVal;
  return { W, H, x0: MARGIN.left, x1: W - MARGIN.right, y0: H - MARGIN.bottom, y1: MARGIN.top };
}

function axes(f, xTicks, yTicks, x, y, xTitle) {
  const grid = yTicks.map((v) => `<line class="grid" x1="${f.x0}" x2="${f.x1}" y1="${y(v)}" y2="${y(v)}"/>
    <text class="tick y" x="${f.x0 - 6}" y="${y(v) + 4}" text-anchor="end">${label(v)}</text>`).join("");
  const xs = xTicks.map((v) => `<line class="axis" x1="${x(v)}" x2="${x(v)}" y1="${f.y0}" y2="${f.y0 + 5}"/>
    <text class="tick x" x="${x(v)}" y="${f.y0 + 18}" text-anchor="middle">${label(v)}</text>`).join("");
  return `${grid}${xs}<line class="axis" x1="${f.x0}" y1="${f.y0}" x2="${f.x1}" y2="${f.y0}"/>
    <line class="axis" x1="${f.x0}" y1="${f.y1}" x2="${f.x0}" y2="${f.y0}"/>
    <text class="tick" x="${(f.x0 + f.x1) / 2}" y="${f.H - 4}" text-anchor="middle">${xTitle}</text>`;
}

// points: [{step, <series keys>...}]; series: [{key, cls, label, colour, dash}]; range fixes the y axis.
export function lineChart(svg, points, series, range = null) {
  const f = frame(svg);
  const values = points.flatMap((p) => series.map((s) => p[s.key])).filter((v) => v != null && isFinite(v));
  svg.dataset.points = points.length;
  if (!values.length) {
    svg.innerHTML = `<text x="${f.W / 2}" y="${f.H / 2}" text-anchor="middle">no metrics yet</text>`;
    return;
  }
  const steps = points.map((p) => p.step), minStep = Math.min(...steps), maxStep = Math.max(...steps);
  let [lo, hi] = range || [Math.min(...values), Math.max(...values)];
  if (hi === lo) { const pad = Math.abs(hi) * 0.05 || 0.5; lo -= pad; hi += pad; }
  const yTicks = ticks(lo, hi);
  [lo, hi] = [Math.min(lo, yTicks[0]), Math.max(hi, yTicks[yTicks.length - 1])];
  const x = (s) => f.x0 + (f.x1 - f.x0) * (maxStep === minStep ? 0.5 : (s - minStep) / (maxStep - minStep));
  const y = (v) => f.y0 - (f.y0 - f.y1) * (v - lo) / (hi - lo);
  const xTicks = ticks(minStep, maxStep, 6).filter((s) => Number.isInteger(s));
  const line = (key) => points.filter((p) => p[key] != null).map((p) => `${x(p.step).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  const drawn = series.filter((s) => points.some((p) => p[s.key] != null));
  svg.innerHTML = axes(f, xTicks, yTicks, x, y, "step") + drawn.map((s, i) => {
    const only = points.filter((p) => p[s.key] != null).length === 1;  // one point: a dot, not an invisible line
    const dot = only ? points.filter((p) => p[s.key] != null).map((p) => `<circle cx="${x(p.step)}" cy="${y(p[s.key])}" r="4" fill="${s.colour}"/>`).join("") : "";
    return `<polyline class="${s.cls}" fill="none" stroke="${s.colour}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 3"' : ""} points="${line(s.key)}"/>${dot}
      <text x="${f.x1 - 150}" y="${f.y1 + 14 + 16 * i}" font-size="12" fill="${s.colour}">${s.label}</text>`;
  }).join("");
}

// bins: [{low, high, rows}] of token lengths
export function histogram(svg, bins) {
  const f = frame(svg);
  svg.dataset.bins = bins.length;
  if (!bins.length) { svg.innerHTML = `<text x="${f.W / 2}" y="${f.H / 2}" text-anchor="middle">no rows</text>`; return; }
  const most = Math.max(...bins.map((b) => b.rows)), lo = bins[0].low, hi = bins[bins.length - 1].high + 1;
  const yTicks = ticks(0, most, 4).filter((v) => Number.isInteger(v)), top = Math.max(most, yTicks[yTicks.length - 1]);
  const x = (v) => f.x0 + (f.x1 - f.x0) * (hi === lo ? 0.5 : (v - lo) / (hi - lo));
  const y = (v) => f.y0 - (f.y0 - f.y1) * v / top;
  const bars = bins.map((b) => `<rect class="bar" x="${x(b.low) + 1}" y="${y(b.rows)}" width="${Math.max(1, x(b.high + 1) - x(b.low) - 2)}"
    height="${f.y0 - y(b.rows)}"><title>${b.low}–${b.high} tokens: ${b.rows} rows</title></rect>`).join("");
  svg.innerHTML = axes(f, ticks(lo, hi, 6).filter((v) => Number.isInteger(v)), yTicks, x, y, "tokens per row") + bars;
}
