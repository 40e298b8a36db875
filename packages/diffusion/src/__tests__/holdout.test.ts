import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { heldOutRows, readPreparedLabels } from '../holdout';

// 10 people with 1..10 photos each, rows interleaved so a person's photos are not contiguous.
const labels: number[] = [];
for (let photo = 0; photo < 10; photo++) for (let person = photo; person < 10; person++) labels.push(person);
const n = labels.length; // 55

describe('heldOutRows', () => {
  it('by image: `holdout` distinct rows, sorted, the same for the same seed and different for another', () => {
    const a = heldOutRows(n, 3, 7);
    expect(a).toHaveLength(7);
    expect(new Set(a).size).toBe(7);
    expect([...a].sort((x, y) => x - y)).toEqual(a);
    expect(heldOutRows(n, 3, 7)).toEqual(a);
    expect(heldOutRows(n, 4, 7)).not.toEqual(a);
  });

  it('by person: whole people only, at least `holdout` rows, no more people than needed', () => {
    for (const seed of [0, 1, 2, 3]) {
      const held = heldOutRows(n, seed, 12, labels);
      const people = new Set(held.map((r) => labels[r]));
      // every photo of a held-out person is held out, none of anyone else's
      for (let r = 0; r < n; r++) expect(held.includes(r)).toBe(people.has(labels[r]));
      expect(held.length).toBeGreaterThanOrEqual(12);
      // people are added until 12 rows are out, so the last one overshoots by less than its own photos
      expect(held.length).toBeLessThan(12 + 10);
      expect([...held].sort((x, y) => x - y)).toEqual(held);
      expect(heldOutRows(n, seed, 12, labels)).toEqual(held);
    }
    // the people chosen depend on the seed
    const sets = [0, 1, 2, 3, 4, 5].map((seed) => [...new Set(heldOutRows(n, seed, 12, labels).map((r) => labels[r]))].sort().join());
    expect(new Set(sets).size).toBeGreaterThan(1);
    expect(() => heldOutRows(n, 0, 12, labels.slice(1))).toThrow(/54 labels for 55 rows/);
  });
});

describe('readPreparedLabels', () => {
  const dir = mkdtempSync(join(tmpdir(), 'id3-holdout-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the labels of prepare index.json, and names the file, row and field when one is missing', () => {
    const path = join(dir, 'index.json');
    writeFileSync(
      path,
      JSON.stringify({
        rows: [
          { path: 'a/1.jpg', label: 0 },
          { path: 'b/1.jpg', label: 1 },
        ],
      }),
    );
    expect(readPreparedLabels(path, 2, 'train-diffusion.holdoutBy')).toEqual([0, 1]);
    expect(() => readPreparedLabels(path, 3, 'train-diffusion.holdoutBy')).toThrow(/index\.json: 2 rows but 3 crops/);
    writeFileSync(path, JSON.stringify({ rows: [{ path: 'a/1.jpg', label: 0 }, { path: 'utk/25_0_1.jpg' }] }));
    expect(() => readPreparedLabels(path, 2, 'train-diffusion.holdoutBy')).toThrow(
      /index\.json: row 1 \(utk\/25_0_1\.jpg\) has no identity label, so field 'train-diffusion\.holdoutBy': 'person' cannot hold out whole people/,
    );
  });
});
