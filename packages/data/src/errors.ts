/**
 * The one error type the data package throws for bad input. The message always names the file
 * (and line, field or class where there is one) and what was expected; the decoder's own error, if
 * any, is kept as `cause` instead of surfacing as a deep stack trace.
 */
export class DataError extends Error {
  readonly file?: string;
  readonly line?: number;
  readonly expected?: string;

  constructor(message: string, details: { file?: string; line?: number; expected?: string; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'DataError';
    if (details.file !== undefined) this.file = details.file;
    if (details.line !== undefined) this.line = details.line;
    if (details.expected !== undefined) this.expected = details.expected;
  }
}

/** First line of an unknown thrown value's message, for embedding in a DataError message. */
export function briefCause(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return (msg.split('\n')[0] ?? '').slice(0, 200);
}
