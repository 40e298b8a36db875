/**
 * Errors that mean "the input is wrong": retrying cannot help. The stage CLI exits with
 * INVALID_INPUT_EXIT_CODE for them, and the Temporal activity turns that into a non-retryable
 * failure carrying the message (which names the file, line or field).
 */
export class InvalidInputError extends Error {
  override name = 'InvalidInputError';
  /** Brand checked by isInvalidInput: subclasses rename themselves, and instanceof fails across module realms. */
  readonly invalidInput = true;
  constructor(
    message: string,
    /** The file, and line or field, the problem is in, when known. */
    readonly where?: { file?: string; line?: number; field?: string },
  ) {
    super(message);
  }
}

export const INVALID_INPUT_EXIT_CODE = 65; // EX_DATAERR in sysexits.h

export function isInvalidInput(err: unknown): err is InvalidInputError {
  return err instanceof Error && (err as { invalidInput?: unknown }).invalidInput === true;
}
