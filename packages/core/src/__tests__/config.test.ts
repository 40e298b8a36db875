import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, loadProfile, mergeConfig, parseConfig, readJsonFile } from '../index';

const schema = z.object({ n: z.number().int().min(2), inner: z.object({ lr: z.number().positive() }).strict() }).strict();

describe('config validation', () => {
  it('returns typed values when valid', () => {
    expect(parseConfig(schema, { n: 3, inner: { lr: 0.1 } }, 'test')).toEqual({ n: 3, inner: { lr: 0.1 } });
  });

  it('names every bad field, with the section prefix, and the source', () => {
    let error: unknown;
    try {
      parseConfig(schema, { n: 'many', inner: { lr: -1, typo: 1 } }, 'profiles/x.json', 'anchors');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const e = error as ConfigError;
    expect(e.issues.map((i) => i.field).sort()).toEqual(['anchors.inner.lr', 'anchors.inner.typo', 'anchors.n']);
    expect(e.message).toMatch(/invalid config \(profiles\/x\.json\): field 'anchors\.n': Expected number, received string/);
    expect(e.name).toBe('ConfigError');
  });

  it('merges overrides deeply; arrays and scalars replace', () => {
    expect(mergeConfig({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] }, e: 2 })).toEqual({ a: { b: 1, c: [3] }, d: 1, e: 2 });
  });

  it('a JSON syntax error names the file and the line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-cfg-'));
    const p = join(dir, 'bad.json');
    writeFileSync(p, '{\n  "a": 1,\n  "b": oops\n}\n');
    expect(() => readJsonFile(p)).toThrow(new RegExp(`${p}:3: invalid JSON`));
  });

  it('profiles are data files; unknown names are refused with the known list', () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-prof-'));
    writeFileSync(join(dir, 'small.json'), '{"seed": 1}');
    expect(loadProfile('small', dir)).toEqual({ seed: 1 });
    expect(() => loadProfile('big', dir)).toThrow(/unknown profile 'big' \(known: small\)/);
    expect(() => loadProfile('../etc', dir)).toThrow(/not a plain name/);
  });

  it('ships a valid demo profile', () => {
    expect(loadProfile('demo')).toMatchObject({ seed: expect.any(Number), stages: expect.any(Array) });
  });
});

describe('isInvalidInput', () => {
  it('recognises InvalidInputError and its subclasses (ConfigError), not other errors', async () => {
    const { InvalidInputError, isInvalidInput } = await import('../index');
    expect(isInvalidInput(new InvalidInputError('x'))).toBe(true);
    expect(isInvalidInput(new ConfigError([{ field: 'a', message: 'b' }], 's'))).toBe(true);
    expect(isInvalidInput(new Error('x'))).toBe(false);
    expect(isInvalidInput('x')).toBe(false);
  });
});
