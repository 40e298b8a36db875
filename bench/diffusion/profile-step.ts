// Per-kernel time of one UNet training step on the selected backend (tf.profile), for finding
// what to optimise. Usage: node --import tsx bench/diffusion/profile-step.ts [resolution] [batch]
import { initBackend, tf } from '@id3/core';
import { UNet } from '@id3/diffusion';

async function main(): Promise<void> {
  await initBackend((process.env.ID3_BACKEND as 'wasm') ?? 'wasm', () => undefined);
  const r = Number(process.argv[2] ?? 32);
  const b = Number(process.argv[3] ?? 16);
  const net = UNet.create(
    { resolution: r, baseChannels: 32, channelMult: [1, 2, 2], resBlocks: 1, attentionResolutions: [8], identityDim: 128 },
    0,
  );
  const x = tf.randomNormal([b, r, r, 3]) as tf.Tensor4D;
  const y = tf.randomNormal([b, 128]) as tf.Tensor2D;
  const s = tf.randomNormal([b, 4]) as tf.Tensor2D;
  const t = Array.from({ length: b }, (_, i) => i * 37);
  const step = (): tf.Tensor =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(
        () => tf.mean(tf.square(tf.sub(net.forward({ xt: x, t, y, s }), x))) as tf.Scalar,
        net.variables,
      );
      return tf.addN([value, ...Object.values(grads).map((g) => tf.sum(g))]);
    });
  for (let i = 0; i < 2; i++) await step().data();
  const t0 = performance.now();
  for (let i = 0; i < 3; i++) await step().data();
  console.log(`step ${((performance.now() - t0) / 3).toFixed(0)} ms (${net.parameterCount()} params)`);
  const info = await tf.profile(async () => {
    const out = step();
    await out.data();
    return out;
  });
  const byKernel = new Map<string, { ms: number; n: number }>();
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const e = byKernel.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += ms;
    e.n++;
    byKernel.set(k.name, e);
  }
  const rows = [...byKernel.entries()].sort((a, b2) => b2[1].ms - a[1].ms);
  const total = rows.reduce((acc, [, v]) => acc + v.ms, 0);
  console.log(`kernels ${info.kernels.length}, kernel time ${total.toFixed(0)} ms`);
  for (const [name, v] of rows.slice(0, 25)) console.log(`${name.padEnd(28)} ${v.ms.toFixed(1).padStart(8)} ms  ×${v.n}`);
  if (process.env.TOP) await topKernels(info);
  // Conv2D split: batch-16 inputs are forward or input-gradient convolutions; others are filter gradients.
  const convs = info.kernels.filter((k) => k.name === 'Conv2D');
  const fw = convs.filter((k) => (k.inputShapes[0] as number[])[0] === b).reduce((acc, k) => acc + (k.kernelTimeMs as number), 0);
  console.log(
    `Conv2D on the batch (forward + input gradients): ${fw.toFixed(0)} ms; filter gradients: ${(convs.reduce((acc, k) => acc + (k.kernelTimeMs as number), 0) - fw).toFixed(0)} ms`,
  );
}
void main();
// (debug) top single kernels with shapes
export async function topKernels(info: Awaited<ReturnType<typeof tf.profile>>): Promise<void> {
  const list = [...info.kernels].sort((a, b) => (b.kernelTimeMs as number) - (a.kernelTimeMs as number)).slice(0, 40);
  for (const k of list)
    console.log(k.name, (k.kernelTimeMs as number).toFixed(1), JSON.stringify(k.inputShapes), JSON.stringify(k.outputShapes));
}
