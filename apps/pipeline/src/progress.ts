/** Progress display: a redrawn bar with ETA on a TTY, plain lines otherwise. */

export interface ProgressStats {
  done: number;
  total: number;
  /** items per second (episodes/s) */
  rate?: number;
  loss?: number;
  accuracy?: number;
  extra?: string;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '--:--';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

export class Progress {
  private readonly tty: boolean;
  private readonly started = performance.now();
  private lastPlain = -Infinity;
  private lastDraw = 0;
  private open = false;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    opts: { tty?: boolean; plainEverySeconds?: number; budgetSeconds?: number } = {},
  ) {
    this.tty = opts.tty ?? (!!stream.isTTY && process.env['CI'] === undefined);
    this.plainEvery = opts.plainEverySeconds ?? 5;
    this.budget = opts.budgetSeconds;
  }

  /** a time budget (seconds from construction): the bar and ETA end with it when it comes first */
  private readonly budget: number | undefined;

  private readonly plainEvery: number;

  elapsedSeconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  private line(s: ProgressStats): string {
    const el = this.elapsedSeconds();
    let frac = s.total > 0 ? Math.min(1, s.done / s.total) : 0;
    let eta = frac > 0 ? (el / frac) * (1 - frac) : NaN;
    if (this.budget !== undefined && this.budget > 0) {
      const left = Math.max(0, this.budget - el);
      if (!(eta <= left)) {
        eta = left;
        frac = Math.max(frac, Math.min(1, el / this.budget));
      }
    }
    const parts = [`${s.done}/${s.total}`, `ETA ${formatDuration(eta)}`];
    if (s.rate !== undefined && Number.isFinite(s.rate)) parts.push(`${s.rate.toFixed(1)} ep/s`);
    if (s.loss !== undefined) parts.push(`loss ${s.loss.toFixed(4)}`);
    if (s.accuracy !== undefined) parts.push(`acc ${(100 * s.accuracy).toFixed(1)}%`);
    if (s.extra) parts.push(s.extra);
    if (this.tty) {
      const width = 24;
      const fill = Math.round(frac * width);
      return `${this.label} [${'█'.repeat(fill)}${'░'.repeat(width - fill)}] ${(100 * frac).toFixed(0).padStart(3)}% ${parts.join('  ')}`;
    }
    return `${this.label} ${parts.join('  ')}`;
  }

  update(s: ProgressStats, force = false): void {
    const now = performance.now();
    if (this.tty) {
      if (!force && now - this.lastDraw < 100 && s.done < s.total) return;
      this.lastDraw = now;
      const cols = this.stream.columns ?? 120;
      this.stream.write(`\r${this.line(s).slice(0, cols - 1)}\x1b[K`);
      this.open = true;
    } else if (force || now - this.lastPlain >= this.plainEvery * 1000 || s.done === s.total) {
      this.lastPlain = now;
      this.stream.write(this.line(s) + '\n');
    }
  }

  /** Print a message without breaking the bar. */
  log(msg: string): void {
    if (this.tty && this.open) this.stream.write('\r\x1b[K');
    this.stream.write(msg + '\n');
  }

  done(final?: ProgressStats): void {
    if (final) this.update(final, true);
    if (this.tty && this.open) this.stream.write('\n');
    this.open = false;
  }
}
