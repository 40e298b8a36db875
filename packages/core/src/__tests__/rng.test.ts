import { Rng } from '../index';

describe('Rng', () => {
  it('is deterministic for a seed and differs between seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 10 }, () => a.nextUint32());
    expect(Array.from({ length: 10 }, () => b.nextUint32())).toEqual(sa);
    expect(Array.from({ length: 10 }, () => c.nextUint32())).not.toEqual(sa);
  });

  it('uniform and normal have the right moments', () => {
    const r = new Rng(1);
    const n = 200_000;
    let su = 0;
    let sn = 0;
    let sn2 = 0;
    for (let i = 0; i < n; i++) {
      const u = r.uniform();
      expect(u >= 0 && u < 1).toBe(true);
      su += u;
      const z = r.normal();
      sn += z;
      sn2 += z * z;
    }
    expect(su / n).toBeCloseTo(0.5, 2);
    expect(sn / n).toBeCloseTo(0, 2);
    expect(sn2 / n).toBeCloseTo(1, 1);
  });

  it('snapshot/restore continues the same stream exactly (including the Box–Muller spare)', () => {
    const r = new Rng(7);
    r.normal(); // leaves a spare
    const snap = r.snapshot();
    const expected = [r.normal(), r.normal(), r.uniform()];
    const restored = Rng.restore(JSON.parse(JSON.stringify(snap)));
    expect([restored.normal(), restored.normal(), restored.uniform()]).toEqual(expected);
  });

  it('fork gives independent, reproducible streams', () => {
    const base = new Rng(5);
    const x = base.fork('identities').nextUint32();
    expect(new Rng(5).fork('identities').nextUint32()).toBe(x);
    expect(new Rng(5).fork('anchors').nextUint32()).not.toBe(x);
  });

  it('rejects a non-finite seed', () => {
    expect(() => new Rng(Number.NaN)).toThrow(/finite/);
  });
});
