import { largestPoseDifference, poseBinnedAccuracy, yawDifferences } from '../index';

describe('poseBinnedAccuracy (accuracy by yaw difference)', () => {
  // Ten hand-made pairs: |Δyaw| in degrees (one unknown) and the protocol's per-pair outcome.
  const diff = [0, 5, 9.99, 10, 15, 20, 30, null, 40, 25];
  const correct = [true, true, true, false, true, false, true, false, false, true];

  it('top quartile of the 9 known pairs: ceil(2.25) = 3 largest (40, 30, 25), 2 of 3 right', () => {
    const p = poseBinnedAccuracy(diff, correct);
    expect([p.known, p.unknown]).toEqual([9, 1]);
    expect(p.topIndices).toEqual([6, 8, 9]);
    expect(p.top).toEqual({ label: 'top 25%', min: 25, max: Infinity, pairs: 3, correct: 2, accuracy: 2 / 3 });
  });

  it('fixed bins [0, 10), [10, 20), [20, ∞): bounds inclusive below, the unknown pair in none', () => {
    const p = poseBinnedAccuracy(diff, correct);
    expect(p.bins).toEqual([
      { label: '[0, 10)', min: 0, max: 10, pairs: 3, correct: 3, accuracy: 1 },
      { label: '[10, 20)', min: 10, max: 20, pairs: 2, correct: 1, accuracy: 0.5 },
      { label: '[20, ∞)', min: 20, max: Infinity, pairs: 4, correct: 2, accuracy: 0.5 },
    ]);
    // Every known pair is in exactly one bin.
    expect(p.bins.reduce((s, b) => s + b.pairs, 0)).toBe(p.known);
  });

  it('other edges and fraction; an empty bin has no accuracy', () => {
    const p = poseBinnedAccuracy(diff, correct, { edges: [0, 50, 60], topFraction: 0.5 });
    // ceil(4.5) = 5 largest: 40, 30, 25, 20, 15 → pairs 4, 5, 6, 8, 9: T, F, T, F, T.
    expect(p.topIndices).toEqual([4, 5, 6, 8, 9]);
    expect(p.top).toMatchObject({ label: 'top 50%', min: 15, pairs: 5, correct: 3, accuracy: 0.6 });
    expect(p.bins.map((b) => [b.pairs, b.accuracy])).toEqual([
      [9, 6 / 9], // the 9 known pairs, 6 right
      [0, null],
      [0, null],
    ]);
  });

  it('ties at the cut are all in, whatever their order', () => {
    // 5 pairs: k = ceil(1.25) = 2, the 2nd largest is 2, so all three 2s join the 3.
    expect(largestPoseDifference([1, 2, 2, 2, 3])).toEqual({ threshold: 2, indices: [1, 2, 3, 4] });
    expect(largestPoseDifference([3, 2, 2, 2, 1])).toEqual({ threshold: 2, indices: [0, 1, 2, 3] });
  });

  it('no known yaw: empty groups, no threshold', () => {
    const p = poseBinnedAccuracy([null, null], [true, false]);
    expect(p).toMatchObject({ known: 0, unknown: 2, topIndices: [] });
    expect(p.top).toMatchObject({ pairs: 0, correct: 0, accuracy: null });
    expect(largestPoseDifference([null])).toEqual({ threshold: null, indices: [] });
  });

  it('refuses mismatched lengths, bad edges, negative differences and a bad fraction', () => {
    expect(() => poseBinnedAccuracy([1], [true, false])).toThrow(/1 yaw differences for 2 pairs/);
    expect(() => poseBinnedAccuracy([1], [true], { edges: [5, 10] })).toThrow(/edges must increase strictly from 0/);
    expect(() => poseBinnedAccuracy([1], [true], { edges: [0, 10, 10] })).toThrow(/edges/);
    expect(() => poseBinnedAccuracy([-1], [true])).toThrow(/finite and ≥ 0/);
    expect(() => largestPoseDifference([1], 0)).toThrow(/fraction/);
  });
});

describe('yawDifferences', () => {
  it('|a − b| rounded to 0.01 degrees; null when either side has no yaw', () => {
    expect(yawDifferences([10, null, -5.123, 4], [2.5, 3, 5.5, null])).toEqual([7.5, null, 10.62, null]);
    expect(() => yawDifferences([1], [])).toThrow(/1 a sides for 0 b sides/);
  });
});
