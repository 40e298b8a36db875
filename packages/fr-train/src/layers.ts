import { tf, type Rng } from '@id3/core';
import { BN_EPSILON, BN_MOMENTUM, batchNormInference, batchNormTraining, updateRunningStatistics } from './batch-norm';
import type { ParamStore } from './param-store';

/** Whether layers run in training mode (batch statistics, dropout) or inference mode (running statistics). */
export interface ForwardMode {
  readonly training: boolean;
}

/** arcface_torch initialises every convolution with N(0, 0.1²) (iresnet.py), whatever its fan-in. */
export const CONV_INIT_STD = 0.1;

/**
 * Bias-free convolution with PyTorch's symmetric zero padding (k − 1)/2. tfjs 'same' pads a
 * stride-2 convolution of an even input only at the bottom/right, PyTorch's padding=1 on both
 * sides: explicit padding keeps the sampling grid arcface_torch's, so converted weights would
 * see the same pixels. Weights are [kh, kw, cin, cout].
 */
export function conv2d(p: ParamStore, name: string, x: tf.Tensor4D, cout: number, kernel: 1 | 3, stride: 1 | 2): tf.Tensor4D {
  const cin = x.shape[3];
  const w = p.param(`${name}.weight`, [kernel, kernel, cin, cout], { normal: CONV_INIT_STD }) as tf.Tensor4D;
  return tf.conv2d(x, w, stride, kernel === 1 ? 'valid' : (kernel - 1) / 2);
}

/**
 * BatchNorm over the last axis of an NHWC map or an [n, c] matrix. Training mode normalises
 * with the batch's statistics and moves the running averages (momentum 0.1, in place, as
 * PyTorch's forward does); inference mode uses the running averages. `fixedScale` is
 * arcface_torch's `features` layer: γ held at 1 (requires_grad=False), so no γ parameter exists.
 */
export function batchNorm<T extends tf.Tensor>(p: ParamStore, name: string, x: T, mode: ForwardMode, o: { fixedScale?: boolean } = {}): T {
  const c = x.shape[x.rank - 1];
  const gamma = o.fixedScale ? undefined : (p.param(`${name}.weight`, [c], { constant: 1 }) as tf.Tensor1D);
  const beta = p.param(`${name}.bias`, [c], { constant: 0 }) as tf.Tensor1D;
  const runningMean = p.buffer(`${name}.running_mean`, [c], { constant: 0 });
  const runningVar = p.buffer(`${name}.running_var`, [c], { constant: 1 });
  if (!mode.training) return batchNormInference(x, gamma, beta, runningMean as tf.Tensor1D, runningVar as tf.Tensor1D) as T;
  const count = x.size / c;
  if (count < 2) throw new RangeError(`${name}: BatchNorm in training mode needs more than 1 value per channel (batch of ${x.shape[0]})`);
  return batchNormTraining(x, gamma, beta, {
    epsilon: BN_EPSILON,
    onStatistics: (stats) => updateRunningStatistics(runningMean, runningVar, stats, BN_MOMENTUM),
  }) as T;
}

/** PReLU with one learned slope per channel, initialised at 0.25 (torch.nn.PReLU(num_parameters=c)). */
export function prelu(p: ParamStore, name: string, x: tf.Tensor4D): tf.Tensor4D {
  const alpha = p.param(`${name}.weight`, [x.shape[3]], { constant: 0.25 });
  return tf.prelu<tf.Tensor>(x, alpha) as tf.Tensor4D;
}

/** Fully connected layer, weight [in, out], with torch.nn.Linear's init U(±1/√in) for weight and bias. */
export function linear(p: ParamStore, name: string, x: tf.Tensor2D, out: number): tf.Tensor2D {
  const fanIn = x.shape[1];
  const bound = { uniform: 1 / Math.sqrt(fanIn) };
  const w = p.param(`${name}.weight`, [fanIn, out], bound) as tf.Tensor2D;
  const b = p.param(`${name}.bias`, [out], bound);
  return tf.add(tf.matMul(x, w), b);
}

/**
 * Inverted dropout with a mask drawn from `rng` (every random number of a run comes from one
 * checkpointed RNG, so a resumed run draws the same masks): kept values are scaled by 1/(1 − rate).
 */
export function dropout(x: tf.Tensor2D, rate: number, rng: Rng): tf.Tensor2D {
  if (rate <= 0) return x;
  if (rate >= 1) throw new RangeError(`dropout rate ${rate} must be below 1`);
  const mask = new Float32Array(x.size);
  const keep = 1 / (1 - rate);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.uniform() < rate ? 0 : keep;
  return tf.mul(x, tf.tensor2d(mask, x.shape));
}
