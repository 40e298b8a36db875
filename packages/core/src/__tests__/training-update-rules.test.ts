import { adamStepSize, adamUpdate, clipScale, emaDecayAt, emaUpdate, globalNorm, sgdMomentumUpdate } from '../index';

// Known values, worked by hand for w = 1 with gradients 0.5 then −0.25 (lr 0.1).
describe('Adam (one JS pass over flat arrays)', () => {
  const hyper = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
  const run = (grads: number[], lr = 0.1, gradScale = 1): { w: number; m: number; v: number } => {
    const w = Float32Array.of(1);
    const m = new Float32Array(1);
    const v = new Float32Array(1);
    grads.forEach((g, i) =>
      adamUpdate(w, m, v, Float32Array.of(g), { ...hyper, stepSize: adamStepSize(lr, i + 1, hyper.beta1, hyper.beta2), gradScale }),
    );
    return { w: w[0], m: m[0], v: v[0] };
  };

  it('folds both bias corrections into the step size: lr·√(1−β2^t)/(1−β1^t)', () => {
    expect(adamStepSize(0.1, 1, 0.9, 0.999)).toBeCloseTo(Math.sqrt(0.001), 12); // 0.1·√0.001/0.1
    expect(adamStepSize(0.1, 2, 0.9, 0.999)).toBeCloseTo((0.1 * Math.sqrt(0.001999)) / 0.19, 12);
  });

  it('step 1 moves by lr·sign(g): m = 0.05, v = 0.00025, w = 0.9', () => {
    const s = run([0.5]);
    expect(s.m).toBeCloseTo(0.05, 7);
    expect(s.v).toBeCloseTo(0.00025, 9);
    expect(s.w).toBeCloseTo(0.9, 6);
  });

  it('step 2: m = 0.02, v = 0.00031225, w = 0.9 − 0.1·(0.02/0.19)/√(0.00031225/0.001999) = 0.8733663', () => {
    const s = run([0.5, -0.25]);
    expect(s.m).toBeCloseTo(0.02, 7);
    expect(s.v).toBeCloseTo(0.00031225, 9);
    expect(s.w).toBeCloseTo(0.8733663, 6);
  });

  it('gradScale multiplies the gradient before the moments (clipping)', () => {
    expect(run([1, -0.5], 0.1, 0.5)).toEqual(run([0.5, -0.25]));
  });
});

describe('SGD with momentum and weight decay (torch.optim.SGD)', () => {
  const run = (nesterov: boolean): number[] => {
    const w = Float32Array.of(1);
    const buf = new Float32Array(1);
    return [0.5, -0.25].map((g) => {
      sgdMomentumUpdate(w, buf, Float32Array.of(g), { learningRate: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov, gradScale: 1 });
      return w[0];
    });
  };

  it('g += wd·w; v = μ·v + g; w −= lr·v: 0.949, then 0.927151', () => {
    // step 1: g = 0.5 + 0.01 = 0.51, v = 0.51, w = 1 − 0.051
    // step 2: g = −0.25 + 0.00949 = −0.24051, v = 0.459 − 0.24051 = 0.21849, w = 0.949 − 0.021849
    const [w1, w2] = run(false);
    expect(w1).toBeCloseTo(0.949, 6);
    expect(w2).toBeCloseTo(0.927151, 6);
  });

  it('nesterov steps along g + μ·v: 0.9031, then 0.90757411', () => {
    // step 1: v = 0.51, w = 1 − 0.1·(0.51 + 0.459)
    // step 2: g = −0.240969, v = 0.218031, w = 0.9031 − 0.1·(−0.240969 + 0.1962279)
    const [w1, w2] = run(true);
    expect(w1).toBeCloseTo(0.9031, 6);
    expect(w2).toBeCloseTo(0.90757411, 6);
  });
});

describe('EMA and clipping', () => {
  it('the EMA decay warms up as (1 + step)/(10 + step), capped at the configured decay', () => {
    expect(emaDecayAt(0.999, 0)).toBeCloseTo(0.1, 12);
    expect(emaDecayAt(0.999, 10)).toBeCloseTo(11 / 20, 12);
    expect(emaDecayAt(0.999, 100_000)).toBe(0.999);
    expect(emaDecayAt(0.5, 1)).toBe(2 / 11); // still warming up: 2/11 < 0.5
    expect(emaDecayAt(0.1, 5)).toBe(0.1);
  });

  it('emaUpdate: decay·ema + (1 − decay)·w, in place', () => {
    const ema = Float32Array.of(1, -2);
    emaUpdate(ema, Float32Array.of(3, 2), 0.75);
    expect(Array.from(ema)).toEqual([1.5, -1]);
    expect(() => emaUpdate(ema, new Float32Array(3), 0.5)).toThrow(RangeError);
  });

  it('global norm and the clip factor (1e-6 as torch clip_grad_norm_; 0 = off)', () => {
    expect(globalNorm(Float32Array.of(3, 4))).toBe(5);
    expect(clipScale(5, 1)).toBeCloseTo(1 / 5.000001, 12);
    expect(clipScale(0.5, 1)).toBe(1);
    expect(clipScale(1e9, 0)).toBe(1);
  });
});
