import * as tf from '@tensorflow/tfjs';

/**
 * tfjs-backend-wasm has no Conv2DBackpropFilter kernel and a slow Conv2DBackpropInput, so
 * `tf.grad` through `tf.conv2d` either throws or crawls there. Both gradients are themselves
 * convolutions, so we express them with the forward `conv2d` (XNNPACK) and plain matMul:
 *
 *  - input gradient: the transposed convolution = a stride-1 'valid' convolution of the output
 *    gradient (zeros interleaved for stride > 1, padded by kernel-1-pad) with the spatially
 *    flipped kernel whose in/out channels are swapped;
 *  - filter gradient: a convolution in which the input's channels play the batch role and the
 *    output gradient is the kernel, dilated by the forward stride.
 *
 * 1×1 stride-1 convolutions are plain matrix products and take that shorter path.
 * Only the wasm backend is affected: on other backends the original gradient runs.
 */

type Pad = 'valid' | 'same' | number | [[number, number], [number, number], [number, number], [number, number]];

interface Conv2DAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

interface Padding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

const pair = (v: number | [number, number] | undefined, fallback: number): [number, number] =>
  v === undefined ? [fallback, fallback] : typeof v === 'number' ? [v, v] : v;

function round(value: number, mode: Conv2DAttrs['dimRoundingMode']): number {
  if (mode === 'ceil') return Math.ceil(value);
  if (mode === 'round') return Math.round(value);
  return Math.floor(value);
}

/** Output size and padding exactly as tfjs-core's computeConv2DInfo derives them. */
export function convGeometry(
  inH: number,
  inW: number,
  kh: number,
  kw: number,
  strides: [number, number],
  pad: Pad,
  rounding?: Conv2DAttrs['dimRoundingMode'],
): { outH: number; outW: number; pad: Padding } {
  const [sh, sw] = strides;
  if (pad === 'valid') {
    return { outH: Math.ceil((inH - kh + 1) / sh), outW: Math.ceil((inW - kw + 1) / sw), pad: { top: 0, bottom: 0, left: 0, right: 0 } };
  }
  if (pad === 'same') {
    const outH = Math.ceil(inH / sh);
    const outW = Math.ceil(inW / sw);
    const ph = Math.max(0, (outH - 1) * sh + kh - inH);
    const pw = Math.max(0, (outW - 1) * sw + kw - inW);
    const top = Math.floor(ph / 2);
    const left = Math.floor(pw / 2);
    return { outH, outW, pad: { top, bottom: ph - top, left, right: pw - left } };
  }
  if (typeof pad === 'number') {
    const outH = round((inH - kh + 2 * pad) / sh + 1, rounding);
    const outW = round((inW - kw + 2 * pad) / sw + 1, rounding);
    return { outH, outW, pad: { top: pad, bottom: pad, left: pad, right: pad } };
  }
  const [, [top, bottom], [left, right]] = pad;
  return {
    outH: round((inH + top + bottom - kh) / sh + 1, rounding),
    outW: round((inW + left + right - kw) / sw + 1, rounding),
    pad: { top, bottom, left, right },
  };
}

/** Pad with zeros where an amount is positive and crop where it is negative. */
function padOrCrop(x: tf.Tensor4D, p: Padding): tf.Tensor4D {
  const padded = tf.pad(x, [
    [0, 0],
    [Math.max(0, p.top), Math.max(0, p.bottom)],
    [Math.max(0, p.left), Math.max(0, p.right)],
    [0, 0],
  ]);
  const cropTop = Math.max(0, -p.top);
  const cropLeft = Math.max(0, -p.left);
  const h = padded.shape[1] - cropTop - Math.max(0, -p.bottom);
  const w = padded.shape[2] - cropLeft - Math.max(0, -p.right);
  if (cropTop === 0 && cropLeft === 0 && h === padded.shape[1] && w === padded.shape[2]) return padded;
  return tf.slice(padded, [0, cropTop, cropLeft, 0], [-1, h, w, -1]);
}

/** Insert (s-1) zeros between neighbouring rows/columns: [N,H,W,C] → [N,(H-1)sh+1,(W-1)sw+1,C]. */
function interleaveZeros(x: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  let y: tf.Tensor4D = x;
  if (sh > 1) {
    const rows = tf.reshape(y, [n, h, 1, w, c]);
    const spread = tf.concat([rows, tf.zeros([n, h, sh - 1, w, c])], 2);
    y = tf.slice(tf.reshape(spread, [n, h * sh, w, c]), [0, 0, 0, 0], [-1, (h - 1) * sh + 1, -1, -1]) as tf.Tensor4D;
  }
  if (sw > 1) {
    const [, h2] = y.shape;
    const cols = tf.reshape(y, [n, h2, w, 1, c]);
    const spread = tf.concat([cols, tf.zeros([n, h2, w, sw - 1, c])], 3);
    y = tf.slice(tf.reshape(spread, [n, h2, w * sw, c]), [0, 0, 0, 0], [-1, -1, (w - 1) * sw + 1, -1]) as tf.Tensor4D;
  }
  return y;
}

/**
 * The output gradient laid out so that a stride-1 'valid' convolution with the flipped kernel
 * yields the input gradient: zeros interleaved for the stride, padded by kernel − 1 − padding.
 */
function spreadForTransposedConv(
  dy: tf.Tensor4D,
  inH: number,
  inW: number,
  kh: number,
  kw: number,
  [sh, sw]: [number, number],
  pad: Padding,
): tf.Tensor4D {
  const spread = interleaveZeros(dy, sh, sw);
  const top = kh - 1 - pad.top;
  const left = kw - 1 - pad.left;
  return padOrCrop(spread, { top, left, bottom: inH + kh - 1 - spread.shape[1] - top, right: inW + kw - 1 - spread.shape[2] - left });
}

/**
 * dL/dx of depthwiseConv2d(x, filter) (NHWC, dilation 1; filter [kh, kw, C, multiplier]) through
 * the forward depthwise convolution — wasm has no DepthwiseConv2dNativeBackpropInput kernel.
 */
export function depthwiseInputGradient(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  inShape: [number, number, number, number],
  strides: [number, number],
  pad: Pad,
  rounding?: Conv2DAttrs['dimRoundingMode'],
): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, inH, inW, c] = inShape;
    const [kh, kw, , mult] = filter.shape;
    const geo = convGeometry(inH, inW, kh, kw, strides, pad, rounding);
    const flipped = tf.reverse(filter, [0, 1]) as tf.Tensor4D;
    // Output channel c·mult + m came from input channel c through filter[:, :, c, m].
    const perMultiplier = tf.split(tf.reshape(dy, [n, dy.shape[1], dy.shape[2], c, mult]), mult, 4);
    const filters = tf.split(flipped, mult, 3);
    let dx: tf.Tensor4D | undefined;
    perMultiplier.forEach((part, m) => {
      const spread = spreadForTransposedConv(
        tf.reshape(part, [n, dy.shape[1], dy.shape[2], c]) as tf.Tensor4D,
        inH,
        inW,
        kh,
        kw,
        strides,
        geo.pad,
      );
      const term = tf.depthwiseConv2d(spread, filters[m] as tf.Tensor4D, 1, 'valid');
      dx = dx ? (tf.add(dx, term) as tf.Tensor4D) : term;
    });
    return dx as tf.Tensor4D;
  });
}

/** dL/dx of conv2d(x, filter) for NHWC, dilation 1, using only forward conv2d. */
export function conv2dInputGradient(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  inShape: [number, number, number, number],
  strides: [number, number],
  pad: Pad,
  rounding?: Conv2DAttrs['dimRoundingMode'],
): tf.Tensor4D {
  return tf.tidy(() => {
    const [, inH, inW] = inShape;
    const [kh, kw, cin, cout] = filter.shape;
    const [sh, sw] = strides;
    const geo = convGeometry(inH, inW, kh, kw, strides, pad, rounding);
    if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && geo.outH === inH && geo.outW === inW) {
      const flat = matMulExplicitTranspose(tf.reshape(dy, [-1, cout]), tf.reshape(filter, [cin, cout]), false, true);
      return tf.reshape(flat, inShape) as tf.Tensor4D;
    }
    const flipped = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
    const p = geo.pad;
    if (
      sh === 1 &&
      sw === 1 &&
      kh % 2 === 1 &&
      kw % 2 === 1 &&
      p.top === (kh - 1) / 2 &&
      p.bottom === p.top &&
      p.left === (kw - 1) / 2 &&
      p.right === p.left
    ) {
      // Stride 1 with symmetric 'same' padding: the transposed conv is itself a 'same' conv (no pad copy).
      return tf.conv2d(dy, flipped, 1, 'same');
    }
    const padded = spreadForTransposedConv(dy, inH, inW, kh, kw, [sh, sw], geo.pad);
    return tf.conv2d(padded, flipped, 1, 'valid');
  });
}

/** dL/dfilter of conv2d(x, filter) for NHWC, dilation 1, using only forward conv2d. */
export function conv2dFilterGradient(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  strides: [number, number],
  pad: Pad,
  rounding?: Conv2DAttrs['dimRoundingMode'],
): tf.Tensor4D {
  return tf.tidy(() => {
    const [, inH, inW, cin] = x.shape;
    const [kh, kw, , cout] = filterShape;
    const [sh, sw] = strides;
    const geo = convGeometry(inH, inW, kh, kw, strides, pad, rounding);
    if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && geo.outH === inH && geo.outW === inW) {
      const flat = matMulExplicitTranspose(tf.reshape(x, [-1, cin]), tf.reshape(dy, [-1, cout]), true, false);
      return tf.reshape(flat, filterShape) as tf.Tensor4D;
    }
    const [, outH, outW] = dy.shape;
    const needH = (outH - 1) * sh + kh;
    const needW = (outW - 1) * sw + kw;
    // Only rows/columns the forward pass read are kept: pad by the forward padding, crop the rest.
    const windowed = padOrCrop(x, {
      top: geo.pad.top,
      left: geo.pad.left,
      bottom: needH - inH - geo.pad.top,
      right: needW - inW - geo.pad.left,
    });
    const channelsAsBatch = tf.transpose(windowed, [3, 1, 2, 0]) as tf.Tensor4D; // [Cin, H', W', N]
    const dyAsKernel = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [Ho, Wo, N, Cout]
    const out = tf.conv2d(channelsAsBatch, dyAsKernel, 1, 'valid', 'NHWC', [sh, sw]); // [Cin, kh, kw, Cout]
    return tf.transpose(out, [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

let installed = false;

type GradFunc = NonNullable<ReturnType<typeof tf.getGradient>>['gradFunc'];

/**
 * Wrap a kernel's registered gradient: on wasm (NHWC, dilation 1) `wasmGrad` supplies the
 * gradients, given the original ones to fall back on per input; elsewhere the original runs.
 */
function overrideOnWasm(
  kernelName: string,
  wasmGrad: (
    dy: tf.Tensor4D,
    x: tf.Tensor4D,
    filter: tf.Tensor4D,
    a: Conv2DAttrs,
    original: () => ReturnType<GradFunc>,
  ) => ReturnType<GradFunc>,
): void {
  const registered = tf.getGradient(kernelName);
  if (!registered) throw new Error(`tfjs-core has no ${kernelName} gradient registered to wrap`);
  tf.registerGradient({
    kernelName,
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const a = attrs as unknown as Conv2DAttrs;
      const [dh, dw] = pair(a.dilations, 1);
      const original = () => registered.gradFunc(dy, saved, attrs);
      if (tf.getBackend() !== 'wasm' || (a.dataFormat ?? 'NHWC') !== 'NHWC' || dh !== 1 || dw !== 1) return original();
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      return wasmGrad(dy as tf.Tensor4D, x, filter, a, original);
    },
  });
}

/**
 * matMul(p, q, transposeP, transposeQ) with the transposes done explicitly (last two axes).
 * Transposes are not free on wasm either (~30 ms for 16384×64), so pᵀ·q with a tall p is
 * computed as (qᵀ·p)ᵀ when q is the narrower operand (the 1×1-conv filter gradient: p is the
 * activation, q the output gradient).
 */
export function matMulExplicitTranspose(p: tf.Tensor, q: tf.Tensor, transposeP: boolean, transposeQ: boolean): tf.Tensor {
  const t = (x: tf.Tensor): tf.Tensor => tf.transpose(x, [...Array.from({ length: x.rank - 2 }, (_, i) => i), x.rank - 1, x.rank - 2]);
  if (transposeP && !transposeQ && q.shape[q.rank - 1] < p.shape[p.rank - 1]) return t(tf.matMul(t(q), p));
  return tf.matMul(transposeP ? t(p) : p, transposeQ ? t(q) : q);
}

/**
 * BatchMatMul's gradients are matMuls with a transposed operand; wasm's matMul runs those
 * several times slower than on an explicit transpose (measured: a [16384, 32]·[96, 32]ᵀ product
 * at 1.3 GMAC/s). The same formulas as tfjs-core's BatchMatMul gradient, transposes explicit.
 */
function installWasmMatMulGradient(): void {
  const registered = tf.getGradient('BatchMatMul');
  if (!registered) throw new Error('tfjs-core has no BatchMatMul gradient registered to wrap');
  tf.registerGradient({
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      if (tf.getBackend() !== 'wasm') return registered.gradFunc(dy, saved, attrs);
      const [a, b] = saved;
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const mm = matMulExplicitTranspose;
      const d = dy as tf.Tensor;
      if (!transposeA && !transposeB) return { a: () => mm(d, b, false, true), b: () => mm(a, d, true, false) };
      if (!transposeA && transposeB) return { a: () => mm(d, b, false, false), b: () => mm(d, a, true, false) };
      if (transposeA && !transposeB) return { a: () => mm(b, d, false, true), b: () => mm(a, d, false, false) };
      return { a: () => mm(b, d, true, true), b: () => mm(d, a, true, true) };
    },
  });
}

/** Replace the Conv2D and depthwise gradients so that on wasm they run through forward convolutions. */
export function installWasmConvGradients(): void {
  if (installed) return;
  installWasmMatMulGradient();
  overrideOnWasm('Conv2D', (dy, x, filter, a) => {
    const strides = pair(a.strides, 1);
    return {
      x: () => conv2dInputGradient(dy, filter, x.shape, strides, a.pad, a.dimRoundingMode),
      filter: () => conv2dFilterGradient(x, dy, filter.shape, strides, a.pad, a.dimRoundingMode),
    };
  });
  // The depthwise filter gradient keeps the original path (not needed for frozen networks such as teachers).
  overrideOnWasm('DepthwiseConv2dNative', (dy, x, filter, a, original) => ({
    x: () => depthwiseInputGradient(dy, filter, x.shape, pair(a.strides, 1), a.pad, a.dimRoundingMode),
    filter: original().filter,
  }));
  installed = true;
}
