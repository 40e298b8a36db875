/**
 * Sampling benchmark (for the sampler stage): what one synthetic image costs on this machine.
 *
 *  1. The UNet forward a sampler calls per DDIM step — the train-diffusion default generator
 *     (base 32, mults 1-2-2, one residual block, attention at 8×8, 1.35 M parameters) at 32×32,
 *     batch 64, inside tf.tidy — on the id3 backend, in 1 process and in 2 processes at once,
 *     against the same UNet forward in PyTorch (Debian's python3-torch, /usr/bin/python3,
 *     torch.no_grad(), 1 and 2 threads: bench/diffusion/unet_reference.py --forward).
 *  2. `GaussianDiffusion.ddimLoop` for --ddim-steps steps on the same batch, timed per step, to
 *     check that the per-step cost × S predicts a whole loop.
 *  3. The identity guidance per guided step: the default teacher (face-api's dlib ResNet) forward
 *     + backward w.r.t. the 32×32 x̂0 through TeacherInput (cosine to a unit y, tf.grad), per
 *     batch in --guidance-batches; the teacher forward alone (what an acceptance check costs);
 *     the "full" gradient w.r.t. x_t through ε_θ; and a guided DDIM loop against an unguided one
 *     at the same batch, which is what the hook costs inside the real loop.
 *  4. A cost model: s per accepted image = (S·u + G·g + c) / a, with u the DDIM step per image,
 *     g the guidance per image and guided step, c the acceptance check's teacher forward per
 *     image, a the acceptance rate (--acceptance, assumed), for DDIM 25/50 and four guidance
 *     schedules, on 1 core and on both.
 *
 *   npm run bench:sampler -- [--steps 5] [--batch 64] [--ddim-steps 10] [--guided-steps 5]
 *                            [--guidance-batches 16,64] [--acceptance 0.8] [--skip-full] [--skip-reference]
 *
 * "2 threads": tfjs-wasm runs one thread per backend in Node, so the second core is a second
 * process with its own wasm backend, UNet and batch of 64, timed over the same window (both
 * start their timed forwards on one signal). That is how sampling scales — each worker samples
 * its own identities — where the trainer splits one batch between worker threads
 * (bench/diffusion): forward-only sampling needs no gradient exchange. PyTorch "2 threads" is one
 * process with torch.set_num_threads(2) on one batch of 64.
 *
 * Every id3 measurement runs in a child process of its own (a wasm heap never shrinks, and a
 * batch that does not fit the 32-bit heap aborts only that child), before the PyTorch runs (a
 * wasm run straight after a PyTorch process measured slower in bench/diffusion).
 *
 * Writes bench/results/sampler.json and prints Markdown tables for BENCHMARKS.md.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Rng, initBackend, tf } from '@id3/core';
import { loadEmbedder, type FaceEmbedder } from '@id3/faces';
import {
  GaussianDiffusion,
  TeacherInput,
  UNet,
  identityWeight,
  makeSchedule,
  runLoop,
  unetConfigSchema,
  type EpsModel,
  type GuidanceHook,
} from '@id3/diffusion';
import { GENERATOR_ARCH } from '../diffusion/generator-arch';

const ARCH = GENERATOR_ARCH;
const RESOLUTION = 32;
const TEACHER = 'faceapi-dlib-128';
/** A mid-schedule timestep for the single-step measurements (the cost does not depend on it). */
const T_MID = 500;
/** Dataset target quoted in BENCHMARKS.md: 200 identities × 20 images. */
const TARGET_IMAGES = 200 * 20;

type Task =
  | { kind: 'forward'; batch: number; steps: number; warmup: number; sync: boolean }
  | { kind: 'ddim'; batch: number; ddimSteps: number; guided: boolean }
  | { kind: 'guidance'; batch: number; steps: number; full: boolean };

interface Common {
  backend: string;
  backendDetail: string;
  parameters: number;
  peakRssMiB: number;
  wasmHeapMiB: number;
}
interface Measured {
  /** tf.memory().numTensors around the timed part (equal, or the child fails). */
  tensors: { before: number; after: number };
}
interface ForwardResult extends Common, Measured {
  msPerBatch: number;
  msPerImage: number;
  stepMs: number[];
}
interface DdimResult extends Common, Measured {
  loopSeconds: number;
  msPerStep: number;
  stepMs: number[];
  imagesPerSecond: number;
  /** The guided loop only: the same loop without guidance, same batch and noise. */
  unguided?: { loopSeconds: number; msPerStep: number };
}
interface GuidanceResult extends Common, Measured {
  /** Teacher forward + backward w.r.t. x̂0. */
  gradMsPerBatch: number;
  gradMsPerImage: number;
  /** Teacher forward alone (the acceptance check). */
  forwardMsPerBatch: number;
  forwardMsPerImage: number;
  /** Gradient w.r.t. x_t through ε_θ and the teacher (UNet forward + backward + teacher). */
  fullMsPerBatch?: number;
  fullMsPerImage?: number;
}
interface TorchResult {
  framework: string;
  threads: number;
  batch: number;
  parameters: number;
  secondsPerStep: number;
  steps: number;
}

/** The sampler's generator with its zero-initialised output layers perturbed, so ε̂ ≠ 0 and the DDIM path is a real one. */
function buildNet(): UNet {
  const net = UNet.create(unetConfigSchema.parse({ ...ARCH, resolution: RESOLUTION }), 0);
  const rng = new Rng(1);
  const w = net.flatWeightsSync();
  for (let i = 0; i < w.length; i++) w[i] += 0.01 * rng.normal();
  net.setFlatWeights(w);
  return net;
}

function unitRows(rng: Rng, n: number, d: number): tf.Tensor2D {
  const v = rng.fillNormal(new Float32Array(n * d));
  for (let i = 0; i < n; i++) {
    const row = v.subarray(i * d, (i + 1) * d);
    const norm = Math.hypot(...row);
    for (let j = 0; j < d; j++) row[j] /= norm;
  }
  return tf.tensor2d(v, [n, d]);
}

function conditions(batch: number): { y: tf.Tensor2D; s: tf.Tensor2D } {
  const rng = new Rng(2);
  return {
    y: unitRows(rng, batch, ARCH.identityDim),
    s: tf.tensor2d(
      rng.fillNormal(new Float32Array(batch * 4)).map((v) => 0.3 * v),
      [batch, 4],
    ),
  };
}

function wasmHeapMiB(): number {
  return ((tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.byteLength ?? NaN) / 2 ** 20;
}

function timeMs(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

const mean = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0) / v.length;

/** Waits for one line on stdin: the parent's signal that every concurrent process is ready. */
function waitForGo(): Promise<void> {
  process.stdout.write('ready\n');
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.once('line', () => {
      rl.close();
      process.stdin.destroy();
      resolve();
    });
  });
}

function leakCheck(what: string, before: number): { before: number; after: number } {
  const after = tf.memory().numTensors;
  if (after !== before) throw new Error(`tensor leak in ${what}: ${before} → ${after}`);
  return { before, after };
}

async function measureForward(task: Extract<Task, { kind: 'forward' }>, net: UNet): Promise<Omit<ForwardResult, keyof Common>> {
  const before = tf.memory().numTensors;
  const { y, s } = conditions(task.batch);
  const xt = tf.tensor4d(new Rng(3).fillNormal(new Float32Array(task.batch * RESOLUTION * RESOLUTION * 3)), [
    task.batch,
    RESOLUTION,
    RESOLUTION,
    3,
  ]);
  const t = new Array<number>(task.batch).fill(T_MID);
  const forward = (): void => {
    const eps = tf.tidy(() => net.forward({ xt, t, y, s }));
    eps.dataSync(); // the result on the host, as a sampler needs it (a no-op wait on wasm)
    eps.dispose();
  };
  for (let i = 0; i < task.warmup; i++) forward(); // kernels, weight packing
  if (task.sync) await waitForGo();
  const stepMs: number[] = [];
  for (let i = 0; i < task.steps; i++) stepMs.push(timeMs(forward));
  tf.dispose([xt, y, s]);
  const msPerBatch = mean(stepMs);
  return { tensors: leakCheck('the UNet forward', before), msPerBatch, msPerImage: msPerBatch / task.batch, stepMs };
}

/**
 * The identity guidance of the method page in its cheap form: g = ∇_{x̂0}⟨f(x̂0), y⟩ / √ᾱ_t
 * (x̂0 = x_t/√ᾱ_t − …, ε̂ held fixed), correction −w·√(1−ᾱ_t)·γ_t·g added to ε̂.
 */
function identityGuidance(diffusion: GaussianDiffusion, teacher: FaceEmbedder, input: TeacherInput, y: tf.Tensor2D): GuidanceHook {
  const grad = tf.grad((x0: tf.Tensor) => tf.sum(tf.mul(teacher.embed(input.apply(x0 as tf.Tensor4D)), y)));
  const w = 1;
  return (_xt, t, predX0) => {
    const a = diffusion.schedule.alphasCumprod[t];
    const k = (-w * Math.sqrt(1 - a) * identityWeight(t, diffusion.steps)) / Math.sqrt(a);
    const g = grad(predX0);
    const correction = tf.mul(g, k) as tf.Tensor4D;
    g.dispose();
    return correction;
  };
}

async function measureDdim(task: Extract<Task, { kind: 'ddim' }>, net: UNet): Promise<Omit<DdimResult, keyof Common>> {
  const diffusion = new GaussianDiffusion(makeSchedule({}));
  const { y, s } = conditions(task.batch);
  const model: EpsModel = (xt, t) => net.forward({ xt, t, y, s });
  const shape = [task.batch, RESOLUTION, RESOLUTION, 3] as const;
  let teacher: FaceEmbedder | undefined;
  let input: TeacherInput | undefined;
  if (task.guided) {
    teacher = await loadEmbedder(TEACHER);
    input = TeacherInput.forTeacher(teacher, RESOLUTION);
  }
  const loop = (steps: number, guidance?: GuidanceHook): { seconds: number; stepMs: number[] } => {
    const stepMs: number[] = [];
    let last = performance.now();
    const t0 = last;
    const x = runLoop(diffusion.ddimLoop(model, shape, { steps, eta: 0, rng: new Rng(4), guidance }), () => {
      const now = performance.now();
      stepMs.push(now - last);
      last = now;
    });
    x.dataSync();
    x.dispose();
    return { seconds: (performance.now() - t0) / 1000, stepMs };
  };
  const hook = teacher && input ? identityGuidance(diffusion, teacher, input, y) : undefined;
  loop(2, hook); // warm-up: kernels, weight packing, the teacher's first gradient
  const before = tf.memory().numTensors;
  const run = loop(task.ddimSteps, hook);
  const unguided = hook ? loop(task.ddimSteps) : undefined;
  const tensors = leakCheck('the DDIM loop', before);
  tf.dispose([y, s]);
  input?.dispose();
  return {
    tensors,
    loopSeconds: run.seconds,
    msPerStep: (run.seconds * 1000) / task.ddimSteps,
    stepMs: run.stepMs,
    imagesPerSecond: task.batch / run.seconds,
    unguided: unguided && { loopSeconds: unguided.seconds, msPerStep: (unguided.seconds * 1000) / task.ddimSteps },
  };
}

async function measureGuidance(task: Extract<Task, { kind: 'guidance' }>, net: UNet): Promise<Omit<GuidanceResult, keyof Common>> {
  const teacher = await loadEmbedder(TEACHER);
  const input = TeacherInput.forTeacher(teacher, RESOLUTION);
  const diffusion = new GaussianDiffusion(makeSchedule({}));
  const rng = new Rng(5);
  const { y, s } = conditions(task.batch);
  const shape = [task.batch, RESOLUTION, RESOLUTION, 3] as const;
  const x0 = tf.tensor4d(
    Float32Array.from({ length: task.batch * RESOLUTION * RESOLUTION * 3 }, () => rng.range(-1, 1)),
    [...shape],
  );
  const xt = tf.tensor4d(rng.fillNormal(new Float32Array(x0.size)), [...shape]);
  const t = new Array<number>(task.batch).fill(T_MID);
  const similarity = (x: tf.Tensor4D): tf.Scalar => tf.sum(tf.mul(teacher.embed(input.apply(x)), y));
  const gradX0 = tf.grad((x: tf.Tensor) => similarity(x as tf.Tensor4D));
  const gradXt = tf.grad((x: tf.Tensor) => {
    const x4 = x as tf.Tensor4D;
    return similarity(tf.clipByValue(diffusion.predictX0FromEps(x4, t, net.forward({ xt: x4, t, y, s })), -1, 1));
  });
  const sync = (g: tf.Tensor): void => {
    g.dataSync();
    g.dispose();
  };
  const teacherGrad = (): void => sync(gradX0(x0));
  const teacherForward = (): void => sync(tf.tidy(() => teacher.embed(input.apply(x0))));
  const full = (): void => sync(gradXt(xt));
  const timed = (fn: () => void): number => {
    fn(); // warm-up
    return mean(Array.from({ length: task.steps }, () => timeMs(fn)));
  };
  const before = tf.memory().numTensors;
  const gradMsPerBatch = timed(teacherGrad);
  const forwardMsPerBatch = timed(teacherForward);
  const fullMsPerBatch = task.full ? timed(full) : undefined;
  const tensors = leakCheck('the guidance', before);
  tf.dispose([x0, xt, y, s]);
  input.dispose();
  return {
    tensors,
    gradMsPerBatch,
    gradMsPerImage: gradMsPerBatch / task.batch,
    forwardMsPerBatch,
    forwardMsPerImage: forwardMsPerBatch / task.batch,
    fullMsPerBatch,
    fullMsPerImage: fullMsPerBatch && fullMsPerBatch / task.batch,
  };
}

/** One measurement in this (child) process; the JSON goes to stdout's last line. */
async function child(task: Task): Promise<void> {
  const backend = await initBackend(undefined, () => undefined);
  const net = buildNet();
  const body =
    task.kind === 'forward'
      ? await measureForward(task, net)
      : task.kind === 'ddim'
        ? await measureDdim(task, net)
        : await measureGuidance(task, net);
  const result = {
    backend: backend.name,
    backendDetail: backend.detail,
    parameters: net.parameterCount(),
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    wasmHeapMiB: wasmHeapMiB(),
    ...body,
  };
  net.dispose();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

interface Running<R> {
  /** Resolves when a `sync` child printed `ready`. */
  ready: Promise<void>;
  go(): void;
  done: Promise<R>;
}

/**
 * Runs a command, resolves with its last stdout line parsed as JSON. Its stderr is passed through
 * line by line, except lines over 500 characters: a wasm abort prints the whole emscripten module.
 */
function start<R>(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Running<R> {
  const proc = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const lines: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (line) => (line === 'ready' ? markReady() : lines.push(line)));
  createInterface({ input: proc.stderr }).on('line', (line) =>
    process.stderr.write(`  ${line.length > 500 ? `${line.slice(0, 120)}… (${line.length} characters)` : line}\n`),
  );
  const done = new Promise<R>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      markReady(); // never leave a waiter hanging on a child that died before it was ready
      const last = lines.filter((l) => l.trim()).at(-1);
      if (code === 0 && last) resolve(JSON.parse(last) as R);
      else reject(new Error(`${command} ${args.slice(-2).join(' ')}: exit ${code ?? signal}`));
    });
  });
  return { ready, go: () => proc.stdin.end('go\n'), done };
}

function startTask<R>(task: Task): Running<R> {
  return start<R>(process.execPath, ['--import', 'tsx', __filename, '--child', JSON.stringify(task)]);
}

const runTask = <R>(task: Task): Promise<R> => startTask<R>(task).done;

interface CostRow {
  ddimSteps: number;
  guidance: string;
  guidedSteps: number;
  /** Seconds per generated image on one core (one process). */
  secondsPerImage: number;
  secondsPerAcceptedImage: number;
  acceptedPerSecondBothCores: number;
  minutesForTargetBothCores: number;
}

const f = (v: number | undefined, digits = 1): string => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(digits));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '5' },
      batch: { type: 'string', default: '64' },
      'ddim-steps': { type: 'string', default: '10' },
      'guided-steps': { type: 'string', default: '5' },
      'guidance-batches': { type: 'string', default: '16,64' },
      acceptance: { type: 'string', default: '0.8' },
      'skip-full': { type: 'boolean', default: false },
      'skip-reference': { type: 'boolean', default: false },
      // internal: one id3 measurement in this process, JSON on stdout
      child: { type: 'string' },
    },
  });
  if (values.child) return child(JSON.parse(values.child) as Task);

  const steps = Number(values.steps);
  const batch = Number(values.batch);
  const ddimSteps = Number(values['ddim-steps']);
  const guidedSteps = Number(values['guided-steps']);
  const guidanceBatches = values['guidance-batches'].split(',').map(Number);
  const acceptance = Number(values.acceptance);
  for (const [name, v] of [
    ['--steps', steps],
    ['--batch', batch],
    ['--ddim-steps', ddimSteps],
    ['--guided-steps', guidedSteps],
    ...guidanceBatches.map((b) => ['--guidance-batches', b] as const),
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: expected a positive integer, got ${v}`);
  if (!(acceptance > 0 && acceptance <= 1)) throw new Error(`--acceptance: expected (0, 1], got ${values.acceptance}`);
  const started = Date.now();
  const load: Record<string, number[]> = { start: loadavg() };

  // 1. UNet forward, 1 process, then 2 processes over the same window.
  process.stderr.write(`id3 UNet forward, batch ${batch}, 1 process (${steps} timed)…\n`);
  const forward1 = await runTask<ForwardResult>({ kind: 'forward', batch, steps, warmup: 2, sync: false });
  load['after forward 1'] = loadavg();
  process.stderr.write(`id3 UNet forward, batch ${batch}, 2 processes at once…\n`);
  const pair = [0, 1].map(() => startTask<ForwardResult>({ kind: 'forward', batch, steps, warmup: 2, sync: true }));
  await Promise.all(pair.map((p) => p.ready));
  for (const p of pair) p.go();
  const forward2 = await Promise.all(pair.map((p) => p.done));
  load['after forward 2'] = loadavg();
  const imagesPerSecond1 = 1000 / forward1.msPerImage;
  const imagesPerSecond2 = forward2.reduce((sum, r) => sum + 1000 / r.msPerImage, 0);
  /** How much of a second core the second process adds (1 = all of it). */
  const scaling = imagesPerSecond2 / imagesPerSecond1;

  // 2. The DDIM loop.
  process.stderr.write(`id3 DDIM loop, ${ddimSteps} steps, batch ${batch}…\n`);
  const ddim = await runTask<DdimResult>({ kind: 'ddim', batch, ddimSteps, guided: false });
  load['after ddim'] = loadavg();
  const predictedLoopSeconds = (ddimSteps * forward1.msPerBatch) / 1000;

  // 3. Guidance: teacher forward + backward per batch (a batch that does not fit the wasm heap is recorded, not fatal).
  const guidance: { batch: number; result?: GuidanceResult; error?: string }[] = [];
  for (const [i, b] of guidanceBatches.entries()) {
    const full = !values['skip-full'] && i === 0;
    process.stderr.write(`id3 identity guidance, batch ${b}${full ? ' (+ full gradient through the UNet)' : ''}…\n`);
    try {
      guidance.push({ batch: b, result: await runTask<GuidanceResult>({ kind: 'guidance', batch: b, steps, full }) });
    } catch (err) {
      guidance.push({ batch: b, error: (err as Error).message });
    }
    load[`after guidance ${b}`] = loadavg();
  }
  const fitted = guidance.filter((g) => g.result);
  if (!fitted.length) throw new Error(`no guidance batch fitted: ${guidance.map((g) => g.error).join('; ')}`);
  // The cost model uses the largest batch that fitted (a sampler guides its whole batch at once).
  const g = fitted[fitted.length - 1].result as GuidanceResult;
  const gFull = fitted.find((x) => x.result?.fullMsPerImage)?.result;
  const guidedBatch = guidanceBatches[0];
  process.stderr.write(
    `id3 guided DDIM loop, ${guidedSteps} steps, batch ${guidedBatch}, guidance every step (+ the same loop unguided)…\n`,
  );
  const guidedLoop = await runTask<DdimResult>({ kind: 'ddim', batch: guidedBatch, ddimSteps: guidedSteps, guided: true });
  load['after guided loop'] = loadavg();
  const inLoopGuidanceMsPerImage = guidedLoop.unguided && (guidedLoop.msPerStep - guidedLoop.unguided.msPerStep) / guidedBatch;

  // PyTorch, after every id3 run.
  const torch: Record<number, TorchResult> = {};
  if (!values['skip-reference']) {
    for (const threads of [1, 2]) {
      process.stderr.write(`PyTorch UNet forward, batch ${batch}, ${threads} thread(s)…\n`);
      // OpenBLAS's own pool follows OPENBLAS_NUM_THREADS, not torch.set_num_threads.
      const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
      const args = [join(__dirname, '..', 'diffusion', 'unet_reference.py'), JSON.stringify(ARCH), String(RESOLUTION), String(batch)];
      torch[threads] = await start<TorchResult>('/usr/bin/python3', [...args, String(steps), String(threads), '--forward'], env).done;
      if (torch[threads].parameters !== forward1.parameters)
        throw new Error(`parameter counts differ: id3 ${forward1.parameters}, PyTorch ${torch[threads].parameters}`);
      load[`after PyTorch ${threads}t`] = loadavg();
    }
  }
  const torchMsPerImage = (threads: number): number | undefined => torch[threads] && (torch[threads].secondsPerStep * 1000) / batch;

  // 4. Cost model. u: a DDIM step per image as the loop measured it (UNet + step arithmetic);
  // g: guidance per image per guided step; c: the acceptance check (one teacher forward per image).
  const u = ddim.msPerStep / batch;
  const c = g.forwardMsPerImage;
  const schedules = (S: number): [string, number][] => [
    ['none', 0],
    ['every step', S],
    ['every 2nd step', Math.ceil(S / 2)],
    ['last half', Math.floor(S / 2)],
  ];
  const cost = (S: number, name: string, G: number, gMs: number): CostRow => {
    const secondsPerImage = (S * u + G * gMs + c) / 1000;
    const secondsPerAcceptedImage = secondsPerImage / acceptance;
    // Both cores: the second process adds what it added to the UNet forward.
    const acceptedPerSecondBothCores = scaling / secondsPerAcceptedImage;
    return {
      ddimSteps: S,
      guidance: name,
      guidedSteps: G,
      secondsPerImage,
      secondsPerAcceptedImage,
      acceptedPerSecondBothCores,
      minutesForTargetBothCores: TARGET_IMAGES / acceptedPerSecondBothCores / 60,
    };
  };
  const costModel: CostRow[] = [];
  for (const S of [25, 50]) for (const [name, G] of schedules(S)) costModel.push(cost(S, name, G, g.gradMsPerImage));
  // The full gradient, as the guidance hook would compute it: the hook gets x_t after the
  // step's plain forward, so it re-runs the UNet with a tape, backpropagates through it and the teacher.
  if (gFull?.fullMsPerImage) for (const S of [25, 50]) costModel.push(cost(S, 'every step, full gradient', S, gFull.fullMsPerImage));

  const result = {
    command: `npm run bench:sampler -- ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date(started).toISOString(),
    wallSeconds: (Date.now() - started) / 1000,
    machine: `${process.platform} ${process.arch}, 2 cores (shared), Node ${process.version}`,
    loadAverage: load,
    architecture: { ...ARCH, resolution: RESOLUTION },
    parameters: forward1.parameters,
    backend: forward1.backendDetail,
    batch,
    steps,
    teacher: TEACHER,
    forward: {
      oneProcess: forward1,
      twoProcesses: forward2,
      imagesPerSecond1,
      imagesPerSecond2,
      scaling,
      torch1: torch[1],
      torch2: torch[2],
      torchMsPerImage1: torchMsPerImage(1),
      torchMsPerImage2: torchMsPerImage(2),
      ratioTo1Thread: torch[1] && forward1.msPerImage / (torchMsPerImage(1) as number),
      // throughput ratio: PyTorch's images/s on 2 threads over id3's on 2 processes
      ratioTo2Threads: torch[2] && 1000 / (torchMsPerImage(2) as number) / imagesPerSecond2,
    },
    ddim: { ...ddim, steps: ddimSteps, batch, predictedLoopSeconds, measuredOverPredicted: ddim.loopSeconds / predictedLoopSeconds },
    guidance,
    guidedLoop: { ...guidedLoop, steps: guidedSteps, batch: guidedBatch, inLoopGuidanceMsPerImage },
    costModel: {
      formula: 's per accepted image = (S·u + G·g + c) / a; images/s on both cores = scaling / that',
      uMsPerImageStep: u,
      gMsPerImageStep: g.gradMsPerImage,
      gFromBatch: fitted[fitted.length - 1].batch,
      cMsPerImage: c,
      acceptance,
      scaling,
      targetImages: TARGET_IMAGES,
      rows: costModel,
    },
  };
  mkdirSync(join(__dirname, '..', 'results'), { recursive: true });
  writeFileSync(join(__dirname, '..', 'results', 'sampler.json'), `${JSON.stringify(result, null, 2)}\n`);

  const r = result.forward;
  console.log(`UNet forward, ${RESOLUTION}×${RESOLUTION}, batch ${batch} (${forward1.parameters.toLocaleString('en')} parameters):\n`);
  console.log('| | id3 (wasm) ms/batch | id3 ms/img | id3 img/s | PyTorch ms/batch | PyTorch ms/img | PyTorch img/s | id3 / PyTorch |');
  console.log('|---|---|---|---|---|---|---|---|');
  const t1 = torch[1];
  const t2 = torch[2];
  console.log(
    `| 1 thread | ${f(forward1.msPerBatch, 0)} | ${f(forward1.msPerImage)} | ${f(imagesPerSecond1)} | ${f(t1 && t1.secondsPerStep * 1000, 0)} | ${f(torchMsPerImage(1))} | ${f(t1 && batch / t1.secondsPerStep)} | ${r.ratioTo1Thread ? `${f(r.ratioTo1Thread, 2)}×` : '—'} |`,
  );
  console.log(
    `| 2 threads (id3: 2 processes × ${batch}) | ${forward2.map((x) => f(x.msPerBatch, 0)).join(' / ')} | ${f(1000 / imagesPerSecond2)} (effective) | ${f(imagesPerSecond2)} | ${f(t2 && t2.secondsPerStep * 1000, 0)} | ${f(torchMsPerImage(2))} | ${f(t2 && batch / t2.secondsPerStep)} | ${r.ratioTo2Threads ? `${f(r.ratioTo2Threads, 2)}×` : '—'} |`,
  );
  console.log(`\nSecond process adds ${f((scaling - 1) * 100, 0)}% (${f(scaling, 2)}× one process).`);
  console.log(
    `\nDDIM loop, ${ddimSteps} steps, batch ${batch}: ${f(ddim.loopSeconds, 2)} s (${f(ddim.msPerStep, 0)} ms/step, ${f(ddim.imagesPerSecond, 2)} images/s); ` +
      `steps × forward predicts ${f(predictedLoopSeconds, 2)} s (measured / predicted ${f(result.ddim.measuredOverPredicted, 3)}).`,
  );
  console.log(`\nIdentity guidance (${TEACHER}, 32×32 x̂0 → TeacherInput → teacher, cosine to y):\n`);
  console.log('| batch | teacher fwd + bwd ms/batch | ms/img | teacher fwd only ms/img | full gradient through the UNet ms/img |');
  console.log('|---|---|---|---|---|');
  for (const x of guidance) {
    if (!x.result) console.log(`| ${x.batch} | did not run: ${x.error} | | | |`);
    else
      console.log(
        `| ${x.batch} | ${f(x.result.gradMsPerBatch, 0)} | ${f(x.result.gradMsPerImage)} | ${f(x.result.forwardMsPerImage)} | ${f(x.result.fullMsPerImage)} |`,
      );
  }
  const gl = result.guidedLoop;
  console.log(
    `\nGuided DDIM loop, ${guidedSteps} steps, batch ${guidedBatch}: ${f(gl.msPerStep, 0)} ms/step guided, ${f(gl.unguided?.msPerStep, 0)} ms/step unguided → ${f(inLoopGuidanceMsPerImage)} ms per image per guided step.`,
  );
  console.log(
    `\nCost model: s/accepted image = (S × ${f(u)} + G × ${f(g.gradMsPerImage)} + ${f(c)}) ms / ${acceptance}; both cores = ${f(scaling, 2)} × one; target ${TARGET_IMAGES} images:\n`,
  );
  console.log(
    '| DDIM steps S | guidance | guided steps G | s/image (1 core) | s/accepted image (1 core) | accepted img/s (2 cores) | min for 4,000 (2 cores) |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const row of costModel)
    console.log(
      `| ${row.ddimSteps} | ${row.guidance} | ${row.guidedSteps} | ${f(row.secondsPerImage, 2)} | ${f(row.secondsPerAcceptedImage, 2)} | ${f(row.acceptedPerSecondBothCores, 2)} | ${f(row.minutesForTargetBothCores, 0)} |`,
    );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
