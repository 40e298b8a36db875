/**
 * Diffusion training-step benchmark: the UNet of packages/diffusion (the train-diffusion
 * default: base 32, mults 1-2-2, one residual block per level, attention at 8×8, 1.35 M
 * parameters) trained on batch 16 at 32×32 and 64×64 with id3's trainer on the selected backend
 * (1 and 2 threads), against the same UNet and step in PyTorch (Debian's python3-torch,
 * /usr/bin/python3, 2 threads: bench/diffusion/unet_reference.py), measured in one run, plus the
 * extra cost of the ID³ identity term (teacher forward + backward) per image.
 *
 *   npm run bench:diffusion -- [--steps 5] [--resolutions 32,64] [--skip-reference]
 *
 * Writes bench/results/diffusion.json and prints a Markdown table for BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Rng, initBackend, tf } from '@id3/core';
import { loadEmbedder, type FaceEmbedder } from '@id3/faces';
import { DiffusionTrainer, scheduleConfigSchema, trainerConfigSchema, unetConfigSchema, type TrainingData } from '@id3/diffusion';
import { GENERATOR_ARCH } from './generator-arch';

const ARCH = GENERATOR_ARCH;
const BATCH = 16;

function syntheticData(size: number, n = 256): TrainingData {
  const rng = new Rng(0);
  const y = new Float32Array(n * 128);
  for (let i = 0; i < n; i++) {
    const v = rng.fillNormal(new Float32Array(128));
    const norm = Math.hypot(...v);
    y.set(
      v.map((x) => x / norm),
      i * 128,
    );
  }
  return {
    size,
    crops: new Uint8Array(n * size * size * 3).map(() => rng.int(256)),
    y,
    identityDim: 128,
    s: rng.fillNormal(new Float32Array(n * 4)).map((v) => v * 0.3),
    attributeDim: 4,
    trainRows: Array.from({ length: n }, (_, i) => i),
  };
}

async function measure(size: number, threads: number, identityPerStep: number, steps: number, backend: string, teacher: FaceEmbedder) {
  const trainer = new DiffusionTrainer(
    unetConfigSchema.parse({ ...ARCH, resolution: size }),
    scheduleConfigSchema.parse({}),
    // Adam 2e-4 from the first step, as the reference: during a warm-up, near-zero updates of the
    // zero-initialised layers make denormal activations, which wasm (no flush-to-zero) computes
    // ~1.5× slower — a start-up effect, not the steady state being compared.
    trainerConfigSchema.parse({
      seed: 0,
      steps: 1000,
      batchSize: BATCH,
      learningRate: 2e-4,
      warmupSteps: 0,
      threads,
      identity: { enabled: identityPerStep > 0, subBatch: Math.max(1, identityPerStep), every: 1 },
    }),
    syntheticData(size),
    teacher,
    'bench',
  );
  try {
    await trainer.startWorkers(threads, backend);
    for (let i = 0; i < 3; i++) await trainer.trainStep(); // warm-up: kernels, weight packing
    const tensors = tf.memory().numTensors;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await trainer.trainStep();
    const seconds = (performance.now() - t0) / 1000 / steps;
    if (tf.memory().numTensors !== tensors) throw new Error(`tensor leak: ${tensors} → ${tf.memory().numTensors}`);
    return { seconds, parameters: trainer.net.parameterCount(), rssMiB: process.memoryUsage().rss / 2 ** 20 };
  } finally {
    await trainer.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '5' },
      resolutions: { type: 'string', default: '32,64' },
      'skip-reference': { type: 'boolean', default: false },
    },
  });
  const steps = Number(values.steps);
  const resolutions = values.resolutions.split(',').map(Number);
  const backend = await initBackend();
  const teacher = await loadEmbedder('faceapi-dlib-128');
  const rows: Record<string, unknown>[] = [];
  for (const size of resolutions) {
    // id3 first, the reference after: measured here, a wasm run straight after the PyTorch
    // process was up to 1.4× slower than the same run on a quiet machine.
    const measured: { threads: number; seconds: number; parameters: number; rssMiB: number }[] = [];
    for (const threads of [1, 2]) {
      process.stderr.write(`id3 ${size}×${size}, ${threads} thread(s)…\n`);
      measured.push({ threads, ...(await measure(size, threads, 0, steps, backend.name, teacher)) });
    }
    let reference: { secondsPerStep: number; parameters: number; framework: string } | undefined;
    if (!values['skip-reference']) {
      process.stderr.write(`PyTorch reference ${size}×${size} (2 threads)…\n`);
      const out = execFileSync(
        '/usr/bin/python3',
        [join(__dirname, 'unet_reference.py'), JSON.stringify(ARCH), String(size), String(BATCH), String(steps), '2'],
        { encoding: 'utf8' },
      );
      reference = JSON.parse(out) as typeof reference;
    }
    for (const m of measured) {
      if (reference && m.parameters !== reference.parameters)
        throw new Error(`parameter counts differ: id3 ${m.parameters}, PyTorch ${reference.parameters}`);
      rows.push({
        resolution: size,
        threads: m.threads,
        secondsPerStep: m.seconds,
        imagesPerSecond: BATCH / m.seconds,
        referenceSecondsPerStep: reference?.secondsPerStep,
        ratioToReference: reference ? m.seconds / reference.secondsPerStep : undefined,
        parameters: m.parameters,
        rssMiB: m.rssMiB,
        reference: reference?.framework,
      });
    }
  }
  // The identity term's extra cost: the same step with 4 identity images (2 per thread).
  const size = resolutions[0];
  const base = rows.find((r) => r.resolution === size && r.threads === 2)?.secondsPerStep as number;
  process.stderr.write(`id3 ${size}×${size}, 2 threads, identity term on 4 images per step…\n`);
  const withId = await measure(size, 2, 4, steps, backend.name, teacher);
  const identity = {
    resolution: size,
    threads: 2,
    identityImages: 4,
    secondsPerStep: withId.seconds,
    extraSecondsPerStep: withId.seconds - base,
    extraSecondsPerImage: (withId.seconds - base) / 4,
  };

  const result = { backend: backend.name, batch: BATCH, steps, architecture: ARCH, rows, identity, date: new Date().toISOString() };
  mkdirSync(join(__dirname, '..', 'results'), { recursive: true });
  writeFileSync(join(__dirname, '..', 'results', 'diffusion.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`| resolution | threads | id3 s/step (${backend.name}) | PyTorch s/step (2 threads) | ratio | images/s |`);
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    const ratio = r.ratioToReference as number | undefined;
    console.log(
      `| ${r.resolution as number}×${r.resolution as number} | ${r.threads as number} | ${(r.secondsPerStep as number).toFixed(3)} | ${r.referenceSecondsPerStep ? (r.referenceSecondsPerStep as number).toFixed(3) : '—'} | ${ratio ? `${ratio.toFixed(2)}×` : '—'} | ${(r.imagesPerSecond as number).toFixed(1)} |`,
    );
  }
  console.log(
    `\nIdentity term (${size}×${size}, 2 threads, 4 images/step): ${identity.secondsPerStep.toFixed(3)} s/step, +${identity.extraSecondsPerStep.toFixed(3)} s (${identity.extraSecondsPerImage.toFixed(3)} s per image)`,
  );
}

void main();
