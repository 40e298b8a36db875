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

/** "about 42 min left": a remaining time in seconds, rounded to what a person watching needs. */
export function formatTimeLeft(seconds: number): string {
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `about ${minutes} min left`;
  const hours = `${Math.floor(minutes / 60)} h`;
  return minutes % 60 ? `about ${hours} ${minutes % 60} min left` : `about ${hours} left`;
}

/**
 * Time left in a counted phase (one with step and total), from that phase's own pace since this
 * process first saw it: each later event of the phase gets "about … left" added to its message,
 * once it has advanced `minSteps` steps. Each phase keeps its own start, so a checkpoint between
 * training steps does not restart the training estimate; a step count that goes back from the
 * last one seen (a resume, the next shard or chunk counting from the start again) does.
 */
export function timeLeftEstimator(minSteps = 5): (event: ProgressEvent, nowMs: number) => ProgressEvent {
  const enough = Math.max(1, minSteps);
  const phases = new Map<string, { step: number; at: number; last: number }>();
  return (event, nowMs) => {
    const { step, total } = event;
    if (step === undefined || total === undefined) return event;
    const start = phases.get(event.phase);
    if (!start || step < start.last) {
      phases.set(event.phase, { step, at: nowMs, last: step });
      return event;
    }
    start.last = step;
    const done = step - start.step;
    if (done < enough || step >= total) return event;
    const left = formatTimeLeft(((total - step) * (nowMs - start.at)) / 1000 / done);
    return { ...event, message: event.message ? `${event.message} (${left})` : left };
  };
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
