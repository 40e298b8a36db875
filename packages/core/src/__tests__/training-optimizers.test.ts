import {
  JsLoopOptimizer,
  Rng,
  emaUpdate,
  emaUpdateVariables,
  globalNorm,
  globalNormTensor,
  TfjsOpsOptimizer,
  createOptimizer,
  initBackend,
  optimizerImplementationFor,
  tf,
  type OptimizerConfigInput,
  type OptimizerImplementation,
} from '../index';

beforeAll(async () => {
  await initBackend('cpu', () => undefined);
});

const SHAPES = [[3, 4], [5], [2, 2, 2]];

/** Model variables with seeded values (each test gets its own, same values for the same seed). */
function variables(seed: number): tf.Variable[] {
  const rng = new Rng(seed);
  return SHAPES.map((shape) => {
    const initial = tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))), shape);
    const v = tf.variable(initial);
    initial.dispose();
    return v;
  });
}

/** Seeded per-variable gradient tensors for `step`. */
function gradients(step: number): tf.Tensor[] {
  const rng = new Rng(100 + step);
  return SHAPES.map((shape) => tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))), shape));
}

const flat = (ts: readonly tf.Tensor[]): Float32Array => Float32Array.from(ts.flatMap((t) => Array.from(t.dataSync())));

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let k = 0; k < a.length; k++) d = Math.max(d, Math.abs(a[k] - b[k]));
  return d;
}

/** Train `steps` updates with varying learning rate and clipping; returns the weights. */
async function train(config: OptimizerConfigInput, implementation: OptimizerImplementation, gradForm: 'flat' | 'tensors', steps = 6) {
  const vars = variables(1);
  const opt = createOptimizer(config, vars, { implementation });
  for (let step = 1; step <= steps; step++) {
    const g = gradients(step);
    opt.apply(gradForm === 'flat' ? flat(g) : g, { step, learningRate: 0.05 * Math.min(1, step / 3), gradScale: step % 2 ? 1 : 0.5 });
    tf.dispose(g);
  }
  const result = { weights: await opt.readWeights(), variables: flat(vars), state: await opt.readState() };
  opt.dispose();
  tf.dispose(vars);
  return result;
}

const CONFIGS: [string, OptimizerConfigInput][] = [
  ['Adam', { kind: 'adam' }],
  ['SGD momentum + weight decay', { kind: 'sgd', weightDecay: 0.01 }],
  ['SGD nesterov', { kind: 'sgd', nesterov: true }],
];

describe.each(CONFIGS)('%s: the js-loop and tfjs-ops paths agree', (_name, config) => {
  it('same weights and state after 6 steps (either gradient form), and the variables hold the weights', async () => {
    const js = await train(config, 'js-loop', 'flat');
    const ops = await train(config, 'tfjs-ops', 'tensors');
    const crossed = await train(config, 'tfjs-ops', 'flat');
    const jsFromTensors = await train(config, 'js-loop', 'tensors');
    expect(js.variables).toEqual(js.weights);
    expect(ops.variables).toEqual(ops.weights);
    expect(maxAbsDiff(js.weights, ops.weights)).toBeLessThan(1e-5);
    expect(crossed.weights).toEqual(ops.weights);
    expect(jsFromTensors.weights).toEqual(js.weights);
    for (const slot of Object.keys(js.state.slots)) expect(maxAbsDiff(js.state.slots[slot], ops.state.slots[slot])).toBeLessThan(1e-5);
    // and the weights moved
    const initial = variables(1);
    expect(maxAbsDiff(js.weights, flat(initial))).toBeGreaterThan(1e-3);
    tf.dispose(initial);
  });
});

describe('optimiser state and bookkeeping', () => {
  it.each(['js-loop', 'tfjs-ops'] as const)(
    '%s: 3 steps + state/weights restored into a fresh optimiser + 3 steps = 6 steps, exactly',
    async (implementation) => {
      const config: OptimizerConfigInput = { kind: 'adam', beta1: 0.8 };
      const straight = await train(config, implementation, 'tensors', 6);
      const first = await train(config, implementation, 'tensors', 3);
      const vars = variables(7); // other initial values: writeWeights must replace them
      const opt = createOptimizer(config, vars, { implementation });
      opt.writeWeights(first.weights);
      opt.writeState(first.state);
      for (let step = 4; step <= 6; step++) {
        const g = gradients(step);
        opt.apply(g, { step, learningRate: 0.05 * Math.min(1, step / 3), gradScale: step % 2 ? 1 : 0.5 });
        tf.dispose(g);
      }
      expect(await opt.readWeights()).toEqual(straight.weights);
      expect((await opt.readState()).slots).toEqual(straight.state.slots);
      opt.dispose();
      tf.dispose(vars);
    },
  );

  it('refuses state of another kind or size, and gradients of the wrong length', () => {
    const vars = variables(1);
    for (const implementation of ['js-loop', 'tfjs-ops'] as const) {
      const opt = createOptimizer({ kind: 'sgd' }, vars, { implementation });
      expect(() => opt.writeState({ kind: 'adam', slots: { m: new Float32Array(25), v: new Float32Array(25) } })).toThrow(/for 'adam'/);
      expect(() => opt.writeState({ kind: 'sgd', slots: { momentum: new Float32Array(3) } })).toThrow(/3 values for 25/);
      expect(() => opt.apply(new Float32Array(24), { step: 1, learningRate: 0.1 })).toThrow(/24 values for 25/);
      opt.dispose();
    }
    tf.dispose(vars);
  });

  it('picks the path by backend: JS loops on wasm/cpu, tf ops on tensorflow/webgpu', () => {
    expect(['wasm', 'cpu', 'tensorflow', 'webgpu'].map(optimizerImplementationFor)).toEqual(['js-loop', 'js-loop', 'tfjs-ops', 'tfjs-ops']);
    const vars = variables(1);
    const auto = createOptimizer({ kind: 'adam' }, vars); // this file runs on cpu
    expect(auto).toBeInstanceOf(JsLoopOptimizer);
    expect(auto.hostWeights).toEqual(flat(vars));
    const ops = createOptimizer({ kind: 'adam' }, vars, { implementation: 'tfjs-ops' });
    expect(ops).toBeInstanceOf(TfjsOpsOptimizer);
    expect(ops.hostWeights).toBeUndefined();
    ops.dispose();
    tf.dispose(vars);
  });

  it.each(['js-loop', 'tfjs-ops'] as const)(
    '%s keeps tf.memory().numTensors flat over updates, and dispose frees its state',
    (implementation) => {
      const start = tf.memory().numTensors;
      const vars = variables(1);
      const opt = createOptimizer({ kind: 'adam' }, vars, { implementation });
      const g = gradients(1);
      opt.apply(g, { step: 1, learningRate: 0.1 });
      const before = tf.memory().numTensors;
      for (let step = 2; step <= 5; step++) {
        opt.apply(g, { step, learningRate: 0.1, gradScale: 0.5 });
        opt.apply(flat(g), { step, learningRate: 0.1 });
      }
      expect(tf.memory().numTensors).toBe(before);
      opt.dispose();
      tf.dispose([...g, ...vars]);
      expect(tf.memory().numTensors).toBe(start);
    },
  );
});

describe('device-side EMA and gradient norm', () => {
  it('emaUpdateVariables and globalNormTensor match their flat-array forms', async () => {
    const ema = variables(1);
    const weights = variables(2);
    const flatEma = flat(ema);
    const before = tf.memory().numTensors;
    emaUpdateVariables(ema, weights, 0.9);
    emaUpdate(flatEma, flat(weights), 0.9);
    expect(maxAbsDiff(flat(ema), flatEma)).toBeLessThan(1e-6);
    const norm = globalNormTensor(weights);
    expect((await norm.data())[0]).toBeCloseTo(globalNorm(flat(weights)), 4);
    norm.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([...ema, ...weights]);
  });
});
