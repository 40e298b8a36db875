import sharp from 'sharp';

/** One histogram series: counts over shared bin edges. */
export interface HistogramSeries {
  readonly label: string;
  readonly color: string;
  readonly counts: ArrayLike<number>;
}

export interface HistogramPlot {
  readonly title: string;
  readonly xLabel: string;
  /** counts.length + 1 edges. */
  readonly edges: ArrayLike<number>;
  readonly series: readonly HistogramSeries[];
  /** Normalise each series to a density so series of different sizes compare. */
  readonly density?: boolean;
  /** Vertical marker lines (e.g. "min angle reached"). */
  readonly markers?: readonly { x: number; label: string; color: string }[];
  readonly width?: number;
  readonly height?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Canvas size, margins and plot-area size shared by every chart. */
function frame(o: { width?: number; height?: number }) {
  const W = o.width ?? 800;
  const H = o.height ?? 480;
  const m = { left: 70, right: 20, top: 40, bottom: 60 };
  return { W, H, m, pw: W - m.left - m.right, ph: H - m.top - m.bottom };
}

/** SVG of overlaid step histograms (kept separate from rasterising so it can be tested as text). */
export function histogramSvg(plot: HistogramPlot): string {
  const { W, H, m, pw, ph } = frame(plot);
  const edges = Array.from(plot.edges);
  const x0 = edges[0];
  const x1 = edges[edges.length - 1];
  const ys = plot.series.map((s) => {
    const counts = Array.from(s.counts);
    if (!plot.density) return counts;
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    return counts.map((c, i) => c / total / (edges[i + 1] - edges[i]));
  });
  const yMax = Math.max(1e-12, ...ys.flat());
  const sx = (x: number): number => m.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number): number => m.top + ph - (y / yMax) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="13">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16">${esc(plot.title)}</text>`,
    `<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="black"/>`,
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="black"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(plot.xLabel)}</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${plot.density ? 'density' : 'count'}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const x = x0 + ((x1 - x0) * i) / 5;
    parts.push(`<line x1="${sx(x)}" y1="${m.top + ph}" x2="${sx(x)}" y2="${m.top + ph + 5}" stroke="black"/>`);
    parts.push(`<text x="${sx(x)}" y="${m.top + ph + 20}" text-anchor="middle">${Number(x.toPrecision(3))}</text>`);
    const y = (yMax * i) / 5;
    parts.push(`<text x="${m.left - 6}" y="${sy(y) + 4}" text-anchor="end">${Number(y.toPrecision(3))}</text>`);
  }
  plot.series.forEach((s, k) => {
    const pts: string[] = [];
    ys[k].forEach((y, i) => {
      pts.push(`${sx(edges[i]).toFixed(1)},${sy(y).toFixed(1)}`, `${sx(edges[i + 1]).toFixed(1)},${sy(y).toFixed(1)}`);
    });
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.join(' ')}"/>`);
    parts.push(`<rect x="${m.left + pw - 230}" y="${m.top + 8 + k * 20}" width="14" height="14" fill="${s.color}"/>`);
    parts.push(`<text x="${m.left + pw - 210}" y="${m.top + 20 + k * 20}">${esc(s.label)}</text>`);
  });
  for (const mk of plot.markers ?? []) {
    parts.push(`<line x1="${sx(mk.x)}" y1="${m.top}" x2="${sx(mk.x)}" y2="${m.top + ph}" stroke="${mk.color}" stroke-dasharray="5,4"/>`);
    parts.push(`<text x="${sx(mk.x) + 4}" y="${m.top + 14}" fill="${mk.color}">${esc(mk.label)}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/**
 * One SVG holding several charts on a grid of `cols` columns, each cell `w` × `h` (the charts'
 * own size), placed by nesting each chart's <svg> at its cell's x / y; rasterised once.
 */
export function gridSvg(charts: readonly string[], cols: number, w = 800, h = 480): string {
  if (!Number.isInteger(cols) || cols < 1) throw new Error(`gridSvg: cols must be a positive integer (got ${cols})`);
  const rows = Math.ceil(charts.length / cols);
  const inner = charts
    .map((svg, i) => {
      if (!svg.startsWith('<svg ')) throw new Error(`gridSvg: chart ${i} does not start with an <svg> element`);
      return svg.replace('<svg ', `<svg x="${(i % cols) * w}" y="${Math.floor(i / cols) * h}" `);
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${cols * w}" height="${rows * h}"><rect width="100%" height="100%" fill="white"/>${inner}</svg>`;
}

/** Rasterise an SVG to PNG bytes with sharp (librsvg). */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** Fixed-width histogram of values into `bins` bins over [lo, hi] (values outside are clamped). */
export function histogram(values: ArrayLike<number>, lo: number, hi: number, bins: number, into?: Float64Array): Float64Array {
  const counts = into ?? new Float64Array(bins);
  const scale = bins / (hi - lo);
  for (let i = 0; i < values.length; i++) {
    const b = Math.floor((values[i] - lo) * scale);
    counts[b < 0 ? 0 : b >= bins ? bins - 1 : b] += 1;
  }
  return counts;
}

export function binEdges(lo: number, hi: number, bins: number): number[] {
  return Array.from({ length: bins + 1 }, (_, i) => lo + ((hi - lo) * i) / bins);
}

/** One curve of a line chart. */
export interface LineSeries {
  readonly label: string;
  readonly color: string;
  readonly points: readonly { readonly x: number; readonly y: number }[];
}

export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly LineSeries[];
  /** Log-scale x axis (e.g. FAR on a ROC curve), from xMin (points below are clamped). */
  readonly logX?: { readonly min: number };
  readonly xRange?: readonly [number, number];
  readonly yRange?: readonly [number, number];
  readonly width?: number;
  readonly height?: number;
  /** Draw the series' legend in the top-left corner (default true; a single series named by the y label needs none). */
  readonly legend?: boolean;
}

/** SVG of a line chart (ROC curves, loss curves). */
export function lineChartSvg(chart: LineChart): string {
  const { W, H, m, pw, ph } = frame(chart);
  const all = chart.series.flatMap((s) => s.points);
  const tx = (x: number): number => (chart.logX ? Math.log10(Math.max(x, chart.logX.min)) : x);
  const [x0, x1] = chart.xRange ? chart.xRange.map(tx) : [Math.min(...all.map((p) => tx(p.x))), Math.max(...all.map((p) => tx(p.x)))];
  const [y0, y1] = chart.yRange ?? [Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y))];
  const sx = (x: number): number => m.left + ((tx(x) - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number): number => m.top + ph - ((y - y0) / (y1 - y0 || 1)) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="13">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16">${esc(chart.title)}</text>`,
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(chart.xLabel)}</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(chart.yLabel)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const xv = x0 + ((x1 - x0) * i) / 5;
    const label = chart.logX ? `1e${xv.toFixed(1)}` : String(Number(xv.toPrecision(3)));
    const px = m.left + (pw * i) / 5;
    parts.push(`<line x1="${px}" y1="${m.top + ph}" x2="${px}" y2="${m.top + ph + 5}" stroke="black"/>`);
    parts.push(`<text x="${px}" y="${m.top + ph + 20}" text-anchor="middle">${label}</text>`);
    const yv = y0 + ((y1 - y0) * i) / 5;
    parts.push(`<text x="${m.left - 6}" y="${sy(yv) + 4}" text-anchor="end">${Number(yv.toPrecision(3))}</text>`);
    parts.push(`<line x1="${m.left}" y1="${sy(yv)}" x2="${m.left + pw}" y2="${sy(yv)}" stroke="#ddd"/>`);
  }
  chart.series.forEach((s, k) => {
    const pts = s.points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts}"/>`);
    if (chart.legend === false) return;
    parts.push(`<rect x="${m.left + 12}" y="${m.top + 10 + k * 20}" width="14" height="14" fill="${s.color}"/>`);
    parts.push(`<text x="${m.left + 32}" y="${m.top + 22 + k * 20}">${esc(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
