import type { Point } from './align';

/**
 * Head pose from 2-D landmarks under a scaled-orthographic camera: fit u = s·R₂·X + t to a
 * canonical 3-D face (generic, in mm-like units: x right, y up, z towards the camera), by
 * linear least squares for the 2×3 projection, then the nearest pair of orthonormal rows.
 * Angles in degrees: yaw (turn; + = the nose moves towards the image right), pitch (nod; + = the
 * nose moves up in the image), roll (in-plane tilt; + = clockwise in the image).
 */
export interface HeadPose {
  readonly yaw: number;
  readonly pitch: number;
  readonly roll: number;
}

/** Generic 3-D positions of six landmarks (the classic OpenCV head-pose model). */
const MODEL_3D: Record<number, readonly [number, number, number]> = {
  30: [0, 0, 0], // nose tip
  8: [0, -330, -65], // chin
  36: [-225, 170, -135], // image-left eye, outer corner
  45: [225, 170, -135], // image-right eye, outer corner
  48: [-150, -150, -125], // image-left mouth corner
  54: [150, -150, -125], // image-right mouth corner
};
const INDICES = [30, 8, 36, 45, 48, 54];

/** Solve the 3×3 normal equations A x = b (Cramer). */
function solve3(A: number[][], b: number[]): number[] {
  const det = (m: number[][]) =>
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
    m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
    m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  const d = det(A);
  return [0, 1, 2].map((c) => det(A.map((row, r) => row.map((v, k) => (k === c ? b[r] : v)))) / d);
}

const normalise = (v: number[]): number[] => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const cross = (a: number[], b: number[]): number[] => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const dot = (a: number[], b: number[]): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

/** Head pose from the 68 landmarks (image coordinates, y down). */
export function headPoseFrom68(landmarks: readonly Point[]): HeadPose {
  if (landmarks.length !== 68) throw new RangeError(`expected 68 landmarks, got ${landmarks.length}`);
  // Centre both point sets: the translation drops out of the linear fit.
  const X = INDICES.map((i) => MODEL_3D[i]);
  const mx = [0, 1, 2].map((k) => X.reduce((s, p) => s + p[k], 0) / X.length);
  const Xc = X.map((p) => p.map((v, k) => v - mx[k]));
  const U = INDICES.map((i) => landmarks[i]);
  const mu = [0, 1].map((k) => U.reduce((s, p) => s + p[k], 0) / U.length);
  // Image y points down; the model's y up: flip so both are right-handed with z to the camera.
  const Uc = U.map(([u, v]) => [u - mu[0], -(v - mu[1])]);
  const XtX = [0, 1, 2].map((a) => [0, 1, 2].map((b) => Xc.reduce((s, p) => s + p[a] * p[b], 0)));
  const rows = [0, 1].map((r) =>
    solve3(
      XtX,
      [0, 1, 2].map((a) => Xc.reduce((s, p, i) => s + p[a] * Uc[i][r], 0)),
    ),
  );
  // Nearest orthonormal pair (symmetric Gram–Schmidt), then the third row by the cross product.
  let r1 = normalise(rows[0]);
  let r2 = normalise(rows[1]);
  const c = dot(r1, r2) / 2;
  [r1, r2] = [normalise(r1.map((v, k) => v - c * r2[k])), normalise(r2.map((v, k) => v - c * r1[k]))];
  const r3 = cross(r1, r2);
  // R = Rz(roll)·Ry(yaw)·Rx(pitch) (rows r1, r2, r3).
  const yaw = Math.asin(Math.max(-1, Math.min(1, -r3[0])));
  const pitch = Math.atan2(r3[1], r3[2]);
  const roll = Math.atan2(r2[0], r1[0]);
  const deg = (x: number) => (x * 180) / Math.PI;
  // Image-clockwise tilt is negative in the y-up frame: report roll in image terms.
  return { yaw: deg(yaw), pitch: deg(pitch), roll: -deg(roll) };
}

/** Project the canonical model with a known pose (for tests and for synthetic renderers). */
export function projectModel(pose: HeadPose, scale = 0.2, centre: Point = [100, 100]): Point[] {
  const rad = (d: number) => (d * Math.PI) / 180;
  const [y, p, r] = [rad(pose.yaw), rad(pose.pitch), rad(-pose.roll)];
  const Rx = [
    [1, 0, 0],
    [0, Math.cos(p), -Math.sin(p)],
    [0, Math.sin(p), Math.cos(p)],
  ];
  const Ry = [
    [Math.cos(y), 0, Math.sin(y)],
    [0, 1, 0],
    [-Math.sin(y), 0, Math.cos(y)],
  ];
  const Rz = [
    [Math.cos(r), -Math.sin(r), 0],
    [Math.sin(r), Math.cos(r), 0],
    [0, 0, 1],
  ];
  const mul = (A: number[][], B: number[][]) => A.map((row) => [0, 1, 2].map((j) => row.reduce((s, v, k) => s + v * B[k][j], 0)));
  const R = mul(Rz, mul(Ry, Rx));
  const out: Point[] = Array.from({ length: 68 }, () => [centre[0], centre[1]] as Point);
  for (const i of INDICES) {
    const X = MODEL_3D[i];
    const u = R[0][0] * X[0] + R[0][1] * X[1] + R[0][2] * X[2];
    const v = R[1][0] * X[0] + R[1][1] * X[1] + R[1][2] * X[2];
    out[i] = [centre[0] + scale * u, centre[1] - scale * v];
  }
  return out;
}
