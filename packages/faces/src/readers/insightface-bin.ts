import { readFileSync } from 'node:fs';
import { InvalidInputError } from '@id3/core';

/**
 * insightface verification `.bin` files (lfw.bin, cfp_fp.bin, agedb_30.bin, …) are a pickled
 * tuple `(list of JPEG bytes, list of bool)`; images 2i and 2i+1 form pair i.
 *
 * Pickle is a program for a stack machine and unpickling arbitrary files executes code, so this
 * reader is not an unpickler: it interprets only the data-building opcodes those files use
 * (protocol 2 from Python 2 with BINSTRING/SHORT_BINSTRING, protocol 3-4 with BINBYTES and
 * FRAME/MEMOIZE) and refuses every other opcode — GLOBAL, REDUCE, BUILD, … — by name and offset.
 */
export interface InsightfaceBin {
  readonly images: readonly Buffer[];
  readonly issame: readonly boolean[];
}

type Value = Buffer | boolean | Value[] | { tuple: Value[] };
const MARK = Symbol('mark');

const OPCODES: Record<number, string> = {
  0x80: 'PROTO',
  0x95: 'FRAME',
  0x28: 'MARK',
  0x5d: 'EMPTY_LIST',
  0x29: 'EMPTY_TUPLE',
  0x61: 'APPEND',
  0x65: 'APPENDS',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8e: 'BINBYTES8',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x74: 'TUPLE',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x94: 'MEMOIZE',
  0x68: 'BINGET',
  0x6a: 'LONG_BINGET',
  0x2e: 'STOP',
};

export function parseInsightfaceBin(data: Buffer, source = '<buffer>'): InsightfaceBin {
  const stack: (Value | typeof MARK)[] = [];
  const memo = new Map<number, Value>();
  let pos = 0;
  const fail = (message: string): never => {
    throw new InvalidInputError(`${source}: ${message}`, { file: source });
  };
  const need = (n: number): void => {
    if (pos + n > data.length) fail(`truncated at byte ${pos} (needs ${n} more bytes, file has ${data.length - pos})`);
  };
  const pop = (): Value => {
    const v = stack.pop();
    if (v === undefined || v === MARK) fail(`malformed pickle: stack underflow at byte ${pos}`);
    return v as Value;
  };
  const popToMark = (): Value[] => {
    const items: Value[] = [];
    for (;;) {
      const v = stack.pop();
      if (v === undefined) fail(`malformed pickle: no MARK before byte ${pos}`);
      if (v === MARK) return items.reverse();
      items.push(v as Value);
    }
  };
  const bytes = (n: number): Buffer => {
    need(n);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const top = (): Value => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail(`malformed pickle: nothing to memoize at byte ${pos}`);
    return v as Value;
  };
  for (;;) {
    need(1);
    const at = pos;
    const op = data[pos++];
    const name = OPCODES[op];
    if (!name)
      fail(
        `refusing pickle opcode 0x${op.toString(16).padStart(2, '0')} ('${String.fromCharCode(op)}') at byte ${at}: only the data opcodes of insightface .bin files are accepted`,
      );
    switch (name) {
      case 'PROTO':
        bytes(1);
        break;
      case 'FRAME':
        bytes(8);
        break;
      case 'MARK':
        stack.push(MARK);
        break;
      case 'EMPTY_LIST':
        stack.push([]);
        break;
      case 'EMPTY_TUPLE':
        stack.push({ tuple: [] });
        break;
      case 'APPEND': {
        const v = pop();
        const list = pop();
        if (!Array.isArray(list)) fail(`APPEND to a non-list at byte ${at}`);
        (list as Value[]).push(v);
        stack.push(list);
        break;
      }
      case 'APPENDS': {
        const items = popToMark();
        const list = pop();
        if (!Array.isArray(list)) fail(`APPENDS to a non-list at byte ${at}`);
        (list as Value[]).push(...items);
        stack.push(list);
        break;
      }
      case 'BINSTRING':
      case 'BINBYTES':
        need(4);
        stack.push(Buffer.from(bytes(data.readUInt32LE((pos += 4) - 4))));
        break;
      case 'SHORT_BINSTRING':
      case 'SHORT_BINBYTES':
        need(1);
        stack.push(Buffer.from(bytes(data[pos++])));
        break;
      case 'BINBYTES8': {
        need(8);
        const n = Number(data.readBigUInt64LE(pos));
        pos += 8;
        stack.push(Buffer.from(bytes(n)));
        break;
      }
      case 'NEWTRUE':
        stack.push(true);
        break;
      case 'NEWFALSE':
        stack.push(false);
        break;
      case 'TUPLE1':
        stack.push({ tuple: [pop()] });
        break;
      case 'TUPLE2': {
        const b = pop();
        stack.push({ tuple: [pop(), b] });
        break;
      }
      case 'TUPLE3': {
        const c = pop();
        const b = pop();
        stack.push({ tuple: [pop(), b, c] });
        break;
      }
      case 'TUPLE':
        stack.push({ tuple: popToMark() });
        break;
      case 'BINPUT':
        need(1);
        memo.set(data[pos++], top());
        break;
      case 'LONG_BINPUT':
        need(4);
        memo.set(data.readUInt32LE(pos), top());
        pos += 4;
        break;
      case 'MEMOIZE':
        memo.set(memo.size, top());
        break;
      case 'BINGET':
      case 'LONG_BINGET': {
        const key = name === 'BINGET' ? bytes(1)[0] : (need(4), data.readUInt32LE((pos += 4) - 4));
        const v = memo.get(key);
        if (v === undefined) fail(`memo key ${key} not defined at byte ${at}`);
        stack.push(v as Value);
        break;
      }
      case 'STOP': {
        const result = pop();
        if (!(typeof result === 'object' && 'tuple' in result) || result.tuple.length !== 2)
          fail('expected a pickled tuple (images, issame)');
        const [images, issame] = (result as { tuple: Value[] }).tuple;
        if (!Array.isArray(images) || !images.every((v) => Buffer.isBuffer(v))) fail('first element must be a list of image byte strings');
        if (!Array.isArray(issame) || !issame.every((v) => typeof v === 'boolean')) fail('second element must be a list of bools');
        const imgs = images as Buffer[];
        const same = issame as boolean[];
        if (imgs.length !== 2 * same.length) fail(`${imgs.length} images for ${same.length} pairs (expected ${2 * same.length})`);
        return { images: imgs, issame: same };
      }
    }
  }
}

export function readInsightfaceBin(path: string): InsightfaceBin {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new InvalidInputError(`cannot read ${path}: ${(err as Error).message}`, { file: path });
  }
  return parseInsightfaceBin(data, path);
}
