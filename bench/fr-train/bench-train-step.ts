/**
 * Face-recognition training-step benchmark (issue 11 §4): one SGD step of IResNet-18 with an
 * ArcFace head (packages/fr-train) — forward, backward, momentum-SGD update — on a batch of
 * random images at 32×32 and 112×112, against the same network and step in PyTorch (Debian's
 * python3-torch, /usr/bin/python3: bench/fr-train/iresnet_reference.py) with 1 and with 2 threads,
 * measured in one run. The parameter counts and the forward MACs of both sides are checked equal.
 *
 *   npm run bench:fr-train -- [--resolutions 32,112] [--batch 64] [--width 1] [--classes 1000]
 *                             [--steps 4,2] [--warmup 2,1] [--micro-batch 64,8] [--skip-reference]
 *
 * `--steps`, `--warmup` and `--micro-batch` take one value for every resolution or one per
 * resolution. A micro-batch below the batch splits the id3 step into batch / micro-batch
 * forward + backward passes whose gradients are averaged into one update (each pass with its own
 * BatchNorm statistics, as data-parallel replicas): at 112×112 a pass over more than ~8 images
 * does not fit the wasm backend's 32-bit heap (8 images grow it to ~2.6 GiB; 16 abort with
 * "memory access out of bounds"), so the default there is 8. PyTorch always runs the whole
 * batch in one pass.
 *
 * The step is the one packages/fr-train's learning test takes: `tf.variableGrads` of
 * `head.loss(net.forward(x, {training: true}), labels)` over the backbone's and the head's
 * variables, then the kit's SGD (momentum 0.9, weight decay 5e-4, lr 0.1; on wasm a JS loop
 * over flat arrays). The batch is drawn once (uniform in [-1, 1], random labels), so no data
 * loading is timed. Each id3 measurement runs in a child process of its own (a wasm heap
 * never shrinks, so peak RSS is per resolution), before the PyTorch runs (a wasm run straight
 * after a PyTorch process measured slower in bench/diffusion).
 *
 * id3 runs on one thread: tfjs-wasm in Node is single-threaded, and fr-train has no
 * data-parallel gradient workers yet (the diffusion trainer has them: 1.5–1.8× with the second
 * core) — so the 1-thread PyTorch column is the like-for-like one and the 2-thread column what
 * the machine can do.
 *
 * Writes bench/results/fr-train.json and prints a Markdown table for BENCHMARKS.md.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Rng, createOptimizer, initBackend, tf } from '@id3/core';
import { IResNet, MarginHead, type IResNetResolution } from '@id3/fr-train';

const DEPTH = 18;
const EMBEDDING = 512;
const LEARNING_RATE = 0.1;

interface Options {
  resolution: number;
  batch: number;
  width: number;
  classes: number;
  steps: number;
  warmup: number;
  /** Images per forward/backward pass; the gradients of batch / microBatch passes are averaged into one update. */
  microBatch: number;
}

interface Id3Result {
  backend: string;
  backendDetail: string;
  parameters: number;
  backboneParameters: number;
  forwardMacsPerImage: number;
  secondsPerStep: number;
  stepSeconds: number[];
  losses: number[];
  tensors: { afterBuild: number; afterWarmup: number; afterTimed: number };
  peakRssMiB: number;
  /** The wasm linear memory at the end: it grows to the peak and never shrinks (at most 4 GiB, wasm32). */
  wasmHeapMiB: number;
  buildSeconds: number;
}

interface TorchResult {
  framework: string;
  threads: number;
  parameters: number;
  trainableParameters: number;
  backboneParameters: number;
  forwardMacsPerImage: number;
  secondsPerStep: number;
  stepSeconds: number[];
  losses: number[];
  peakRssMiB: number;
  mkldnn: boolean;
  configLines: string[];
  blasLibraries: string[];
  env: Record<string, string | null>;
}

/** Multiply-accumulates of the convolutions, the fc layer and the head's cosine matrix for one image, from the plan. */
function forwardMacs(net: IResNet, classes: number): number {
  const { plan, config } = net;
  const r = config.resolution;
  let macs = r * r * 3 * 9 * plan.stemChannels;
  let cin = plan.stemChannels;
  let side: number = r;
  for (const stage of plan.stages) {
    for (let b = 0; b < stage.blocks; b++) {
      const stride = b === 0 ? stage.stride : 1;
      const out = side / stride;
      macs += side * side * cin * 9 * stage.channels; // conv1, stride 1
      macs += out * out * stage.channels * 9 * stage.channels; // conv2 (stride)
      if (stride !== 1 || cin !== stage.channels) macs += out * out * cin * stage.channels; // downsample 1×1
      cin = stage.channels;
      side = out;
    }
  }
  return macs + plan.fcInputs * config.embeddingDim + config.embeddingDim * classes;
}

/** The size of the wasm backend's linear memory (NaN on another backend). */
function wasmHeapMiB(): number {
  return ((tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.byteLength ?? NaN) / 2 ** 20;
}

/** The id3 side, in this (child) process: build, warm up, time `steps` full SGD steps. */
async function measureId3(o: Options): Promise<Id3Result> {
  const backend = await initBackend(undefined, () => undefined);
  const built = performance.now();
  const net = IResNet.create({ depth: DEPTH, resolution: o.resolution as IResNetResolution, width: o.width, embeddingDim: EMBEDDING }, 1);
  const head = MarginHead.create({ kind: 'arcface' }, { classes: o.classes, embeddingDim: EMBEDDING }, 1);
  const variables = [...net.variables, ...head.variables];
  const optimizer = createOptimizer({ kind: 'sgd', momentum: 0.9, weightDecay: 5e-4 }, variables);
  const rng = new Rng(0);
  const side = o.resolution;
  const pixels = new Float32Array(o.batch * side * side * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = rng.range(-1, 1);
  const labels = Array.from({ length: o.batch }, () => rng.int(o.classes));
  const x = tf.tensor4d(pixels, [o.batch, side, side, 3]);
  const buildSeconds = (performance.now() - built) / 1000;

  const passes = o.batch / o.microBatch;
  const chunks = Array.from({ length: passes }, (_, k) => ({
    x: passes === 1 ? x : tf.slice(x, k * o.microBatch, o.microBatch),
    labels: labels.slice(k * o.microBatch, (k + 1) * o.microBatch),
  }));
  let step = 0;
  const trainStep = (): number => {
    step++;
    let loss = 0;
    let sums: tf.Tensor[] | undefined;
    for (const chunk of chunks) {
      const { value, grads } = tf.variableGrads(() => head.loss(net.forward(chunk.x, { training: true }), chunk.labels), variables);
      loss += value.dataSync()[0] / passes;
      const g = variables.map((v) => grads[v.name]);
      if (sums) {
        const prev = sums;
        sums = g.map((t, i) => tf.add(prev[i], t));
        tf.dispose([...prev, ...g]);
      } else sums = g;
      tf.dispose(value);
    }
    const grads = passes === 1 || !sums ? sums : sums.map((t) => tf.tidy(() => tf.mul(t, 1 / passes)));
    if (passes > 1 && sums) tf.dispose(sums);
    optimizer.apply(grads ?? [], { step, learningRate: LEARNING_RATE });
    tf.dispose(grads);
    return loss;
  };

  const afterBuild = tf.memory().numTensors;
  const losses: number[] = [];
  for (let i = 0; i < o.warmup; i++) losses.push(trainStep());
  const afterWarmup = tf.memory().numTensors;
  const stepSeconds: number[] = [];
  for (let i = 0; i < o.steps; i++) {
    const t0 = performance.now();
    losses.push(trainStep());
    stepSeconds.push((performance.now() - t0) / 1000);
    process.stderr.write(
      `  id3 step ${i + 1}/${o.steps}: ${stepSeconds[i].toFixed(2)} s, loss ${losses.at(-1)?.toFixed(3)}, wasm heap ${wasmHeapMiB().toFixed(0)} MiB\n`,
    );
  }
  const afterTimed = tf.memory().numTensors;
  const result: Id3Result = {
    backend: backend.name,
    backendDetail: backend.detail,
    parameters: net.parameterCount() + head.parameterCount(),
    backboneParameters: net.parameterCount(),
    forwardMacsPerImage: forwardMacs(net, o.classes),
    secondsPerStep: stepSeconds.reduce((a, b) => a + b, 0) / stepSeconds.length,
    stepSeconds,
    losses,
    tensors: { afterBuild, afterWarmup, afterTimed },
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    wasmHeapMiB: wasmHeapMiB(),
    buildSeconds,
  };
  tf.dispose([x, ...(passes > 1 ? chunks.map((c) => c.x) : [])]);
  optimizer.dispose();
  net.dispose();
  head.dispose();
  return result;
}

/**
 * Runs a child process, returns its stdout. Its stderr is passed through line by line, except
 * lines over 500 characters: a wasm abort prints the whole minified emscripten module.
 */
function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    createInterface({ input: child.stderr }).on('line', (line) =>
      process.stderr.write(`${line.length > 500 ? `${line.slice(0, 120)}… (${line.length} characters)` : line}\n`),
    );
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0 ? resolve(stdout) : reject(new Error(`${command} ${args.join(' ')}: exit ${code ?? signal}`)),
    );
  });
}

function perResolution(value: string, count: number, what: string): number[] {
  const values = value.split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 0)) throw new Error(`--${what}: expected integers, got '${value}'`);
  if (values.length === 1) return Array.from({ length: count }, () => values[0]);
  if (values.length !== count) throw new Error(`--${what}: one value or one per resolution (${count}), got '${value}'`);
  return values;
}

const fmt = (v: number, digits = 2) => v.toFixed(digits);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      resolutions: { type: 'string', default: '32,112' },
      batch: { type: 'string', default: '64' },
      width: { type: 'string', default: '1' },
      classes: { type: 'string', default: '1000' },
      steps: { type: 'string', default: '4,2' },
      warmup: { type: 'string', default: '2,1' },
      'micro-batch': { type: 'string' },
      'skip-reference': { type: 'boolean', default: false },
      // internal: measure the id3 side of one configuration in this process, print JSON
      child: { type: 'string' },
    },
  });
  if (values.child) {
    const result = await measureId3(JSON.parse(values.child) as Options);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const resolutions = values.resolutions.split(',').map(Number);
  const steps = perResolution(values.steps, resolutions.length, 'steps');
  const warmups = perResolution(values.warmup, resolutions.length, 'warmup');
  const batch = Number(values.batch);
  const microBatches = values['micro-batch']
    ? perResolution(values['micro-batch'], resolutions.length, 'micro-batch')
    : resolutions.map((r) => (r >= 112 ? Math.min(batch, 8) : batch));
  if (microBatches.some((m) => m < 2 || batch % m !== 0))
    throw new Error(`--micro-batch: each must divide the batch ${batch} (and be ≥ 2)`);
  const width = Number(values.width);
  const classes = Number(values.classes);
  const started = Date.now();
  const load: Record<string, number[]> = { start: loadavg() };
  const rows: Record<string, unknown>[] = [];
  for (const [i, resolution] of resolutions.entries()) {
    const o: Options = { resolution, batch, width, classes, steps: steps[i], warmup: warmups[i], microBatch: microBatches[i] };
    const split = o.microBatch < batch ? ` as ${batch / o.microBatch} × ${o.microBatch}` : '';
    process.stderr.write(
      `id3 ${resolution}×${resolution}, batch ${batch}${split}, width ${width} (${o.warmup} warm-up + ${o.steps} timed steps)…\n`,
    );
    const id3 = JSON.parse(
      await run(process.execPath, ['--import', 'tsx', __filename, '--child', JSON.stringify(o)], process.env),
    ) as Id3Result;
    load[`after id3 ${resolution}`] = loadavg();
    const { afterWarmup, afterTimed } = id3.tensors;
    if (afterTimed !== afterWarmup) throw new Error(`tensor leak at ${resolution}: ${afterWarmup} → ${afterTimed}`);
    const torch: Record<number, TorchResult> = {};
    if (!values['skip-reference']) {
      for (const threads of [1, 2]) {
        process.stderr.write(`PyTorch reference ${resolution}×${resolution}, ${threads} thread(s)…\n`);
        // PyTorch runs the whole batch in one pass (its memory allows it); --micro-batch is for the id3 side only.
        const args = [resolution, batch, width, classes, o.steps, o.warmup, threads, EMBEDDING].map(String);
        // OpenBLAS's own pool follows OPENBLAS_NUM_THREADS, not torch.set_num_threads.
        const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
        torch[threads] = JSON.parse(await run('/usr/bin/python3', [join(__dirname, 'iresnet_reference.py'), ...args], env)) as TorchResult;
        load[`after PyTorch ${resolution} ${threads}t`] = loadavg();
        const t = torch[threads];
        // PyTorch counts the frozen features.weight (γ = 1, requires_grad=False); id3 does not store it.
        if (t.trainableParameters !== id3.parameters || t.parameters - id3.parameters !== EMBEDDING)
          throw new Error(`parameter counts differ: id3 ${id3.parameters}, PyTorch ${t.parameters} (${t.trainableParameters} trainable)`);
        if (t.forwardMacsPerImage !== id3.forwardMacsPerImage)
          throw new Error(`forward MACs differ: id3 ${id3.forwardMacsPerImage}, PyTorch ${t.forwardMacsPerImage}`);
      }
    }
    // forward + backward (input and weight gradients) ≈ 3 × the forward MACs, 2 FLOPs each
    const stepFlops = 6 * id3.forwardMacsPerImage * batch;
    const [t1, t2] = [torch[1], torch[2]];
    rows.push({
      resolution,
      batch,
      width,
      classes,
      microBatch: o.microBatch,
      warmup: o.warmup,
      steps: o.steps,
      parameters: id3.parameters,
      torchParameters: t1?.parameters,
      forwardGMacsPerImage: id3.forwardMacsPerImage / 1e9,
      id3: { ...id3, imagesPerSecond: batch / id3.secondsPerStep, gflops: stepFlops / id3.secondsPerStep / 1e9 },
      torch1: t1 && { ...t1, imagesPerSecond: batch / t1.secondsPerStep, gflops: stepFlops / t1.secondsPerStep / 1e9 },
      torch2: t2 && { ...t2, imagesPerSecond: batch / t2.secondsPerStep, gflops: stepFlops / t2.secondsPerStep / 1e9 },
      ratioTo1Thread: t1 && id3.secondsPerStep / t1.secondsPerStep,
      ratioTo2Threads: t2 && id3.secondsPerStep / t2.secondsPerStep,
    });
  }
  const result = {
    command: `npm run bench:fr-train -- ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date(started).toISOString(),
    wallSeconds: (Date.now() - started) / 1000,
    machine: `${process.platform} ${process.arch}, 2 cores (shared), Node ${process.version}`,
    loadAverage: load,
    depth: DEPTH,
    embeddingDim: EMBEDDING,
    optimizer: { kind: 'sgd', momentum: 0.9, weightDecay: 5e-4, learningRate: LEARNING_RATE },
    rows,
  };
  mkdirSync(join(__dirname, '..', 'results'), { recursive: true });
  writeFileSync(join(__dirname, '..', 'results', 'fr-train.json'), `${JSON.stringify(result, null, 2)}\n`);

  type Side = { secondsPerStep: number; imagesPerSecond: number } | undefined;
  const cell = (s: Side) => (s ? `${fmt(s.secondsPerStep)} s · ${fmt(s.imagesPerSecond, 1)} img/s` : '—');
  console.log(
    `| resolution | batch | params | id3 (wasm, 1 thread) | PyTorch 1 thread | PyTorch 2 threads | id3 / PyTorch 1t | id3 / PyTorch 2t | id3 numTensors (warm → after) |`,
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const id3 = r.id3 as Id3Result & { imagesPerSecond: number };
    const ratio = (v: unknown) => (typeof v === 'number' ? `${fmt(v)}×` : '—');
    console.log(
      `| ${r.resolution as number}×${r.resolution as number} | ${batch} | ${(id3.parameters / 1e6).toFixed(2)} M | ${cell(id3)} | ${cell(r.torch1 as Side)} | ${cell(r.torch2 as Side)} | ${ratio(r.ratioTo1Thread)} | ${ratio(r.ratioTo2Threads)} | ${id3.tensors.afterWarmup} → ${id3.tensors.afterTimed} |`,
    );
  }
  console.log(
    `\nload average: ${Object.entries(load)
      .map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join('/')}`)
      .join('; ')}`,
  );
}

void main();
