/**
 * Progress events: what a stage tells the outside world while it works. The stage CLI prints
 * them as JSON lines (prefixed, so they stand out from logs) when a parent process asks, and as
 * human lines otherwise; the Temporal activity parses the lines and heartbeats them.
 */
export interface ProgressEvent {
  readonly stage: string;
  /** Short phase name, e.g. 'optimise', 'write', 'skipped'. */
  readonly phase: string;
  readonly step?: number;
  readonly total?: number;
  readonly message?: string;
  readonly metrics?: Readonly<Record<string, number>>;
}

export type ProgressSink = (event: ProgressEvent) => void;

export const PROGRESS_LINE_PREFIX = '@@id3-progress ';

export function formatProgressLine(event: ProgressEvent): string {
  return `${PROGRESS_LINE_PREFIX}${JSON.stringify(event)}`;
}

/** Parse one output line; undefined when it is not a progress line (ordinary log output). */
export function parseProgressLine(line: string): ProgressEvent | undefined {
  if (!line.startsWith(PROGRESS_LINE_PREFIX)) return undefined;
  try {
    const value = JSON.parse(line.slice(PROGRESS_LINE_PREFIX.length)) as ProgressEvent;
    return typeof value === 'object' && value !== null && typeof value.stage === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

export function describeProgress(event: ProgressEvent): string {
  const parts = [`[${event.stage}] ${event.phase}`];
  if (event.step !== undefined) parts.push(event.total !== undefined ? `${event.step}/${event.total}` : `${event.step}`);
  if (event.metrics) {
    parts.push(
      Object.entries(event.metrics)
        .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(5)}`)
        .join(' '),
    );
  }
  if (event.message) parts.push(event.message);
  return parts.join(' ');
}

/** Sink writing JSON progress lines to stdout (for a parent process). */
export const jsonLineSink: ProgressSink = (event) => {
  process.stdout.write(`${formatProgressLine(event)}\n`);
};

/** Sink writing human-readable lines to stderr. */
export const consoleSink: ProgressSink = (event) => {
  process.stderr.write(`${describeProgress(event)}\n`);
};

/** Forward only every `everyMs` milliseconds (plus the phase changes), so tight loops stay cheap. */
export function throttled(sink: ProgressSink, everyMs: number): ProgressSink {
  let last = 0;
  let lastPhase = '';
  return (event) => {
    const now = Date.now();
    if (event.phase !== lastPhase || now - last >= everyMs || event.step === event.total) {
      last = now;
      lastPhase = event.phase;
      sink(event);
    }
  };
}
