import sharp from 'sharp';
import { gridSvg, lineChartSvg, svgToPng } from '../plot';

const chart = (title: string, width = 200, height = 100): string =>
  lineChartSvg({
    title,
    xLabel: 'x',
    yLabel: 'y',
    width,
    height,
    series: [
      {
        label: 's',
        color: '#000',
        points: [
          { x: 0, y: 0 },
          { x: 1, y: 1 },
        ],
      },
    ],
  });

describe('gridSvg', () => {
  it('places each chart at its cell, row by row, in one SVG of cols × rows cells', async () => {
    const svg = gridSvg([chart('a'), chart('b'), chart('c')], 2, 200, 100);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="400" height="200">/);
    expect([...svg.matchAll(/<svg x="(\d+)" y="(\d+)" /g)].map((m) => [Number(m[1]), Number(m[2])])).toEqual([
      [0, 0],
      [200, 0],
      [0, 100],
    ]);
    expect(svg.indexOf('>a<')).toBeLessThan(svg.indexOf('>b<'));
    // librsvg draws the nested charts: the PNG has the grid's size.
    expect(await sharp(await svgToPng(svg)).metadata()).toMatchObject({ width: 400, height: 200, format: 'png' });
  });

  it('stacks charts vertically with one column', () => {
    const svg = gridSvg([chart('top'), chart('bottom')], 1, 200, 100);
    expect(svg).toMatch(/width="200" height="200"/);
    expect([...svg.matchAll(/<svg x="(\d+)" y="(\d+)" /g)].map((m) => m[2])).toEqual(['0', '100']);
  });

  it('refuses a bad column count and anything that is not an SVG document', () => {
    expect(() => gridSvg([chart('a')], 0)).toThrow(/cols must be a positive integer \(got 0\)/);
    expect(() => gridSvg([chart('a'), '<g/>'], 1)).toThrow(/chart 1 does not start with an <svg> element/);
  });
});

describe('lineChartSvg', () => {
  it('draws a legend entry per series unless told not to', () => {
    const series = [
      {
        label: 'first',
        color: '#111',
        points: [
          { x: 0, y: 0 },
          { x: 1, y: 1 },
        ],
      },
      {
        label: 'second',
        color: '#222',
        points: [
          { x: 0, y: 1 },
          { x: 1, y: 0 },
        ],
      },
    ];
    const withLegend = lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series });
    expect(withLegend.match(/<polyline /g)).toHaveLength(2);
    expect(withLegend).toContain('>first</text>');
    expect(withLegend).toContain('>second</text>');
    const without = lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series, legend: false });
    expect(without.match(/<polyline /g)).toHaveLength(2);
    expect(without).not.toContain('>first</text>');
    expect(without).not.toContain('fill="#111"');
  });
});
