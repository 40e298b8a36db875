import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { InvalidInputError } from './errors';

/** A config that failed validation; the message names every offending field. */
export class ConfigError extends InvalidInputError {
  override name = 'ConfigError';
  constructor(
    readonly issues: readonly { field: string; message: string }[],
    readonly source: string,
  ) {
    super(`invalid config (${source}): ${issues.map((i) => `field '${i.field}': ${i.message}`).join('; ')}`, {
      file: source,
      field: issues[0]?.field,
    });
  }
}

function fieldPath(path: readonly PropertyKey[]): string {
  return path.length === 0
    ? '(root)'
    : path
        .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
        .join('.')
        .replace(/\.\[/g, '[');
}

/**
 * Validate `raw` against `schema`; throws ConfigError naming each bad field (prefixed with
 * `fieldPrefix`, e.g. the config section the value came from).
 */
export function parseConfig<S extends z.ZodTypeAny>(schema: S, raw: unknown, source: string, fieldPrefix?: string): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data as z.output<S>;
  throw new ConfigError(
    parsed.error.issues
      .map((issue) => {
        const prefix = fieldPrefix ? [fieldPrefix] : [];
        // Unknown keys are reported on the parent object: name them as fields.
        const keys = issue.code === 'unrecognized_keys' ? issue.keys : [undefined];
        return keys.map((k) => ({ field: fieldPath([...prefix, ...issue.path, ...(k === undefined ? [] : [k])]), message: issue.message }));
      })
      .flat(),
    source,
  );
}

export type JsonObject = { [key: string]: unknown };

const isPlainObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Deep merge for config overrides: objects merge key by key, everything else replaces. */
export function mergeConfig(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override === undefined ? base : override;
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = mergeConfig(base[key], value);
  return out;
}

/** Read a JSON file; a syntax error names the file and the line. */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidInputError(`cannot read ${path}: ${(err as Error).message}`, { file: path });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const message = (err as Error).message.split('\n')[0];
    const pos = jsonErrorOffset(text);
    const line = text.slice(0, pos).split('\n').length;
    throw new InvalidInputError(`${path}:${line}: invalid JSON: ${message}`, { file: path, line });
  }
}

/** The directory holding the profile data files (`<repo>/profiles`). */
export function profilesDir(): string {
  return process.env.ID3_PROFILES_DIR ?? resolve(__dirname, '../../../profiles');
}

export function listProfiles(dir = profilesDir()): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** Load a named profile (a data file) without validating it: the caller's schema does that. */
export function loadProfile(name: string, dir = profilesDir()): JsonObject {
  if (!/^[a-z0-9][a-z0-9_-]*$/i.test(name)) {
    throw new InvalidInputError(`profile name '${name}' is not a plain name`, { field: 'profile' });
  }
  const known = listProfiles(dir);
  if (!known.includes(name)) {
    throw new InvalidInputError(`unknown profile '${name}' (known: ${known.join(', ')})`, { field: 'profile' });
  }
  const value = readJsonFile(join(dir, `${name}.json`));
  if (!isPlainObject(value)) throw new InvalidInputError(`profile ${name}.json must hold a JSON object`, { file: `${name}.json` });
  return value;
}

/**
 * Offset of the first JSON syntax error (Node 20's JSON.parse does not say where): a minimal
 * recursive-descent scan, only run after JSON.parse has failed.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const literal = (word: string): void => {
    if (text.startsWith(word, i)) i += word.length;
    else fail();
  };
  const string = (): void => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\') i++;
      else if (text.charCodeAt(i) < 0x20) fail();
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        string();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail();
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail();
      }
    } else if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else {
      const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
      if (!m) fail();
      else i += m[0].length;
    }
  };
  try {
    value();
    ws();
    return i < text.length ? i : text.length;
  } catch (at) {
    return typeof at === 'number' ? at : 0;
  }
}
