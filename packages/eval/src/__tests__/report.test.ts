import sharp from 'sharp';
import { svgToPng } from '@id3/core';
import { evaluateDistances, paperTable, rocSvg, scoreHistogramSvg } from '../index';

const dist = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 0.3 + (i % 7) * 0.05 : 0.9 + (i % 5) * 0.1));
const issame = dist.map((_, i) => i % 2 === 0);

describe('reports', () => {
  const r = evaluateDistances(dist, issame);

  it('paper table: the paper’s column order, ± std, missing columns say so, avg only over all five', () => {
    const table = paperTable([{ model: 'teacher', results: { LFW: r } }]);
    const [header, , row] = table.split('\n');
    expect(header).toBe('| model | LFW | CFP-FP | CPLFW | AgeDB-30 | CALFW | avg |');
    expect(row).toBe('| teacher | 100.00 ± 0.00 | no data | no data | no data | no data | n/a (1 of 5) |');
    const all = paperTable([{ model: 'm', results: { LFW: r, 'CFP-FP': r, CPLFW: r, 'AgeDB-30': r, CALFW: r } }]);
    expect(all.split('\n')[2].endsWith('| 100.00 |')).toBe(true);
  });

  it('ROC and score histograms render to real PNGs', async () => {
    for (const svg of [rocSvg('ROC', [{ label: 'LFW', result: r }]), scoreHistogramSvg('scores', dist, issame, r.thresholds[0])]) {
      const meta = await sharp(await svgToPng(svg)).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBe(800);
    }
  });
});
