import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng, writeFileAtomic, writeJsonAtomic } from '@id3/core';

/**
 * A small deterministic face renderer, so the demo runs on a fresh machine with no data. An
 * identity is a face shape, skin tone, eye/brow/nose/mouth geometry and hair; attributes are
 * head pose (yaw, pitch, roll), age cues, expression, lighting and background. Drawn as SVG and
 * rasterised by sharp. It is honest about what it is: cartoon faces with exact labels, good for
 * exercising the pipeline end to end, not a substitute for real photos.
 */
export interface FaceIdentity {
  readonly faceW: number; // half-width of the head, fraction of the image
  readonly faceH: number;
  readonly jaw: number; // 0 round … 1 square
  readonly skin: readonly [number, number, number];
  readonly eyeSpacing: number;
  readonly eyeY: number;
  readonly eyeSize: number;
  readonly iris: readonly [number, number, number];
  readonly browThickness: number;
  readonly browTilt: number;
  readonly noseLength: number;
  readonly noseWidth: number;
  readonly mouthWidth: number;
  readonly mouthY: number;
  readonly lips: readonly [number, number, number];
  readonly hairStyle: number; // 0 short, 1 long, 2 bald, 3 fringe
  readonly hair: readonly [number, number, number];
}

export interface FaceAttributes {
  readonly yaw: number; // degrees, + = nose towards the image right
  readonly pitch: number; // degrees, + = nose up
  readonly roll: number; // degrees, + = clockwise
  readonly age: number; // years
  readonly expression: number; // -1 frown … 1 smile
  readonly light: number; // -1 lit from the left … 1 from the right
  readonly background: readonly [number, number, number];
}

const rgb = ([r, g, b]: readonly number[]): string => `rgb(${Math.round(r)},${Math.round(g)},${Math.round(b)})`;
const mix = (a: readonly number[], b: readonly number[], t: number): [number, number, number] =>
  [0, 1, 2].map((i) => a[i] + (b[i] - a[i]) * t) as [number, number, number];

export function randomIdentity(rng: Rng): FaceIdentity {
  const tone = rng.uniform();
  const skin = mix([255, 224, 196], [110, 70, 45], tone);
  const hairPalette: [number, number, number][] = [
    [30, 25, 20],
    [90, 60, 30],
    [160, 120, 60],
    [200, 170, 110],
    [120, 40, 20],
  ];
  const irisPalette: [number, number, number][] = [
    [60, 40, 20],
    [40, 90, 150],
    [60, 120, 70],
    [90, 90, 90],
  ];
  return {
    faceW: rng.range(0.27, 0.34),
    faceH: rng.range(0.36, 0.43),
    jaw: rng.uniform(),
    skin,
    eyeSpacing: rng.range(0.1, 0.15),
    eyeY: rng.range(-0.06, 0.0),
    eyeSize: rng.range(0.028, 0.045),
    iris: irisPalette[rng.int(irisPalette.length)],
    browThickness: rng.range(0.008, 0.022),
    browTilt: rng.range(-0.03, 0.03),
    noseLength: rng.range(0.08, 0.14),
    noseWidth: rng.range(0.03, 0.06),
    mouthWidth: rng.range(0.07, 0.13),
    mouthY: rng.range(0.17, 0.23),
    lips: mix([200, 90, 90], [120, 50, 50], rng.uniform()),
    hairStyle: rng.int(4),
    hair: hairPalette[rng.int(hairPalette.length)],
  };
}

export function randomAttributes(rng: Rng): FaceAttributes {
  return {
    yaw: rng.range(-35, 35),
    pitch: rng.range(-15, 15),
    roll: rng.range(-15, 15),
    age: rng.range(10, 80),
    expression: rng.range(-1, 1),
    light: rng.range(-1, 1),
    background: [rng.range(40, 230), rng.range(40, 230), rng.range(40, 230)],
  };
}

/** SVG of one face in a `size`×`size` image. */
export function renderFaceSvg(id: FaceIdentity, a: FaceAttributes, size: number): string {
  const S = size;
  const rad = (d: number) => (d * Math.PI) / 180;
  const sx = Math.sin(rad(a.yaw));
  const sy = Math.sin(rad(a.pitch));
  const cosY = Math.cos(rad(a.yaw));
  const cx = S / 2;
  const cy = S / 2;
  const W = id.faceW * S * (0.85 + 0.15 * cosY);
  const H = id.faceH * S;
  // Features sit on the front of the head: they slide with yaw/pitch and compress towards the turn.
  const fx = (x: number) => cx + (x * cosY + sx * 0.55 * id.faceW) * S;
  const fy = (y: number) => cy + (y - sy * 0.35 * id.faceH) * S;
  const ageT = Math.max(0, Math.min(1, (a.age - 25) / 55));
  const hair = mix(id.hair, [200, 200, 200], ageT * ageT);
  const parts: string[] = [];
  parts.push(`<rect width="${S}" height="${S}" fill="${rgb(a.background)}"/>`);
  parts.push(`<g transform="rotate(${a.roll} ${cx} ${cy})">`);
  if (id.hairStyle === 1) parts.push(`<ellipse cx="${cx}" cy="${cy + 0.05 * S}" rx="${W * 1.2}" ry="${H * 1.15}" fill="${rgb(hair)}"/>`);
  parts.push(
    `<rect x="${cx - W * 0.45}" y="${cy + H * 0.7}" width="${W * 0.9}" height="${S}" fill="${rgb(mix(id.skin, [0, 0, 0], 0.1))}"/>`,
  );
  const jawR = W * (0.35 + 0.4 * (1 - id.jaw));
  parts.push(
    `<path d="M ${cx - W} ${cy} A ${W} ${H} 0 0 1 ${cx + W} ${cy} L ${cx + W} ${cy + H * 0.45} Q ${cx + W} ${cy + H} ${cx + jawR * 0.4} ${cy + H} L ${cx - jawR * 0.4} ${cy + H} Q ${cx - W} ${cy + H} ${cx - W} ${cy + H * 0.45} Z" fill="${rgb(id.skin)}"/>`,
  );
  if (id.hairStyle === 0 || id.hairStyle === 1)
    parts.push(
      `<path d="M ${cx - W} ${cy - H * 0.15} A ${W} ${H} 0 0 1 ${cx + W} ${cy - H * 0.15} Q ${cx} ${cy - H * 0.75} ${cx - W} ${cy - H * 0.15} Z" fill="${rgb(hair)}"/>`,
    );
  if (id.hairStyle === 3)
    parts.push(
      `<path d="M ${cx - W} ${cy - H * 0.05} A ${W} ${H} 0 0 1 ${cx + W} ${cy - H * 0.05} L ${cx + W * 0.6} ${cy - H * 0.35} L ${cx - W * 0.7} ${cy - H * 0.3} Z" fill="${rgb(hair)}"/>`,
    );
  for (const side of [-1, 1]) {
    const ex = fx(side * id.eyeSpacing);
    const ey = fy(id.eyeY);
    const r = id.eyeSize * S * (side * sx > 0 ? 1 - 0.3 * Math.abs(sx) : 1);
    parts.push(`<ellipse cx="${ex}" cy="${ey}" rx="${r * 1.5}" ry="${r}" fill="white"/>`);
    parts.push(`<circle cx="${ex + sx * r * 0.4}" cy="${ey - sy * r * 0.3}" r="${r * 0.7}" fill="${rgb(id.iris)}"/>`);
    parts.push(`<circle cx="${ex + sx * r * 0.4}" cy="${ey - sy * r * 0.3}" r="${r * 0.3}" fill="black"/>`);
    const by = ey - r * 2;
    parts.push(
      `<line x1="${ex - r * 1.7}" y1="${by + side * id.browTilt * S}" x2="${ex + r * 1.7}" y2="${by - side * id.browTilt * S}" stroke="${rgb(mix(hair, [0, 0, 0], 0.3))}" stroke-width="${id.browThickness * S}" stroke-linecap="round"/>`,
    );
    if (ageT > 0.2)
      parts.push(
        `<path d="M ${ex + side * r * 1.7} ${ey} l ${side * r * 0.6} ${-r * 0.4} M ${ex + side * r * 1.7} ${ey + r * 0.3} l ${side * r * 0.6} ${r * 0.2}" stroke="${rgb(mix(id.skin, [0, 0, 0], 0.4))}" stroke-width="${S * 0.004}" opacity="${ageT}"/>`,
      );
  }
  const nx = fx(0);
  const ny = fy(id.eyeY + id.noseLength);
  parts.push(
    `<path d="M ${fx(0)} ${fy(id.eyeY + 0.02)} L ${nx + sx * id.noseWidth * S} ${ny} L ${nx - id.noseWidth * S * 0.6} ${ny}" fill="none" stroke="${rgb(mix(id.skin, [0, 0, 0], 0.35))}" stroke-width="${S * 0.008}"/>`,
  );
  const mw = id.mouthWidth * S * cosY;
  const my = fy(id.mouthY);
  const curve = a.expression * S * 0.04;
  parts.push(
    `<path d="M ${fx(0) - mw} ${my} Q ${fx(0)} ${my + curve} ${fx(0) + mw} ${my}" fill="none" stroke="${rgb(id.lips)}" stroke-width="${S * 0.018}" stroke-linecap="round"/>`,
  );
  if (ageT > 0.3)
    parts.push(
      `<path d="M ${cx - W * 0.4} ${cy - H * 0.55} q ${W * 0.4} ${-H * 0.05} ${W * 0.8} 0" stroke="${rgb(mix(id.skin, [0, 0, 0], 0.35))}" stroke-width="${S * 0.004}" fill="none" opacity="${ageT}"/>`,
    );
  parts.push('</g>');
  parts.push(
    `<defs><linearGradient id="light" x1="${a.light < 0 ? 0 : 1}" y1="0" x2="${a.light < 0 ? 1 : 0}" y2="0"><stop offset="0" stop-color="white" stop-opacity="${0.25 * Math.abs(a.light)}"/><stop offset="1" stop-color="black" stop-opacity="${0.35 * Math.abs(a.light)}"/></linearGradient></defs>`,
  );
  parts.push(`<rect width="${S}" height="${S}" fill="url(#light)"/>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${S}" height="${S}">${parts.join('')}</svg>`;
}

export async function renderFacePng(id: FaceIdentity, a: FaceAttributes, size: number): Promise<Buffer> {
  return sharp(Buffer.from(renderFaceSvg(id, a, size)))
    .png()
    .toBuffer();
}

/**
 * Write `identities` folders of `perIdentity` PNGs (an identity-folder dataset) plus
 * `labels.json` with every image's identity and ground-truth attributes. Deterministic per seed.
 */
export async function writeProceduralFaces(
  dir: string,
  o: { identities: number; perIdentity: number; size: number; seed: number },
): Promise<{ labelsPath: string; count: number }> {
  const rng = new Rng(o.seed).fork('procedural-faces');
  const labels: { path: string; identity: number; attributes: FaceAttributes }[] = [];
  for (let i = 0; i < o.identities; i++) {
    const identity = randomIdentity(rng);
    const folder = join(dir, `id${String(i).padStart(4, '0')}`);
    mkdirSync(folder, { recursive: true });
    for (let j = 0; j < o.perIdentity; j++) {
      const attributes = randomAttributes(rng);
      const path = join(folder, `${String(j).padStart(3, '0')}.png`);
      writeFileAtomic(path, await renderFacePng(identity, attributes, o.size));
      labels.push({ path, identity: i, attributes });
    }
  }
  const labelsPath = join(dir, 'labels.json');
  writeJsonAtomic(labelsPath, { seed: o.seed, identities: o.identities, perIdentity: o.perIdentity, size: o.size, images: labels });
  return { labelsPath, count: labels.length };
}
